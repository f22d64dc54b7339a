"""deploy/check: every generated config passes the real tools, and an edit that breaks one is caught."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Baked, require_tool

CHECK_LINES = ["python", "gunicorn", "nginx", "systemd", "sandbox"]
# The whole sandbox section of the service, from its heading to its last option.
SANDBOX = re.compile(r"# Sandbox.*?UMask=0027\n", re.DOTALL)


def check(project: Baked, *args: str, **env: str):
    environment = {**os.environ, "CI": "", **env}
    return project.run(sys.executable, "deploy/check", *args, env=environment)


@pytest.fixture
def tools() -> None:
    require_tool("nginx", "apt-get install nginx")
    require_tool("systemd-analyze", "apt-get install systemd")


@pytest.fixture
def project(bake, tools) -> Baked:
    """A fresh default project each test may edit."""
    return bake()


def statuses(output: str) -> dict[str, str]:
    return {m.group(2): m.group(1) for m in re.finditer(r"^(ok|skip|FAIL) +(\w+) ", output, re.MULTILINE)}


def edit(path: Path, old: str | re.Pattern[str], new: str) -> None:
    text = path.read_text()
    pattern = old if isinstance(old, re.Pattern) else re.compile(re.escape(old))
    assert pattern.search(text), f"{old!r} not in {path}"
    path.write_text(pattern.sub(new.replace("\\", "\\\\"), text, count=1))


def test_default_project_passes_every_check_with_real_tools(baked: Baked, tools) -> None:
    result = check(baked, "--strict")
    assert result.returncode == 0, result.stdout
    assert statuses(result.stdout) == dict.fromkeys(CHECK_LINES, "ok")
    assert "nginx -t accepts deploy/nginx/my_app.conf" in result.stdout
    assert (
        "systemd-analyze verify accepts my_app-backup.service, my_app-backup.timer, my_app.service, my_app.socket"
        in result.stdout
    )


def test_service_exposure_is_at_most_2(baked: Baked, tools) -> None:
    exposure = float(re.search(r"my_app.service exposure (\d+\.\d+)", check(baked).stdout).group(1))
    assert exposure <= 2.0


@pytest.mark.parametrize(
    "file, old, new, failing",
    [
        ("deploy/nginx/my_app.conf", "server_tokens off;", "server_tokens off;\n    bogus_directive on;", "nginx"),
        ("deploy/nginx/snippets/proxy.conf", "proxy_redirect off;", "proxy_redirect off", "nginx"),
        ("deploy/nginx/my_app.conf", "server_name example.com;", "server_name example.com;\n    listen 80;", "nginx"),
        ("deploy/systemd/my_app.service", "ProtectSystem=strict", "ProtectSystem=bogus", "systemd"),
        ("deploy/systemd/my_app.service", "Type=notify", "Type=notify\nExecStartPre=/no/such/program", "systemd"),
        ("deploy/systemd/my_app.socket", "SocketMode=0600", "SocketMod=0600", "systemd"),
        ("deploy/systemd/my_app.service", SANDBOX, "NoNewPrivileges=yes\n", "sandbox"),
        ("gunicorn.conf.py", 'wsgi_app = "wsgi:application"', 'wsgi_app = "wsgi:no_such_callable"', "gunicorn"),
        ("gunicorn.conf.py", "timeout = 30", "timeout = 'soon'", "gunicorn"),
        ("my_app/app.py", "def healthz(", "def healthz(:", "python gunicorn"),
        ("deploy/setup-venv", 'case "${1:-}" in', 'case "${1:-}" in (', "python"),
    ],
    ids=[
        "nginx-unknown-directive",
        "nginx-snippet-missing-semicolon",
        "nginx-duplicate-listen",
        "systemd-bad-value",
        "systemd-missing-program",
        "systemd-unknown-key",
        "systemd-weaker-sandbox",
        "gunicorn-missing-callable",
        "gunicorn-bad-setting",
        "python-syntax-error",
        "shell-syntax-error",
    ],
)
def test_check_catches_a_broken_edit(project: Baked, file: str, old: str, new: str, failing: str) -> None:
    edit(project.path / file, old, new)
    result = check(project)
    assert result.returncode == 1
    found = statuses(result.stdout)
    assert [name for name, status in found.items() if status == "FAIL"] == failing.split(), result.stdout


def test_without_nginx_check_parses_with_crossplane_and_says_so(baked: Baked) -> None:
    pytest.importorskip("crossplane")
    result = check(baked, NGINX="/nonexistent/nginx")
    assert result.returncode == 0, result.stdout
    assert statuses(result.stdout)["nginx"] == "skip"
    assert "nginx not installed" in result.stdout and "parsed deploy/nginx/my_app.conf with crossplane" in result.stdout


def test_strict_mode_turns_a_missing_tool_into_a_failure(baked: Baked) -> None:
    result = check(baked, NGINX="/nonexistent/nginx", WSGI_DEPLOY_STRICT="1")
    assert result.returncode == 1
    assert statuses(result.stdout)["nginx"] == "FAIL"
    assert "strict: a missing tool is a failure" in result.stdout


def test_ci_variable_alone_changes_nothing_and_no_venv_yet_is_not_a_failure(baked: Baked, tmp_path: Path) -> None:
    """CI services set CI=true for every job; a bake there has no venv (gunicorn) yet."""
    bare = tmp_path / "bare-python"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    environment = {**os.environ, "CI": "true", "PATH": f"{bare / 'bin'}:/usr/bin:/bin"}
    result = baked.run(str(bare / "bin" / "python"), "deploy/check", env=environment)
    assert result.returncode == 0, result.stdout
    assert statuses(result.stdout)["gunicorn"] == "skip"
    assert "run deploy/setup-venv" in result.stdout
    strict = baked.run(str(bare / "bin" / "python"), "deploy/check", "--strict", env=environment)
    assert statuses(strict.stdout)["gunicorn"] == "skip", strict.stdout


def test_check_counts_files_in_plain_english(baked: Baked) -> None:
    said = check(baked).stdout
    counted = re.search(r"ok +python +(\d+) Python (files?) and (\d+) shell (scripts?) parse", said)
    assert counted, said
    for number, noun in ((counted[1], counted[2]), (counted[3], counted[4])):
        assert (number == "1") == (not noun.endswith("s")), counted[0]


def test_check_runs_unprivileged(baked: Baked, tools) -> None:
    """No root needed: nginx -t gets a scratch prefix and unprivileged ports."""
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: the other tests cover it")
    nobody_copy = Path("/tmp") / f"check-as-nobody-{os.getpid()}"
    import shutil
    import subprocess

    shutil.copytree(baked.path, nobody_copy)
    try:
        subprocess.run(["chown", "-R", "nobody", str(nobody_copy)], check=True)
        result = subprocess.run(
            [
                "setpriv",
                "--reuid=nobody",
                "--regid=nogroup",
                "--clear-groups",
                "--reset-env",
                sys.executable,
                "deploy/check",
            ],
            cwd=nobody_copy,
            capture_output=True,
            text=True,
            check=False,
        )
        found = statuses(result.stdout)
        assert found["nginx"] == "ok" and found["systemd"] == "ok", result.stdout + result.stderr
    finally:
        shutil.rmtree(nobody_copy)


# The project's own CI ----------------------------------------------------------------------------

WORKFLOW = Path(".github/workflows/checks.yml")
CI_VARIANTS = {
    "default": {},
    "django-rhel": {"framework": "django", "platform": "rhel-9"},
    "existing-app": {"framework": "existing"},
}


def jactionlint(project: Path) -> subprocess.CompletedProcess[str]:
    """The workflows as actionlint checks them (jactionlint's correctness profile: its policy rules,
    such as actions pinned to a commit, are a project's own choice)."""
    linter = require_tool("jactionlint", "pip install -r requirements-dev.txt")
    return subprocess.run(
        [linter, "--profile", "correctness", "--no-color"], cwd=project, capture_output=True, text=True, check=False
    )


def ci_commands(project: Path) -> tuple[list[str], list[str]]:
    """The commands of the GitHub workflow's steps after the system packages, and of GitLab's script."""
    import yaml

    steps = yaml.safe_load((project / WORKFLOW).read_text())["jobs"]["checks"]["steps"]
    github = [step["run"] for step in steps if "run" in step and "apt-get" not in step["run"]]
    gitlab = yaml.safe_load((project / ".gitlab-ci.yml").read_text())["checks"]["script"]
    return github, gitlab


@pytest.mark.parametrize("answers", CI_VARIANTS.values(), ids=CI_VARIANTS.keys())
def test_the_projects_github_workflow_passes_actionlint(bake, answers: dict[str, str]) -> None:
    project = bake(**answers)
    result = jactionlint(project.path)
    assert result.returncode == 0, result.stdout + result.stderr
    github, gitlab = ci_commands(project.path)
    assert github == gitlab  # GitLab runs the very same checks
    assert github[0] == "deploy/setup-venv" and github[-1] == "deploy/check --strict"


def test_actionlint_catches_a_broken_workflow(project: Baked) -> None:
    workflow = project.path / WORKFLOW
    edit(workflow, "run: deploy/check --strict", "run: deploy/check --strict\n        shell: bosh")
    result = jactionlint(project.path)
    assert result.returncode == 1 and '"bosh" is invalid' in result.stdout, result.stdout


def test_the_ci_commands_pass_on_a_fresh_bake(project: Baked) -> None:
    """What the CI runs after installing nginx, run here in the same order: the venv, the app's tests, the check."""
    github, _ = ci_commands(project.path)
    assert github == ["deploy/setup-venv", "my_app_venv/bin/python -m unittest -v", "deploy/check --strict"]
    for command in github:
        result = project.run(*command.split(), env={**os.environ, "PYTHON": sys.executable})
        assert result.returncode == 0, f"{command}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("unit", ["my_app.service", "my_app-nginx-exporter.service", "my_app-mtail.service"])
def test_with_metrics_check_passes_and_each_exporter_exposure_is_at_most_2(bake, tools, unit: str) -> None:
    project = bake(metrics="prometheus")
    result = check(project, "--strict")
    assert result.returncode == 0, result.stdout
    assert "my_app-mtail.service, my_app-nginx-exporter.service" in result.stdout
    exposure = float(re.search(rf"{re.escape(unit)} exposure (\d+\.\d+)", result.stdout).group(1))
    assert exposure <= 2.0
