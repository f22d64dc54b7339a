"""Three gunicorn instances behind nginx (instances=3) on a real Debian 13 server: restarts and
redeploys go one instance at a time, and requests keep succeeding meanwhile. (Debian 12 runs three
instances in test_server_releases.py, on TCP and on sockets.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from servers import Checkout, copy_project, load

HOME_TEXT = "Served by gunicorn behind nginx."
SERVICES = [f"my_app@{n}.service" for n in (1, 2, 3)]


@pytest.fixture(scope="module")
def checkout(lab, server_project) -> Iterator[Checkout]:
    release = "trixie"
    project = server_project(release, instances="3")
    with lab.booted(f"instances-{release}", release=release) as (host,):
        checkout = copy_project(host, project.path, "/root/my_app")
        checkout.installed()
        yield checkout


def test_three_instances_run_and_the_site_answers(checkout: Checkout) -> None:
    host = checkout.host
    assert all(host.is_active(service) for service in SERVICES)
    assert host.get("/").status == 200


def test_rolling_restart_under_load_fails_no_request(checkout: Checkout) -> None:
    host = checkout.host
    pids = {s: host.run("systemctl", "show", "-P", "MainPID", s).stdout.strip() for s in SERVICES}
    since = host.clock()
    with load(host.address, seconds=120, max_requests=30000) as seen:
        time.sleep(0.5)
        result = host.run(f"{checkout.path}/deploy/rolling-restart", cwd="/", check=False, timeout=180)
        time.sleep(0.5)
    print(f"instances=3 rolling restart under load: {seen}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(host.run("systemctl", "show", "-P", "MainPID", s).stdout.strip() != pids[s] for s in SERVICES)
    assert seen.failed == 0, f"{seen}\n{result.stdout}\n{host.journal(since, *SERVICES, 'nginx.service')}"


def test_redeploy_under_load_reloads_each_instance_and_fails_no_request(checkout: Checkout) -> None:
    host = checkout.host
    marker = f"release {time.monotonic_ns()}"
    checkout.edit("my_app/app.py", HOME_TEXT, f"{HOME_TEXT} {marker}")
    since = host.clock()
    with load(host.address, seconds=120, max_requests=30000) as seen:
        output = checkout.installed()
        time.sleep(0.5)
    print(f"instances=3 redeploy under load: {seen}")
    assert "reload my_app@1.service my_app@2.service my_app@3.service" in output, output
    assert seen.failed == 0, f"{seen}\n{host.journal(since, *SERVICES, 'nginx.service')}"
    assert all(marker in host.get("/").text for _ in range(6))
