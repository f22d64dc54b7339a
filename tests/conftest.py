"""Fixtures shared by the template's tests: baked projects, real tools, a running local stack."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import LiveStack, start_stack
from servers import RELEASES, Lab, make_wheelhouse, platform_answer, prepare_roots

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
STRICT = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Screenshots of the pages a failed browser test opened (ignored by git).
SCREENSHOTS = TEMPLATE_DIR / "screenshots"


def pytest_configure(config: pytest.Config) -> None:
    # pytest-cookies bakes the template from --template, which defaults to the working folder.
    config.option.template = str(TEMPLATE_DIR)
    # pytest-cookies renders the context itself, before cookiecutter puts the template's folder on
    # sys.path for its local extensions: a run of one test module must find them too.
    if str(TEMPLATE_DIR) not in sys.path:
        sys.path.append(str(TEMPLATE_DIR))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests marked `one_release(name)` kept only for that Debian release of a module run on each."""
    deselected = []
    for item in items:
        marker = item.get_closest_marker("one_release")
        callspec = getattr(item, "callspec", None)
        if marker and callspec and any(part in RELEASES and part != marker.args[0] for part in callspec.id.split("-")):
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """A failed test that used the `browser` fixture saves its screenshots; the report says where."""
    report = yield
    browser = getattr(item, "funcargs", {}).get("browser")
    if report.when == "call" and report.failed and browser is not None:
        folder = browser.save_screenshots(SCREENSHOTS / re.sub(r"[^\w.-]+", "_", item.nodeid))
        report.sections.append(("screenshots", f"the pages this test opened: {folder}/"))
    return report


def require_tool(name: str, install: str) -> str:
    """The tool's path; a skip with how to install it, or under CI=true a failure."""
    # Tools pip installs (ansible-playbook) sit beside the test run's python, often not on PATH.
    beside_python = str(Path(sys.executable).parent)
    found = shutil.which(name) or shutil.which(name, path=f"/usr/sbin:/usr/bin:/sbin:{beside_python}")
    if found:
        return found
    message = f"{name} is not installed ({install})"
    if STRICT:
        pytest.fail(f"{message}; CI=true makes a missing tool a failure")
    pytest.skip(message)


def require_root(why: str) -> None:
    """Skip a test that needs root, saying why; under CI=true a failure."""
    if os.geteuid() == 0:
        return
    message = f"needs root: {why}"
    if STRICT:
        pytest.fail(f"{message}; CI=true makes it a failure")
    pytest.skip(message)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Booted Debian servers on a private network: `lab.boot(["app1", "app2"], release="bookworm")`.

    Each test process has its own bridge; every server, namespace and mount is removed at the end.
    """
    require_root("booting servers in containers takes mounts, network namespaces and cgroups")
    require_tool("systemd-nspawn", "apt-get install systemd-container")
    require_tool("mmdebstrap", "apt-get install mmdebstrap")
    require_tool("ip", "apt-get install iproute2")
    require_tool("nsenter", "apt-get install util-linux")
    # Both releases download at once, the first time on this machine; later runs find them cached.
    prepare_roots(["bookworm", "trixie"])
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="session")
def wheel_cache(tmp_path_factory) -> Path:
    """Wheelhouses made by deploy/wheelhouse, one per requirements.txt and Python, for this process."""
    return tmp_path_factory.mktemp("wheelhouses")


@pytest.fixture(scope="session")
def server_project(cookies_session, wheel_cache) -> Callable[..., Baked]:
    """server_project(release, **answers): the project baked for a server of `release` (its platform
    answer unless `answers` give another), with the wheelhouse for that server's Python: the servers
    reach no package index."""

    def make(release: str, **answers: str) -> Baked:
        project = bake_or_fail(cookies_session, **{**platform_answer(release), **answers})
        make_wheelhouse(project.path, RELEASES[release], wheel_cache)
        return project

    return make


@pytest.fixture
def nginx() -> str:
    return require_tool("nginx", "apt-get install nginx")


@dataclass
class Baked:
    """A project baked from the template, with its answers."""

    path: Path
    answers: dict

    def run(
        self, *command: str, env: dict[str, str] | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(part) for part in command], cwd=self.path, capture_output=True, text=True, check=check, env=env
        )


def bake_or_fail(cookies, **answers: str) -> Baked:
    result = cookies.bake(extra_context=answers)
    assert result.exception is None, f"bake with {answers} failed: {result.exception!r}"
    assert result.exit_code == 0
    return Baked(Path(result.project_path), result.context)


@pytest.fixture
def bake(cookies):
    """bake(**answers): a project baked with these answers on top of the defaults."""
    return lambda **answers: bake_or_fail(cookies, **answers)


@pytest.fixture(scope="module")
def baked(cookies_session) -> Baked:
    """The default project (`cookiecutter --no-input`), shared by the tests of a module."""
    return bake_or_fail(cookies_session)


@pytest.fixture(scope="session")
def app_venv(tmp_path_factory) -> Path:
    """One virtualenv per test process, made by a baked project's own deploy/setup-venv."""
    from cookiecutter.main import cookiecutter

    out = tmp_path_factory.mktemp("venv-source")
    project = Path(cookiecutter(str(TEMPLATE_DIR), no_input=True, output_dir=str(out), accept_hooks=False))
    venv = tmp_path_factory.mktemp("app-venv") / "venv"
    subprocess.run([str(project / "deploy" / "setup-venv"), str(venv)], check=True, capture_output=True)
    return venv


@pytest.fixture(scope="session")
def framework_venv(tmp_path_factory) -> Path:
    """One venv with every framework's pinned requirements (Flask, Django, gevent), for the variants."""
    from cookiecutter.main import cookiecutter

    requirements = set()
    for answers in ({"framework": "flask", "worker_class": "gevent"}, {"framework": "django"}):
        out = tmp_path_factory.mktemp("requirements")
        project = Path(
            cookiecutter(
                str(TEMPLATE_DIR), no_input=True, output_dir=str(out), extra_context=answers, accept_hooks=False
            )
        )
        requirements |= {line for line in (project / "requirements.txt").read_text().splitlines() if "==" in line}
    venv = tmp_path_factory.mktemp("framework-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *sorted(requirements)], check=True)
    return venv


@pytest.fixture
def stack(baked: Baked, app_venv: Path) -> Iterator[LiveStack]:
    """The default project running under deploy/run-local: real nginx in front of real gunicorn."""
    require_tool("nginx", "apt-get install nginx")
    with start_stack(baked.path, app_venv) as live:
        yield live


def cookiecutter_cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """The cookiecutter command a user runs, with its config and clones kept under `home`."""
    config = home / "cookiecutter.yaml"
    config.write_text(f"cookiecutters_dir: {home / 'templates'}\nreplay_dir: {home / 'replay'}\n")
    command = [str(Path(sys.executable).with_name("cookiecutter")), "--config-file", str(config), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)


def template_files() -> list[str]:
    """The template's files as a clone has them (tracked or new, not ignored)."""
    git = shutil.which("git") or pytest.skip("git is not installed")
    listed = subprocess.run(
        [git, "ls-files", "-co", "--exclude-standard", "-z"], cwd=TEMPLATE_DIR, capture_output=True, check=True
    )
    return [name for name in listed.stdout.decode().split("\0") if name and (TEMPLATE_DIR / name).exists()]


def copy_template(to: Path) -> Path:
    for name in template_files():
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(TEMPLATE_DIR / name, to / name)
    return to


def git_repo(folder: Path) -> Path:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    for command in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "template"]):
        subprocess.run(["git", *command], cwd=folder, check=True, env=env)
    return folder


def zipped(folder: Path) -> Path:
    """The template as GitHub's "Download ZIP" has it: one top folder inside the archive."""
    archive = folder.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w") as out:
        for path in [folder, *sorted(folder.rglob("*"))]:
            if ".git" not in path.relative_to(folder).parts:
                out.write(path, Path(folder.name) / path.relative_to(folder))
    return archive


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


__all__ = [
    "STRICT",
    "TEMPLATE_DIR",
    "Baked",
    "cookiecutter_cli",
    "copy_template",
    "git_repo",
    "read_json",
    "require_root",
    "require_tool",
    "sys",
    "zipped",
]
