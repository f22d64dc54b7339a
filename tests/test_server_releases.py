"""Switching releases under load, for each way the app can listen, on real Debian servers.

A deploy of new requirements (a venv of its own) restarts the app instead of reloading it, and a
rollback to the release before restarts it again: the switch the default project's tests do not
cover for TCP ports and several instances. The paced load of the other server tests runs through
nginx meanwhile; no request may fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import STRICT, TEMPLATE_DIR
from servers import RELEASES, Checkout, copy_project, load, make_wheelhouse, other_requirements, platform_answer

# (bind, instances): the default project's own variant, unix and one instance, is in test_server_install.
VARIANTS = [("tcp", "1"), ("tcp", "3"), ("unix", "3")]


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda variant: f"{variant[0]}-{variant[1]}")
def checkout(request, lab, server_project) -> Iterator[tuple[Checkout, object]]:
    bind, instances = request.param
    project = server_project("bookworm", bind=bind, instances=instances)
    with lab.booted(f"releases-{bind}-{instances}", release="bookworm") as (host,):
        checkout = copy_project(host, project.path, "/root/my_app")
        checkout.installed()
        yield checkout, request.param


def current(checkout: Checkout) -> str:
    return checkout.host.run("readlink", "/srv/my_app/current").stdout.strip()


def test_new_requirements_and_the_rollback_switch_under_load_without_a_failed_request(
    checkout, server_project, wheel_cache
) -> None:
    checkout, (bind, instances) = checkout
    host = checkout.host
    before = current(checkout)
    with other_requirements(checkout, server_project("bookworm", bind=bind, instances=instances).path, wheel_cache):
        with load(host.address, seconds=120, max_requests=30000) as seen:
            output = checkout.installed()
        print(f"{bind}, instances={instances}: deploy of new requirements (restart) under load: {seen}")
        assert "restart my_app" in output, output
        assert current(checkout) != before
        assert seen.failed == 0, f"{seen}\n{output}"
        with load(host.address, seconds=60, max_requests=20000) as seen:
            started = time.monotonic()
            output = checkout.installed("--rollback")
            took = time.monotonic() - started
        print(f"{bind}, instances={instances}: --rollback (restart) in {took:.2f}s under load: {seen}")
        assert current(checkout) == before
        assert seen.failed == 0, f"{seen}\n{output}"


# The template's last commit whose deploy/install copied the app in place (app/ and a venv beside
# it): what servers installed before releases run.
IN_PLACE_LAYOUT = "7f5b06d"


def in_place_project(tmp_path: Path, cache: Path) -> Path:
    """The default project baked from the template as it was at IN_PLACE_LAYOUT, with its wheelhouse."""
    listed = subprocess.run(
        ["git", "-C", str(TEMPLATE_DIR), "cat-file", "-e", f"{IN_PLACE_LAYOUT}^{{commit}}"], check=False
    )
    if listed.returncode:
        message = f"the template's history holds no commit {IN_PLACE_LAYOUT} (a shallow clone?)"
        if STRICT:
            pytest.fail(f"{message}; CI=true makes it a failure")
        pytest.skip(message)
    template = tmp_path / "template"
    template.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(TEMPLATE_DIR), "archive", IN_PLACE_LAYOUT], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(template)], input=archive, check=True)
    # In a process of its own, away from this checkout: this one has imported the template's local
    # extensions of today, and python -m finds modules in its working folder first.
    answers = [f"{name}={value}" for name, value in platform_answer("bookworm").items()]
    out = tmp_path / "old"
    subprocess.run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "--output-dir", str(out), str(template), *answers],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    project = out / "my_app"
    make_wheelhouse(project, RELEASES["bookworm"], cache)
    return project


def test_in_place_install_moves_to_releases_under_load_without_a_failed_request(
    lab, server_project, wheel_cache, tmp_path
) -> None:
    old = in_place_project(tmp_path, wheel_cache)
    new = server_project("bookworm")
    with lab.booted("releases-upgrade", release="bookworm") as (host,):
        # Its deploy/install predates --watch: run as it was, without the suite's --watch 0.
        before = host.run("deploy/install", cwd=copy_project(host, old, "/root/old").path, check=False, timeout=300)
        assert before.returncode == 0, before.stdout + before.stderr
        assert host.exists("/srv/my_app/app/wsgi.py") and host.exists("/srv/my_app/my_app_venv/bin/gunicorn")
        checkout = copy_project(host, new.path, "/root/my_app")
        with load(host.address, seconds=120, max_requests=30000) as seen:
            output = checkout.installed()
        print(f"in-place layout to releases under load: {seen}")
        assert seen.failed == 0, f"{seen}\n{output}"
        assert host.run("readlink", "/srv/my_app/current").stdout.startswith("releases/")
        assert not host.exists("/srv/my_app/app") and not host.exists("/srv/my_app/my_app_venv"), output
        manifest = json.loads(host.read("/var/lib/my_app-install/manifest.json"))
        assert not [
            path for path in manifest["paths"] if path.startswith(("/srv/my_app/app", "/srv/my_app/my_app_venv"))
        ]
        assert host.get("/").status == 200
        # What the manifest lists is all there is: purge leaves no trace of the old layout either.
        checkout.installed("--uninstall", "--purge")
        assert not host.exists("/srv/my_app")
