"""Switching releases under load, for each way the app can listen, on real Debian servers.

A deploy of new requirements (a venv of its own) restarts the app instead of reloading it, and a
rollback to the release before restarts it again: the switch the default project's tests do not
cover for TCP ports and several instances. The paced load of the other server tests runs through
nginx meanwhile; no request may fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from servers import Checkout, copy_project, load, other_requirements

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
