"""Every option, in a covering (pairwise) matrix: each variant bakes, passes deploy/check with the
real tools, and is lint-clean; combinations that cannot work are refused with a reason."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEMPLATE_DIR, Baked, require_tool
from cookiecutter.exceptions import FailedHookException
from test_baking import generated_files
from test_config_validation import statuses

OPTIONS = {
    "framework": ["wsgi", "flask", "django", "asgi", "existing"],
    "worker_class": ["auto", "sync", "gthread", "gevent", "asgi"],
    "bind": ["unix", "tcp"],
    "instances": ["1", "3"],
    "tls_mode": ["none", "letsencrypt", "existing"],
    "platform": ["debian-13", "debian-12", "ubuntu-24.04", "rhel-9"],
    "remote_app_servers": ["none", "10.0.0.5:8000"],
    "cache": ["off", "on"],
    "metrics": ["off", "prometheus"],
    "backup": ["local", "restic", "off"],
    "database": ["sqlite", "postgresql"],
}


def works(combination: dict[str, str]) -> bool:
    """The combinations the template accepts (the others are refused, see below)."""
    framework, worker = combination["framework"], combination["worker_class"]
    if framework == "asgi" and worker not in ("auto", "asgi"):
        return False
    if combination["database"] == "postgresql" and framework != "django":
        return False
    return not (worker == "asgi" and framework in ("wsgi", "flask", "django"))


def pairwise(options: dict[str, list[str]]) -> list[dict[str, str]]:
    """A small set of valid combinations in which every valid pair of values occurs (greedy)."""
    names = list(options)
    candidates = [dict(zip(names, values, strict=True)) for values in itertools.product(*options.values())]
    candidates = [c for c in candidates if works(c)]

    def pairs(combination: dict[str, str]) -> set[tuple]:
        return {((a, combination[a]), (b, combination[b])) for a, b in itertools.combinations(names, 2)}

    uncovered = set().union(*(pairs(c) for c in candidates))
    chosen = []
    while uncovered:
        best = max(candidates, key=lambda c: len(pairs(c) & uncovered))
        chosen.append(best)
        uncovered -= pairs(best)
    return chosen


MATRIX = pairwise(OPTIONS)


def variant_id(combination: dict[str, str]) -> str:
    return "-".join(v or "local" for v in combination.values())


def test_matrix_covers_every_valid_pair() -> None:
    assert 15 <= len(MATRIX) <= 40, len(MATRIX)
    seen = {frozenset(c.items()) for c in MATRIX}
    assert len(seen) == len(MATRIX)


@pytest.mark.parametrize("answers", MATRIX, ids=map(variant_id, MATRIX))
def test_variant_bakes_passes_check_and_is_lint_clean(cookies, framework_venv: Path, answers: dict[str, str]) -> None:
    require_tool("nginx", "apt-get install nginx")
    result = cookies.bake(extra_context={**answers, "domain_name": "shop.example.org"})
    assert result.exception is None, result.exception
    project = Baked(Path(result.project_path), result.context)
    # The app's own requirements in place, as after deploy/setup-venv: gunicorn loads the real app.
    (project.path / "my_app_venv").symlink_to(framework_venv)
    check = project.run(sys.executable, "deploy/check", "--strict", env={**os.environ, "CI": "true"})
    assert check.returncode == 0, check.stdout
    found = statuses(check.stdout)
    # PostgreSQL: "skip" when the connections one host may open exceed PostgreSQL's default limit on
    # this machine's cores (deploy/install checks the server's own limit).
    assert found.pop("database", "ok") in {"ok", "skip"} and ("database" in check.stdout) == (
        answers["database"] == "postgresql"
    ), check.stdout
    assert found == {
        "python": "ok",
        "gunicorn": "skip" if answers["framework"] == "existing" else "ok",
        "nginx": "ok",
        "systemd": "ok",
        "sandbox": "ok",
    }, check.stdout
    files = [p for p in generated_files(project.path) if "my_app_venv" not in p.parts]
    python = [str(p) for p in files if p.suffix == ".py" or p.read_bytes().startswith(b"#!/usr/bin/env python3")]
    ruff = [sys.executable, "-m", "ruff"]
    config = ["--no-cache", "--config", str(TEMPLATE_DIR / "pyproject.toml")]
    lint = subprocess.run([*ruff, "check", *config, *python], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    form = subprocess.run([*ruff, "format", "--check", *config, *python], capture_output=True, text=True)
    assert form.returncode == 0, form.stdout
    shells = [str(p) for p in files if p.read_bytes().startswith(b"#!/usr/bin/env bash")]
    shellcheck = subprocess.run(
        [require_tool("shellcheck", "apt-get install shellcheck"), *shells], capture_output=True, text=True
    )
    assert shellcheck.returncode == 0, shellcheck.stdout
    for path in files:
        text = path.read_text()
        assert "{{" not in text or "cookiecutter" not in text, path
        assert ("\n\n\n\n" if str(path) in python else "\n\n\n") not in text, path


@pytest.mark.parametrize(
    "answers, message",
    [
        ({"framework": "asgi", "worker_class": "sync"}, 'worker_class: "sync" cannot serve an ASGI app'),
        ({"framework": "asgi", "worker_class": "gevent"}, 'worker_class: "gevent" cannot serve an ASGI app'),
        (
            {"framework": "django", "worker_class": "asgi"},
            "needs an ASGI app, and framework django generates a WSGI one",
        ),
        ({"tls_mode": "letsencrypt", "domain_name": "localhost"}, "cannot get a Let's Encrypt certificate"),
        ({"tls_mode": "letsencrypt", "domain_name": "192.0.2.10"}, "cannot get a Let's Encrypt certificate"),
        ({"bind": "tcp", "app_port": "65534", "instances": "3"}, "would need ports up to 65536"),
        ({"framework": "existing", "existing_app": "my app"}, 'existing_app: "my app" is not a module:callable'),
        ({"remote_app_servers": "10.0.0.5"}, "is not a comma-separated list of host:port"),
        ({"remote_app_servers": "10.0.0.5:80;evil"}, "is not a comma-separated list of host:port"),
        ({"instances": "0"}, 'instances: "0" is not a whole number from 1 to 16'),
        ({"threads": "many"}, 'threads: "many" is not a whole number from 1 to 64'),
        ({"tls_certificate": "../cert.pem", "tls_mode": "existing"}, "is not a plain absolute path"),
        ({"tls_email": "me at example.com"}, "is not an email address"),
        ({"framework": "flask", "database": "postgresql"}, 'database: "postgresql" needs framework django'),
    ],
    ids=[
        "asgi-app-on-sync",
        "asgi-app-on-gevent",
        "django-on-asgi-worker",
        "letsencrypt-localhost",
        "letsencrypt-ip",
        "instance-ports-overflow",
        "bad-module-callable",
        "remote-without-port",
        "remote-injection",
        "zero-instances",
        "threads-word",
        "relative-certificate",
        "bad-email",
        "postgresql-without-django",
    ],
)
def test_impossible_combinations_are_refused(cookies, capfd, answers: dict[str, str], message: str) -> None:
    result = cookies.bake(extra_context=answers)
    assert isinstance(result.exception, FailedHookException)
    assert message in capfd.readouterr().err


def test_rolling_restart_command_restarts_each_instance_in_turn(bake) -> None:
    project = bake(bind="tcp", instances="3", app_port="9001")
    result = project.run(sys.executable, "deploy/rolling-restart", "--dry-run", check=True)
    assert result.stdout.splitlines() == [
        f"restart: systemctl restart my_app@{port}.service" for port in (9001, 9002, 9003)
    ]
    unit = (project.path / "deploy/systemd/my_app@.service").read_text()
    assert "Environment=GUNICORN_BIND=127.0.0.1:%i" in unit
