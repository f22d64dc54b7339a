"""A site on two real Debian servers: an app host (deploy/install --role app) behind a load
balancer (deploy/install --role lb), as the playbooks lay it out.

One app host and one load balancer boot on the lab's network; the default project is copied to
both, with a wheelhouse for the app host's venv, and installed there with its role. The tests
share them, in order.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from servers import Checkout, Host, copy_project, http_get

RELEASE = "bookworm"
HOME_TEXT = "Served by gunicorn behind nginx."


@dataclass
class Tier:
    app1: Host
    lb: Host
    app: Checkout
    balancer: Checkout

    @property
    def app_args(self) -> tuple[str, ...]:
        return ("--role", "app", "--listen", self.app1.address, "--trust", self.lb.address)

    @property
    def lb_args(self) -> tuple[str, ...]:
        return ("--role", "lb", "--app-host", self.app1.address)


@pytest.fixture(scope="module")
def tier(lab, server_project) -> Iterator[Tier]:
    project = server_project(RELEASE)
    with lab.booted("roles-app1", "roles-lb", release=RELEASE) as (app1, lb):
        yield Tier(
            app1, lb, copy_project(app1, project.path, "/root/my_app"), copy_project(lb, project.path, "/root/my_app")
        )


def statuses(address: str, count: int) -> Counter:
    return Counter(http_get(address, "/healthz", timeout=5).status for _ in range(count))


def test_load_balancer_reaches_the_app_host_on_its_private_address_only(tier: Tier) -> None:
    app_output = tier.app.installed(*tier.app_args)
    assert f"health: /healthz on {tier.app1.address}:8081 (Host: example.com) answered 200" in app_output
    # systemd holds the TCP socket on the private address (socket activation), not the unix one.
    listening = tier.app1.run("ss", "-Hltnp").stdout
    assert re.search(rf"^LISTEN .* {re.escape(tier.app1.address)}:8081 .*\"systemd\",pid=1,", listening, re.M), (
        listening
    )
    assert not tier.app1.exists("/run/my_app/gunicorn.sock")
    assert not tier.app1.exists("/etc/nginx/sites-enabled/my_app.conf")

    lb_output = tier.balancer.installed(*tier.lb_args)
    assert "health: http://127.0.0.1/healthz (Host: example.com) answered 200" in lb_output
    home = http_get(tier.lb.address)
    assert home.status == 200 and HOME_TEXT in home.text
    assert not tier.lb.exists("/etc/systemd/system/my_app.service") and not tier.lb.exists("/srv/my_app/app")

    # gunicorn believes X-Forwarded-Proto from the load balancer, and from nobody else.
    said = "X-Forwarded-Proto: https"
    url = f"http://{tier.app1.address}:8081/"
    from_lb = tier.lb.run("curl", "-sS", "-H", "Host: example.com", "-H", said, url).stdout
    assert '<dd id="scheme">https</dd>' in from_lb
    direct = http_get(tier.app1.address, port=8081, headers={"X-Forwarded-Proto": "https"})
    assert '<dd id="scheme">http</dd>' in direct.text

    for checkout, args in ((tier.app, tier.app_args), (tier.balancer, tier.lb_args)):
        assert checkout.installed(*args).strip().splitlines()[-1] == "install: nothing changed"
    bare = tier.app.install()
    assert bare.returncode == 1 and f"deploy/install --role app --listen {tier.app1.address}" in bare.stdout


def test_drain_takes_the_app_host_out_of_rotation_before_the_run_returns(tier: Tier) -> None:
    started = time.monotonic()
    drained = tier.balancer.installed(*tier.lb_args, "--drain", tier.app1.address)
    seconds = time.monotonic() - started
    print(f"drain-only run: {seconds:.2f}s")
    assert "nginx: 1 updated" in drained and "health: every app host is drained" in drained
    # Its only app host drained, nginx has nowhere to send a request.
    assert statuses(tier.lb.address, 5) == Counter({502: 5})
    assert seconds < 5

    undrained = tier.balancer.installed(*tier.lb_args)
    assert "nginx: 1 updated" in undrained
    assert statuses(tier.lb.address, 5) == Counter({200: 5})
