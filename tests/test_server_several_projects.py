"""Three projects of different kinds on one real Debian server, each answering for its own domain:
the default one (unix socket), a TCP one with two instances, and a Flask app. They share nginx and
its catch-all default server; removing one leaves the others answering, and the last one out puts
back what was there before. A fourth one asking for a TCP port that is taken is refused before
it changes anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import bake_or_fail
from servers import Checkout, Host, copy_project, platform_answer

PROJECTS = {
    "shop": {"project_name": "Shop", "domain_name": "shop.example"},
    "blog": {
        "project_name": "Blog",
        "domain_name": "blog.example",
        "bind": "tcp",
        "app_port": "8101",
        "instances": "2",
    },
    "wiki": {"project_name": "Wiki", "domain_name": "wiki.example", "framework": "flask"},
}
CATCH_ALL = "/etc/nginx/sites-available/catch-all.conf"
STOCK_DEFAULT = "/etc/nginx/sites-enabled/default"


@dataclass
class Server:
    host: Host
    checkouts: dict[str, Checkout]
    stock_default: str  # where Debian's default site link pointed before


@pytest.fixture(scope="module")
def server(lab, server_project) -> Iterator[Server]:
    with lab.booted("several", release="bookworm") as (host,):
        stock = host.run("readlink", STOCK_DEFAULT).stdout.strip()
        checkouts = {}
        for slug, answers in PROJECTS.items():
            project = server_project("bookworm", **answers)
            checkouts[slug] = copy_project(host, project.path, f"/root/{slug}")
            checkouts[slug].installed()
        yield Server(host, checkouts, stock)


def answers_for(host: Host, domain: str) -> int | None:
    """The status nginx answers for `domain`, None when it closes without an answer (444)."""
    try:
        return host.get("/", host=domain).status
    except ConnectionError:
        return None


def test_each_project_answers_for_its_own_domain(server: Server) -> None:
    for slug, answers in PROJECTS.items():
        response = server.host.get("/", host=answers["domain_name"])
        assert response.status == 200, (slug, response.text)
        assert answers["project_name"] in response.text


def test_nginx_configuration_of_three_projects_passes_without_warnings(server: Server) -> None:
    result = server.host.run("nginx", "-t", check=False)
    assert result.returncode == 0 and "[warn]" not in result.stderr, result.stderr


def test_one_catch_all_serves_all_three_and_refuses_other_names(server: Server) -> None:
    host = server.host
    assert "# Used by: blog, shop, wiki\n" in host.read(CATCH_ALL)
    assert host.run("grep", "-REl", "^ *listen .*default_server", "/etc/nginx/sites-enabled/").stdout.split() == [
        "/etc/nginx/sites-enabled/catch-all.conf"
    ]
    assert answers_for(host, "evil.com") is None
    assert not host.exists(STOCK_DEFAULT)


def test_a_project_on_a_port_already_taken_is_refused_before_any_change(server: Server, cookies_session) -> None:
    host = server.host
    project = bake_or_fail(
        cookies_session,
        project_name="Forum",
        domain_name="forum.example",
        bind="tcp",
        app_port="8102",
        **platform_answer("bookworm"),
    )
    checkout = copy_project(host, project.path, "/root/forum")
    result = checkout.install()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "preflight: FAILED" in output and "port 8102 is already in use by" in output, output
    assert output.strip().splitlines()[-1] == "install: nothing changed"
    assert not host.exists("/srv/forum") and host.run("id", "forum", check=False).returncode == 1
    assert all(answers_for(host, answers["domain_name"]) == 200 for answers in PROJECTS.values())


def test_uninstalling_the_middle_one_leaves_the_others_answering(server: Server) -> None:
    host = server.host
    server.checkouts["blog"].installed("--uninstall")
    assert answers_for(host, "blog.example") is None
    assert answers_for(host, "shop.example") == 200
    assert answers_for(host, "wiki.example") == 200
    assert "# Used by: shop, wiki\n" in host.read(CATCH_ALL)
    assert not host.is_active("blog@8101.service")


def test_purging_the_last_removes_the_catch_all_and_restores_the_default_site(server: Server) -> None:
    host = server.host
    for slug in ("blog", "shop", "wiki"):
        server.checkouts[slug].installed("--uninstall", "--purge")
    assert not host.exists(CATCH_ALL)
    assert not host.exists("/etc/nginx/sites-enabled/catch-all.conf")
    assert host.run("readlink", STOCK_DEFAULT).stdout.strip() == server.stock_default
    result = host.run("nginx", "-t", check=False)
    assert result.returncode == 0 and "[warn]" not in result.stderr, result.stderr
    # Debian's own welcome page again, for any name.
    assert "Welcome to nginx" in host.get("/", host="evil.com").text
