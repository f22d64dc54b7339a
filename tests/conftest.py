"""Fixtures shared by the template's tests: baked projects, real tools, a running local stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import LiveStack, start_stack
from servers import Lab, prepare_roots

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
STRICT = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_configure(config: pytest.Config) -> None:
    # pytest-cookies bakes the template from --template, which defaults to the working folder.
    config.option.template = str(TEMPLATE_DIR)


def require_tool(name: str, install: str) -> str:
    """The tool's path; a skip with how to install it, or under CI=true a failure."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
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


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


__all__ = ["STRICT", "TEMPLATE_DIR", "Baked", "read_json", "require_root", "require_tool", "sys"]
