"""What a user gets from `cookiecutter --no-input`: a complete, clean project."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEMPLATE_DIR, Baked, cookiecutter_cli, copy_template, git_repo, require_tool, zipped
from helpers import start_stack

EXPECTED_FILES = [
    "README.md",
    ".gitignore",
    ".cookiecutter-answers.json",
    "requirements.txt",
    "wsgi.py",
    "gunicorn.conf.py",
    "my_app/__init__.py",
    "my_app/app.py",
    "my_app/static/style.css",
    "deploy/check",
    "deploy/run-local",
    "deploy/setup-venv",
    "deploy/install",
    "deploy/INSTALL.md",
    "deploy/rolling-restart",
    "deploy/status",
    "deploy/maintenance",
    "deploy/nginx/my_app.conf",
    "deploy/nginx/snippets/security-headers.conf",
    "deploy/nginx/snippets/proxy.conf",
    "deploy/nginx/errors/50x.html",
    "deploy/nginx/errors/maintenance.html",
    "deploy/systemd/my_app.service",
    "deploy/systemd/my_app.socket",
    "tests/test_app.py",
    ".github/workflows/checks.yml",
    ".gitlab-ci.yml",
]
EXECUTABLES = [
    "deploy/check",
    "deploy/run-local",
    "deploy/setup-venv",
    "deploy/install",
    "deploy/rolling-restart",
    "deploy/status",
    "deploy/maintenance",
]


def generated_files(project: Path) -> list[Path]:
    """The text files of a bake (binary ones, the favicon, are copied as they are; .git is git's)."""
    skipped = {"__pycache__", ".git"}
    return [p for p in project.rglob("*") if p.is_file() and not skipped & set(p.parts) and is_text(p)]


def is_text(path: Path) -> bool:
    try:
        path.read_text()
    except UnicodeDecodeError:
        return False
    return True


def test_default_bake_has_every_file(baked: Baked) -> None:
    missing = [name for name in EXPECTED_FILES if not (baked.path / name).is_file()]
    assert missing == []
    for name in EXECUTABLES:
        assert os.access(baked.path / name, os.X_OK), name


def test_no_file_keeps_template_syntax(baked: Baked) -> None:
    leftovers = [p for p in generated_files(baked.path) if re.search(r"{{ ?cookiecutter\.|{%", p.read_text())]
    assert leftovers == []


def test_no_file_has_runs_of_blank_lines_or_trailing_spaces(baked: Baked) -> None:
    for path in generated_files(baked.path):
        text = path.read_text()
        # Python separates top-level definitions by two blank lines (PEP 8); nothing needs more.
        is_python = path.suffix == ".py" or text.startswith("#!/usr/bin/env python3")
        assert ("\n\n\n\n" if is_python else "\n\n\n") not in text, path
        assert not re.search(r"[ \t]+$", text, re.MULTILINE), path
        assert text.endswith("\n") and not text.endswith("\n\n"), path


def test_generated_python_is_ruff_clean(baked: Baked) -> None:
    python_files = [p for p in generated_files(baked.path) if p.suffix == ".py"]
    python_files += [p for p in generated_files(baked.path) if p.read_bytes().startswith(b"#!/usr/bin/env python3")]
    ruff = [sys.executable, "-m", "ruff"]
    config = ["--config", str(TEMPLATE_DIR / "pyproject.toml")]
    lint = subprocess.run([*ruff, "check", *config, *map(str, python_files)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    form = subprocess.run(
        [*ruff, "format", "--check", *config, *map(str, python_files)], capture_output=True, text=True
    )
    assert form.returncode == 0, form.stdout


def test_generated_shell_is_shellcheck_clean(baked: Baked) -> None:
    shellcheck = require_tool("shellcheck", "apt-get install shellcheck")
    scripts = [p for p in generated_files(baked.path) if p.read_bytes().startswith(b"#!/usr/bin/env bash")]
    assert scripts, "no shell scripts found"
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


GENERATED_TEST_COUNTS = {"wsgi": 9, "flask": 9, "django": 15, "asgi": 9}


@pytest.mark.parametrize("framework", GENERATED_TEST_COUNTS)
def test_each_frameworks_own_tests_pass_in_its_own_venv(bake, framework: str) -> None:
    """What the generated README says: deploy/setup-venv, then the venv's python -m unittest."""
    project = bake(framework=framework)
    setup = project.run("deploy/setup-venv")
    assert setup.returncode == 0, setup.stdout + setup.stderr
    readme = (project.path / "README.md").read_text()
    command = "my_app_venv/bin/python -m unittest -v"
    assert command in readme
    result = project.run(*command.split())
    assert result.returncode == 0, result.stderr
    assert f"Ran {GENERATED_TEST_COUNTS[framework]} tests" in result.stderr


def test_answers_are_recorded_for_a_rebake(baked: Baked, tmp_path: Path) -> None:
    answers = (baked.path / ".cookiecutter-answers.json").read_text()
    assert '"domain_name": "example.com"' in answers
    assert "_output_dir" not in answers and "_repo_dir" not in answers
    again = cookiecutter_cli(
        "--replay-file", str(baked.path / ".cookiecutter-answers.json"), str(TEMPLATE_DIR), cwd=tmp_path, home=tmp_path
    )
    assert again.returncode == 0, again.stderr
    rebaked = tmp_path / "my_app"
    assert (rebaked / "deploy/nginx/my_app.conf").read_text() == (baked.path / "deploy/nginx/my_app.conf").read_text()


# How people name the template: (where cookiecutter runs, the argument), from a copy at tmp/cookiecutter-wsgi-deploy.
TEMPLATE_ARGUMENTS = {
    "dot": ("cookiecutter-wsgi-deploy", "."),
    "relative-path": (".", "cookiecutter-wsgi-deploy"),
    "relative-path-from-elsewhere": ("elsewhere", "../cookiecutter-wsgi-deploy"),
    "absolute-path": ("elsewhere", "{template}"),
    "git-file-url": ("elsewhere", "git+file://{template}"),
    "zip": ("elsewhere", "{template}.zip"),
}


@pytest.mark.parametrize("where", TEMPLATE_ARGUMENTS.values(), ids=TEMPLATE_ARGUMENTS.keys())
def test_bakes_from_every_way_of_naming_the_template(tmp_path: Path, where: tuple[str, str]) -> None:
    template = git_repo(copy_template(tmp_path / "cookiecutter-wsgi-deploy"))
    zipped(template)
    (tmp_path / "elsewhere").mkdir()
    cwd, argument = where
    out = tmp_path / "out"
    result = cookiecutter_cli(
        "--no-input", "-o", str(out), argument.format(template=template), cwd=tmp_path / cwd, home=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert (out / "my_app" / "deploy" / "check").is_file()


# Characters a shell or nginx treats specially, in the folder a project is baked into.
AWKWARD_FOLDERS = {"space": "my projects", "dollar-quote-semicolon": "a$HOME'b;c"}


@pytest.mark.parametrize("folder", AWKWARD_FOLDERS.values(), ids=AWKWARD_FOLDERS.keys())
def test_project_in_a_folder_with_special_characters_checks_runs_and_stages(
    tmp_path: Path, folder: str, app_venv: Path
) -> None:
    require_tool("nginx", "apt-get install nginx")
    out = tmp_path / folder
    result = cookiecutter_cli("--no-input", "-o", str(out), str(TEMPLATE_DIR), cwd=tmp_path, home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    project = out / "my_app"
    check = subprocess.run([sys.executable, "deploy/check"], cwd=project, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert "ok    nginx" in check.stdout
    with start_stack(project, app_venv) as stack:
        assert stack.get("/static/style.css").status == 200
        assert stack.get("/healthz").status == 200
    staged = subprocess.run(
        [sys.executable, "deploy/install", "--root", str(out / "staged root")],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert staged.returncode == 0, staged.stdout + staged.stderr
    assert (out / "staged root" / "etc/systemd/system/my_app.service").is_file()


def test_baking_again_over_a_django_project_keeps_its_secret_key(tmp_path: Path) -> None:
    def bake_django() -> subprocess.CompletedProcess[str]:
        return cookiecutter_cli(
            "--no-input", "-f", "-o", str(tmp_path), str(TEMPLATE_DIR), "framework=django", cwd=tmp_path, home=tmp_path
        )

    first = bake_django()
    assert first.returncode == 0, first.stdout + first.stderr
    env_file = tmp_path / "my_app" / "my_app.env"
    key = env_file.read_text()
    again = bake_django()
    assert again.returncode == 0, again.stdout + again.stderr
    assert env_file.read_text() == key


def test_tcp_bind_drops_the_socket_unit(bake) -> None:
    project = bake(bind="tcp", app_port="9001")
    assert not (project.path / "deploy/systemd/my_app.socket").exists()
    site = (project.path / "deploy/nginx/my_app.conf").read_text()
    # The one app server is never marked down; the bridge answers only while deploy/install restarts it.
    assert "server 127.0.0.1:9001 max_fails=0;" in site and "server 127.0.0.1:9002 backup;" in site
    assert "unix:" not in site
    assert '"127.0.0.1:9001"' in (project.path / "gunicorn.conf.py").read_text()


def test_fixed_worker_count_is_written_and_still_overridable(bake) -> None:
    conf = (bake(workers="3").path / "gunicorn.conf.py").read_text()
    assert 'workers = int(os.environ.get("WEB_CONCURRENCY", 3))' in conf


# An index that refuses every connection: pip fails at once, as on a server with no route to PyPI.
UNREACHABLE_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple/", "PIP_FIND_LINKS": "", "PIP_NO_INDEX": ""}
THIS_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
OTHER_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor + 1}"


def test_a_wheelhouse_for_the_servers_python_leaves_the_local_venv_to_the_index(bake) -> None:
    """deploy/wheelhouse for another Python (the server's), then deploy/setup-venv on this machine."""
    project = bake()
    wheels = project.run("deploy/wheelhouse", "--python", OTHER_PYTHON)
    assert wheels.returncode == 0, wheels.stdout + wheels.stderr
    setup = project.run("deploy/setup-venv", env={**os.environ, "PYTHON": sys.executable})
    assert setup.returncode == 0, setup.stdout + setup.stderr
    assert f"wheels: {project.path}/wheels has nothing for Python {THIS_PYTHON}; installing from the package index" in (
        setup.stdout
    )
    assert "requirements: installed 1 pinned package(s) from the package index" in setup.stdout
    assert (project.path / "my_app_venv" / "bin" / "gunicorn").is_file()


def test_a_failed_setup_venv_removes_the_venv_it_created(bake) -> None:
    project = bake()
    (project.path / "wheels" / f"py{OTHER_PYTHON}").mkdir(parents=True)
    env = {**os.environ, "PYTHON": sys.executable, **UNREACHABLE_INDEX}
    setup = project.run("deploy/setup-venv", env=env)
    assert setup.returncode == 1
    assert f"and {project.path}/wheels has nothing for Python {THIS_PYTHON}." in setup.stderr
    assert f"run deploy/wheelhouse --python {THIS_PYTHON}" in setup.stderr
    assert f"venv: removed {project.path}/my_app_venv, which this run had created" in setup.stderr
    assert not (project.path / "my_app_venv").exists()


def test_a_failed_setup_venv_leaves_an_existing_venv_as_it_was(bake) -> None:
    project = bake()
    venv = project.path / "my_app_venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    before = sorted(path.relative_to(venv) for path in venv.rglob("*"))
    setup = project.run("deploy/setup-venv", env={**os.environ, "PYTHON": sys.executable, **UNREACHABLE_INDEX})
    assert setup.returncode == 1 and "venv: removed" not in setup.stderr, setup.stdout + setup.stderr
    assert sorted(path.relative_to(venv) for path in venv.rglob("*")) == before


# What a user's machine adds to the project folder: venvs, local state, caches, wheels, releases.
LOCAL_LEFTOVERS = [
    "my_app_venv/bin/python",
    ".venv/bin/python",
    ".state/db.sqlite3",
    ".run-local.json",
    "wheels/py3.13/requirements.txt",
    ".releases/0123.tar.gz",
    "my_app/__pycache__/app.cpython-311.pyc",
    ".pytest_cache/README.md",
    ".ruff_cache/CACHEDIR.TAG",
]


def git_in(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("identity", ["configured", "none"])
def test_the_bake_is_a_git_repository_with_one_commit_of_its_files(
    bake, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, identity: str
) -> None:
    require_tool("git", "apt-get install git")
    config = tmp_path / "gitconfig"
    config.write_text("[user]\n\tname = Ada\n\temail = ada@example.org\n" if identity == "configured" else "")
    # This machine's own git settings stay out: only the file above, or no identity at all.
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    project = bake(framework="django")
    assert git_in(project.path, "status", "--porcelain") == ""
    log = git_in(project.path, "log", "--format=%an <%ae>|%s").splitlines()
    author = (
        "Ada <ada@example.org>"
        if identity == "configured"
        else ("cookiecutter-wsgi-deploy <cookiecutter-wsgi-deploy@example.invalid>")
    )
    assert log == [f"{author}|My App, as cookiecutter-wsgi-deploy made it"]
    committed = git_in(project.path, "ls-files").splitlines()
    assert "deploy/check" in committed and ".gitignore" in committed
    assert "my_app.env" not in committed  # the secret key made at bake time
    for name in LOCAL_LEFTOVERS:
        (project.path / name).parent.mkdir(parents=True, exist_ok=True)
        (project.path / name).touch()
    assert git_in(project.path, "status", "--porcelain") == ""


def test_the_bake_makes_no_repository_when_told_not_to(bake) -> None:
    project = bake(git_init="no")
    assert not (project.path / ".git").exists()
    assert project.answers["git_init"] is False


def test_a_project_baked_inside_a_repository_is_left_to_it(tmp_path: Path) -> None:
    require_tool("git", "apt-get install git")
    (tmp_path / "monorepo").mkdir()
    (tmp_path / "monorepo" / "README.md").write_text("Our services.\n")
    outer = git_repo(tmp_path / "monorepo")
    result = cookiecutter_cli("--no-input", "-o", str(outer), str(TEMPLATE_DIR), cwd=tmp_path, home=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"git: the project lies in the repository {outer}; nothing committed" in result.stdout
    assert not (outer / "my_app" / ".git").exists()
    assert git_in(outer, "log", "--format=%s").splitlines() == ["template"]


# The packages each platform's server needs before deploy/install, as its package manager names them.
SERVER_PREREQUISITES = {
    "debian-13": "sudo apt-get install nginx python3 python3-venv\n",
    "debian-12": "sudo apt-get install nginx python3 python3-venv\n",
    "ubuntu-24.04": "sudo apt-get install nginx python3 python3-venv\n",
    "rhel-9": "sudo dnf install nginx python3.11\n",
}


def deploy_section(project: Path) -> str:
    return (project / "README.md").read_text().split("\n## Deploy it\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("platform", SERVER_PREREQUISITES)
def test_readme_names_the_servers_packages_before_the_install(bake, platform: str) -> None:
    section = deploy_section(bake(platform=platform).path)
    assert SERVER_PREREQUISITES[platform] in section
    assert section.index(SERVER_PREREQUISITES[platform]) < section.index("sudo deploy/install")
    assert "`deploy/wheelhouse`" in section  # the way for a server without the package index


def test_readme_brings_the_project_to_the_server_with_git_not_scp(bake) -> None:
    project = bake(framework="django", tls_mode="letsencrypt")
    section = deploy_section(project.path)
    assert "sudo apt-get install nginx python3 python3-venv certbot\n" in section
    assert "git clone git@git.example.com:you/my_app.git && cd my_app" in section
    assert "git pull && sudo deploy/install" in section
    assert "Not `scp -r` of this folder" in section
    # The one file git leaves out that the server needs: the secret key made at bake time.
    assert "scp my_app.env server:my_app/" in section


METRICS_FILES = [
    "deploy/mtail/my_app.mtail",
    "deploy/nginx/snippets/release.conf",
    "deploy/systemd/my_app-nginx-exporter.service",
    "deploy/systemd/my_app-mtail.service",
]


def test_metrics_are_off_by_default_and_leave_no_exporter_behind(baked: Baked) -> None:
    assert baked.answers.get("metrics", "off") == "off"
    assert [name for name in METRICS_FILES if (baked.path / name).exists()] == []
    site = (baked.path / "deploy/nginx/my_app.conf").read_text()
    assert "stub_status" not in site and "release" not in site


def test_prometheus_metrics_bring_the_exporters_and_a_release_field_at_the_end_of_the_log(bake) -> None:
    project = bake(metrics="prometheus")
    assert [name for name in METRICS_FILES if not (project.path / name).is_file()] == []
    site = (project.path / "deploy/nginx/my_app.conf").read_text()
    # Appended after every field the log had: a reader of key=value fields sees one more.
    assert "ts=$msec release=$my_app_release';" in site
    assert "include snippets/my_app/release.conf;" in site
    assert "listen 127.0.0.1:9145;" in site and "stub_status;" in site
    mtail = (project.path / "deploy/mtail/my_app.mtail").read_text()
    assert "counter my_app_http_requests_total by status, release" in mtail
    assert "--address ${MTAIL_ADDRESS}" in (project.path / "deploy/systemd/my_app-mtail.service").read_text()
