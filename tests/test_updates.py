"""Keeping a baked project up to date: re-bakes from the stored answers, and cruft updates.

Everything runs offline against a copy of the template in a temporary git repository.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEMPLATE_DIR, cookiecutter_cli, copy_template, git_repo, require_tool
from test_baking import generated_files

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
}
TEMPLATE_README = "{{cookiecutter.project_slug}}/README.md"


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_IDENTITY}, check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def cruft(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("cruft")), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_IDENTITY})


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def unmerged(project: Path) -> list[str]:
    return git("diff", "--name-only", "--diff-filter=U", cwd=project).split()


@pytest.fixture
def template_v1(tmp_path: Path) -> Path:
    require_tool("git", "apt-get install git")
    template = git_repo(copy_template(tmp_path / "cookiecutter-wsgi-deploy"))
    git("tag", "v1", cwd=template)
    return template


@pytest.fixture
def project(template_v1: Path, tmp_path: Path) -> Path:
    """Baked from v1 and committed by the bake itself, as a user keeps it."""
    out = tmp_path / "out"
    baked = cookiecutter_cli("--no-input", "-o", str(out), str(template_v1), cwd=tmp_path, home=tmp_path)
    assert baked.returncode == 0, baked.stdout + baked.stderr
    project = out / "my_app"
    assert git("status", "--porcelain", cwd=project) == ""
    return project


def release_v2(template: Path) -> str:
    """The template improves: a line of the generated README changes, and a file is added."""
    replace_in(
        template / TEMPLATE_README,
        "A Python web app deployed the classic way",
        "A Python web app deployed the proven way",
    )
    (template / "{{cookiecutter.project_slug}}" / "deploy" / "RUNBOOK.md").write_text(
        "# Runbook of {{ cookiecutter.project_name }}\n"
    )
    git("add", "-A", cwd=template)
    git("commit", "-qm", "v2", cwd=template)
    git("tag", "v2", cwd=template)
    return git("rev-parse", "v2^{commit}", cwd=template).strip()


def test_bake_records_what_cruft_needs(project: Path, template_v1: Path) -> None:
    record = json.loads((project / ".cruft.json").read_text())
    assert record["template"] == str(template_v1)
    assert record["commit"] == git("rev-parse", "v1^{commit}", cwd=template_v1).strip()
    answers = record["context"]["cookiecutter"]
    assert answers["domain_name"] == "example.com"
    assert not [key for key in answers if key.startswith("_") and key != "_template"]
    assert {"my_app", "tests", "wsgi.py"} <= set(record["skip"])
    check = cruft("check", cwd=project)
    assert check.returncode == 0, check.stdout + check.stderr


def test_cruft_update_merges_the_template_change_with_the_users_edit(project: Path, template_v1: Path) -> None:
    replace_in(project / "README.md", "## Check the configs", "## Check the configs (we run this before every deploy)")
    git("commit", "-qam", "our own note", cwd=project)
    v2 = release_v2(template_v1)
    update = cruft("update", "-y", "--checkout", "v2", cwd=project)
    assert update.returncode == 0, update.stdout + update.stderr
    assert unmerged(project) == []
    readme = (project / "README.md").read_text()
    assert "deployed the proven way" in readme
    assert "(we run this before every deploy)" in readme
    assert (project / "deploy" / "RUNBOOK.md").read_text() == "# Runbook of My App\n"
    assert json.loads((project / ".cruft.json").read_text())["commit"] == v2
    check = subprocess.run([sys.executable, "deploy/check"], cwd=project, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


def test_an_edit_that_overlaps_the_template_change_conflicts_in_that_file_only(
    project: Path, template_v1: Path
) -> None:
    replace_in(project / "README.md", "A Python web app deployed the classic way", "Our shop, deployed the classic way")
    git("commit", "-qam", "our own wording", cwd=project)
    release_v2(template_v1)
    cruft("update", "-y", "--checkout", "v2", cwd=project)
    assert unmerged(project) == ["README.md"]
    assert "<<<<<<<" in (project / "README.md").read_text()
    assert (project / "deploy" / "RUNBOOK.md").is_file()


def test_rebake_from_edited_answers_follows_every_new_answer(project: Path, tmp_path: Path) -> None:
    """Edit bind, install_dir and instances in the stored answers, bake again: every file follows."""
    stored = project / ".cookiecutter-answers.json"
    answers = json.loads(stored.read_text())
    answers["cookiecutter"].update(bind="tcp", install_dir="/srv/other", instances="2", app_port="9001")
    edited = tmp_path / "edited-answers.json"
    edited.write_text(json.dumps(answers))
    out = tmp_path / "rebaked"
    again = cookiecutter_cli(
        "--replay-file", str(edited), "-o", str(out), str(TEMPLATE_DIR), cwd=tmp_path, home=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr
    rebaked = out / "my_app"
    texts = {path.relative_to(rebaked).as_posix(): path.read_text() for path in generated_files(rebaked)}
    stale = {name for name, text in texts.items() if "/srv/my_app" in text or "gunicorn.sock" in text}
    assert stale == set()
    site = texts["deploy/nginx/my_app.conf"]
    assert "server 127.0.0.1:9001" in site and "server 127.0.0.1:9002" in site and "unix:" not in site
    assert "deploy/systemd/my_app@.service" in texts and "deploy/systemd/my_app@.socket" not in texts
    assert "/srv/other/current" in texts["deploy/systemd/my_app@.service"]
    assert json.loads(texts[".cookiecutter-answers.json"])["cookiecutter"]["bind"] == "tcp"
    assert "all checks passed" in again.stdout
