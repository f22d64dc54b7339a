"""What a user gets from `cookiecutter --no-input`: a complete, clean project."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEMPLATE_DIR, Baked, require_tool

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
    "deploy/nginx/my_app.conf",
    "deploy/nginx/snippets/security-headers.conf",
    "deploy/nginx/snippets/proxy.conf",
    "deploy/nginx/errors/50x.html",
    "deploy/systemd/my_app.service",
    "deploy/systemd/my_app.socket",
    "tests/test_app.py",
]
EXECUTABLES = ["deploy/check", "deploy/run-local", "deploy/setup-venv", "deploy/install", "deploy/rolling-restart"]


def generated_files(project: Path) -> list[Path]:
    return [p for p in project.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


def cookiecutter_cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """The cookiecutter command a user runs, with its config and clones kept under `home`."""
    config = home / "cookiecutter.yaml"
    config.write_text(f"cookiecutters_dir: {home / 'templates'}\nreplay_dir: {home / 'replay'}\n")
    command = [str(Path(sys.executable).with_name("cookiecutter")), "--config-file", str(config), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


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


def test_generated_app_tests_pass(baked: Baked) -> None:
    result = baked.run(sys.executable, "-m", "unittest", "-v")
    assert result.returncode == 0, result.stderr
    assert "Ran 5 tests" in result.stderr


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


def test_bake_from_a_git_url(tmp_path: Path) -> None:
    """`cookiecutter gh:...` clones with git; a git+file:// URL takes the same path."""
    git = shutil.which("git") or pytest.skip("git is not installed")
    repo = tmp_path / "template.git"
    files = (
        subprocess.run(
            [git, "ls-files", "-co", "--exclude-standard", "-z"], cwd=TEMPLATE_DIR, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        if (TEMPLATE_DIR / name).exists():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(TEMPLATE_DIR / name, repo / name)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "template"]):
        subprocess.run([git, *command], cwd=repo, check=True, env=env)
    out = tmp_path / "out"
    out.mkdir()
    result = cookiecutter_cli("--no-input", f"git+file://{repo}", cwd=out, home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "all checks passed" in result.stdout
    assert (out / "my_app" / "deploy" / "check").is_file()


def test_tcp_bind_drops_the_socket_unit(bake) -> None:
    project = bake(bind="tcp", app_port="9001")
    assert not (project.path / "deploy/systemd/my_app.socket").exists()
    site = (project.path / "deploy/nginx/my_app.conf").read_text()
    assert "server 127.0.0.1:9001;" in site
    assert "unix:" not in site
    assert '"127.0.0.1:9001"' in (project.path / "gunicorn.conf.py").read_text()


def test_fixed_worker_count_is_written_and_still_overridable(bake) -> None:
    conf = (bake(workers="3").path / "gunicorn.conf.py").read_text()
    assert 'workers = int(os.environ.get("WEB_CONCURRENCY", 3))' in conf
