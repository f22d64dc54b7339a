"""The several-servers kit of a baked project: deploy/ansible's playbooks pass Ansible's own checks,
and deploy/release packs the project the same way every time. (The playbooks run against booted
servers in test_server_ansible.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import Baked, require_tool
from helpers import secret_key

ANSIBLE_DIR = Path("deploy") / "ansible"


def run_ansible(project: Path, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One of Ansible's commands (installed by requirements-dev.txt), run in deploy/ansible."""
    command = require_tool(tool, "pip install -r requirements-dev.txt")
    env = {
        **os.environ,
        # Ansible's commands start each other from their own folder (a venv's bin/).
        "PATH": f"{Path(command).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
        "ANSIBLE_HOME": str(project / ".ansible-home"),
    }
    return subprocess.run(
        [command, *args], cwd=project / ANSIBLE_DIR, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def release(project: Path) -> dict:
    result = subprocess.run(
        [str(project / "deploy" / "release"), "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_playbooks_pass_ansible_lint_production_profile(baked: Baked) -> None:
    result = run_ansible(baked.path, "ansible-lint", "--offline", "--profile", "production", "--nocolor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


@pytest.mark.parametrize("playbook", ["site.yml", "rolling.yml", "rollback.yml", "status.yml", "maintenance.yml"])
def test_playbooks_pass_syntax_check_with_the_example_inventory(baked: Baked, playbook: str) -> None:
    result = run_ansible(baked.path, "ansible-playbook", "--syntax-check", "-i", "inventory.example.yml", playbook)
    assert result.returncode == 0, result.stdout + result.stderr


def test_release_is_the_same_archive_for_the_same_files_and_a_new_one_after_an_edit(bake) -> None:
    project = bake(framework="django").path
    first = release(project)
    assert first["made"] is True
    again = release(project)
    assert (again["id"], again["made"]) == (first["id"], False)
    archive = Path(first["archive"])
    assert archive.parent == project / ".releases"
    # It holds the bake-time secret: only its owner reads it.
    assert archive.stat().st_mode & 0o077 == 0
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        install = tar.getmember("deploy/install")
        settings = tar.getmember("my_app.env")
    assert {"deploy/install", "gunicorn.conf.py", "requirements.txt", "my_app.env", "manage.py"} <= names
    assert install.mode & 0o111, "deploy/install must stay executable"
    # Each host keeps the releases it unpacked: the secret in them is root's alone.
    assert settings.mode == 0o600, oct(settings.mode)
    left_behind = ("tests", "my_app_venv", ".releases")
    assert not {name for name in names if name.startswith(left_behind) or "__pycache__" in name}
    assert first["app_ports"] == [8081] and first["domain"] == "example.com"
    (project / "my_app" / "views.py").write_text((project / "my_app" / "views.py").read_text() + "\n# edited\n")
    edited = release(project)
    assert edited["made"] is True and edited["id"] != first["id"]


def test_load_balancers_release_is_the_same_without_the_secret_key(bake) -> None:
    project = bake(framework="django").path
    made = release(project)
    secret = secret_key((project / "my_app.env").read_text())
    with tarfile.open(made["archive"]) as full, tarfile.open(made["lb_archive"]) as lb:
        assert set(lb.getnames()) == set(full.getnames()) - {"my_app.env"}
        contents = [lb.extractfile(member).read() for member in lb.getmembers() if member.isfile()]
    assert len(secret) >= 40 and not [content for content in contents if secret.encode() in content]
    # Made again from the same files, it is the same, byte for byte.
    before = Path(made["lb_archive"]).read_bytes()
    Path(made["lb_archive"]).unlink()
    again = release(project)
    assert (again["id"], again["lb_archive"]) == (made["id"], made["lb_archive"])
    assert Path(made["lb_archive"]).read_bytes() == before


def test_playbooks_keep_no_config_of_their_own(baked: Baked) -> None:
    """One source of truth: the hosts get the release and its deploy/install, nothing written by Ansible."""
    text = "\n".join(path.read_text() for path in sorted((baked.path / ANSIBLE_DIR).rglob("*.yml")))
    for writer in ("ansible.builtin.template", "lineinfile", "blockinfile", "content:", "ansible.builtin.service"):
        assert writer not in text, writer
    # Only releases are copied (the db host's password is read with slurp: it copies nothing).
    copied = [
        line.strip() for line in text.splitlines() if line.strip().startswith("src:") and "db_password_file" not in line
    ]
    assert copied and all("release" in line for line in copied), copied
