"""Several servers with Ansible: two app hosts and a load balancer, booted Debian 12 on a private
network, converged over ssh by the project's own deploy/ansible playbooks; releases rolled out
under load, a failing one stopped at its first host, every host rolled back under load, and a third
app host joining, then retired. A whole server (the server group) goes through the same plays.

The tests run in order on one set of hosts (the module's tests share them, as an operator's
servers see one deploy after another)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Baked, require_tool
from servers import Host, Lab, http_get, load

RELEASE = "bookworm"
APP_MODULE = "my_app/app.py"
# Appended to the app by the tests: a page that says which release and which host answered.
RELEASE_PAGE = """

# Which release answers, and on which host (added for the several-servers tests).
import socket  # noqa: E402

RELEASE = "{release}"


def release(environ: dict) -> tuple[str, str, bytes]:
    return "200 OK", "text/plain; charset=utf-8", f"{{RELEASE}} {{socket.gethostname()}}\\n".encode()


ROUTES["/release"] = release
"""
BROKEN_HEALTH = """

def broken_health(environ: dict) -> tuple[str, str, bytes]:
    return "500 Internal Server Error", "text/plain; charset=utf-8", b"broken\\n"


ROUTES["/healthz"] = broken_health
"""
FAILING_RELEASE_PAGE = """

def failing_release(environ: dict) -> tuple[str, str, bytes]:
    return "500 Internal Server Error", "text/plain; charset=utf-8", b"broken\\n"


ROUTES["/release"] = failing_release
"""
# Where the playbooks keep the release archives on each host, and a load balancer its releases
# (group_vars/all.yml); where deploy/install keeps the release an app host or a server runs.
RELEASES_DIR = "/var/lib/my_app-releases"
INSTALLER = "/srv/my_app/current/deploy/install"
# The site deploy/install writes on a load balancer, its upstream listing the app hosts.
LB_SITE = "/etc/nginx/sites-available/my_app.conf"
RECAP = re.compile(r"^(?P<host>\S+)\s+: ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                   r"\s+failed=(?P<failed>\d+)", re.MULTILINE)  # fmt: skip
PLAYBOOK_SECONDS = 600
# The watch after each batch (group_vars: 30 s), shortened where a test does not look at it.
WATCH_SECONDS = 2


@dataclass
class Played:
    returncode: int
    output: str
    seconds: float
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"exit {self.returncode} after {self.seconds:.1f}s\n{self.output}"


@dataclass
class Cluster:
    """The project on the controller (this machine), the booted hosts, and Ansible's inventory."""

    lab: Lab
    project: Baked
    app_module: str
    hosts: dict[str, Host]
    groups: dict[str, list[str]]
    inventory: Path
    ansible_playbook: str

    @property
    def lb(self) -> Host:
        return self.hosts["lb"]

    def release(self, name: str, *extra: str) -> None:
        """Make the project's app release `name` (and add `extra` code), as a developer would."""
        path = self.project.path / APP_MODULE
        path.write_text(self.app_module + RELEASE_PAGE.format(release=name) + "".join(extra))

    def write_inventory(self) -> None:
        """The inventory an operator writes, as inventory.example.yml shows, for the lab's hosts."""
        children = {
            group: {"hosts": {name: {"ansible_host": self.hosts[name].address} for name in names}}
            for group, names in self.groups.items()
        }
        inventory = {
            "all": {
                "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(self.lab.ssh_key),
                    "ansible_ssh_common_args": " ".join(self.lab.ssh_options),
                },
                "children": children,
            }
        }
        # JSON is YAML: Ansible reads it as an inventory file like any other.
        self.inventory.write_text(json.dumps(inventory, indent=2))

    def play(self, playbook: str, *args: str) -> Played:
        """ansible-playbook run from deploy/ansible, as the generated README says; each batch's
        answers watched for WATCH_SECONDS unless `args` say otherwise."""
        if not any(arg.startswith("watch_seconds=") for arg in args):
            args = (*args, "-e", f"watch_seconds={WATCH_SECONDS}")
        tools = str(Path(self.ansible_playbook).parent)
        env = {
            **os.environ,
            # ansible-playbook starts ansible's other commands from its own folder.
            "PATH": f"{tools}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(self.inventory.parent / "ansible-local"),
            "ANSIBLE_HOME": str(self.inventory.parent / "ansible-home"),
        }
        started = time.monotonic()
        result = subprocess.run(
            [self.ansible_playbook, "-i", str(self.inventory), playbook, *args],
            cwd=self.project.path / "deploy" / "ansible",
            capture_output=True,
            text=True,
            env=env,
            timeout=PLAYBOOK_SECONDS,
            check=False,
        )
        played = Played(result.returncode, result.stdout + result.stderr, time.monotonic() - started)
        for match in RECAP.finditer(result.stdout):
            counts = {key: int(value) for key, value in match.groupdict().items() if key != "host"}
            played.recap[match["host"]] = counts
        return played

    def answers(self, path: str = "/release", count: int = 30) -> list[str]:
        """What `count` requests through the load balancer got back: "<release> <host>" each."""
        found = []
        for _ in range(count):
            response = self.lb.get(path)
            assert response.status == 200, response
            found.append(response.text.strip())
        return found

    def on_host(self, name: str, port: int = 8081) -> str:
        """The release a host's gunicorn answers directly, on its private address."""
        host = self.hosts[name]
        return http_get(host.address, "/release", port=port).text.strip()


@contextmanager
def booted_cluster(
    lab: Lab, project: Baked, groups: dict[str, list[str]], folder: Path, release: str
) -> Iterator[Cluster]:
    """The hosts of `groups` booted, with the inventory an operator would write for them; removed after."""
    require_tool("ssh", "apt-get install openssh-client")
    playbook = require_tool("ansible-playbook", "pip install -r requirements-dev.txt")
    hosts = lab.boot([name for names in groups.values() for name in names], release=release)
    app = project.path / APP_MODULE
    cluster = Cluster(
        lab=lab,
        project=project,
        app_module=app.read_text() if app.exists() else "",
        hosts={host.name: host for host in hosts},
        groups=groups,
        inventory=folder / "inventory.yml",
        ansible_playbook=playbook,
    )
    cluster.write_inventory()
    try:
        yield cluster
    finally:
        for host in list(cluster.hosts.values()):
            lab.remove(host)


@pytest.fixture(scope="module")
def cluster(lab: Lab, server_project, tmp_path_factory) -> Iterator[Cluster]:
    groups = {"app": ["app1", "app2"], "lb": ["lb"], "server": ["one"]}
    with booted_cluster(lab, server_project(RELEASE), groups, tmp_path_factory.mktemp("ansible"), RELEASE) as cluster:
        cluster.release("v1")
        yield cluster


def changed_anywhere(played: Played) -> dict[str, int]:
    return {host: counts["changed"] for host, counts in played.recap.items() if counts["changed"]}


def test_site_converges_every_host_and_a_second_run_changes_nothing(cluster: Cluster) -> None:
    first = cluster.play("site.yml")
    print(f"site.yml, first run: {first.seconds:.1f}s")
    assert first.returncode == 0, str(first)
    assert set(first.recap) == {"localhost", "app1", "app2", "lb", "one"}, first
    assert all(counts["changed"] for name, counts in first.recap.items() if name != "localhost"), first
    second = cluster.play("site.yml")
    print(f"site.yml, second run: {second.seconds:.1f}s")
    assert second.returncode == 0, second
    assert changed_anywhere(second) == {}, second


def test_requests_through_the_load_balancer_reach_both_app_hosts(cluster: Cluster) -> None:
    answers = cluster.answers()
    assert set(answers) == {"v1 app1", "v1 app2"}, answers
    # The whole server answers by itself.
    assert cluster.hosts["one"].get("/release").text.strip() == "v1 one"
    # The static files come from the load balancer's nginx, not from an app host.
    assert cluster.lb.get("/static/style.css").status == 200
    # gunicorn trusts X-Forwarded-For from the load balancer: the app sees this machine's address.
    assert f'id="client-addr">{cluster.lab.gateway}<' in cluster.lb.get("/").text


def test_app_hosts_listen_on_their_private_address_and_trust_only_the_load_balancer(cluster: Cluster) -> None:
    app1 = cluster.hosts["app1"]
    assert cluster.on_host("app1") == "v1 app1"
    forged = http_get(app1.address, "/", port=8081, headers={"X-Forwarded-For": "203.0.113.9"}).text
    # From anywhere but the load balancer the header is ignored: the app sees the real peer.
    assert f'id="client-addr">{cluster.lab.gateway}<' in forged, forged
    # gunicorn listens on the private address only, through the socket systemd holds (socket
    # activation, as on one server), and the app host has no site of the project.
    listening = app1.run("ss", "-Hltnp", "sport", "= :8081").stdout
    assert re.search(rf"^LISTEN .* {re.escape(app1.address)}:8081 .*\"systemd\",pid=1,", listening, re.M), listening
    assert "127.0.0.1:8081" not in listening, listening
    assert not app1.exists("/run/my_app/gunicorn.sock")
    assert not app1.exists("/etc/nginx/sites-enabled/my_app.conf")
    # gunicorn believes X-Forwarded-Proto from the load balancer, and from nobody else.
    said = ["-H", "Host: example.com", "-H", "X-Forwarded-Proto: https", f"http://{app1.address}:8081/"]
    assert '<dd id="scheme">https</dd>' in cluster.lb.run("curl", "-sS", *said).stdout
    direct = http_get(app1.address, "/", port=8081, headers={"X-Forwarded-Proto": "https"})
    assert '<dd id="scheme">http</dd>' in direct.text
    # The host remembers its role: a bare deploy/install there is refused and says what to give.
    bare = app1.run(INSTALLER, cwd="/", check=False)
    assert bare.returncode == 1 and f"--role app --listen {app1.address}" in bare.stdout, bare.stdout + bare.stderr


def played_under_load(cluster: Cluster, playbook: str) -> None:
    """`playbook` run while the paced load goes through the load balancer: it succeeds, and no
    request fails meanwhile."""
    with load(cluster.lb.address, path="/release", seconds=300, max_requests=60000) as seen:
        time.sleep(0.5)
        played = cluster.play(playbook)
        time.sleep(0.5)
    print(f"{playbook}, 2 app hosts and a whole server, under load: {played.seconds:.1f}s; {seen}")
    assert played.returncode == 0, played
    assert seen.failed == 0, seen
    assert seen.sent > 100, seen


def test_rolling_update_under_load_fails_no_request(cluster: Cluster) -> None:
    cluster.release("v2")
    played_under_load(cluster, "rolling.yml")
    assert [cluster.on_host("app1"), cluster.on_host("app2")] == ["v2 app1", "v2 app2"]
    assert set(cluster.answers()) == {"v2 app1", "v2 app2"}
    assert cluster.hosts["one"].get("/release").text.strip() == "v2 one"
    # Each host keeps one copy of each release, deploy/install's; Ansible keeps the archives.
    unpacked = cluster.hosts["app1"].run("find", RELEASES_DIR, "-mindepth", "1", "-maxdepth", "1", "-type", "d")
    assert unpacked.stdout == "", unpacked.stdout


def test_status_shows_every_host_and_each_app_host_on_the_load_balancer(cluster: Cluster) -> None:
    """status.yml after the rolling update's load: deploy/status of every host, the load balancer's
    traffic per app host, the app hosts' release."""
    played = cluster.play("status.yml")
    print(f"status.yml: {played.seconds:.1f}s")
    assert played.returncode == 0, played
    assert all(counts["changed"] == 0 for counts in played.recap.values()), played
    for name in ("app1", "app2"):
        assert re.search(rf"{re.escape(cluster.hosts[name].address)}:8081 +\d+\.\d +\d+ ", played.output), played
    assert played.output.count("traffic: this host runs no nginx") == 2, played
    assert played.output.count("my_app.service: active (running)") == 3, played


def test_maintenance_page_on_every_load_balancer_and_off_again_under_load(cluster: Cluster) -> None:
    with load(cluster.lb.address, path="/release", seconds=120, max_requests=30000) as seen:
        time.sleep(0.5)
        on = cluster.play("maintenance.yml", "-e", "maintenance=on")
        during = cluster.lb.get("/release")
        off = cluster.play("maintenance.yml", "-e", "maintenance=off")
        time.sleep(0.5)
    print(f"maintenance.yml on, then off, under load: {on.seconds:.1f}s and {off.seconds:.1f}s; {seen}")
    assert on.returncode == 0 and off.returncode == 0, f"{on}\n{off}"
    assert during.status == 503 and "is down for maintenance" in during.text
    assert during.headers["retry-after"] == "120"
    assert set(seen.statuses) == {200, 503} and not seen.errors, seen
    assert cluster.hosts["one"].get("/release").status == 200 and cluster.lb.get("/release").status == 200
    refused = cluster.play("maintenance.yml")
    assert refused.returncode != 0 and "-e maintenance=on or -e maintenance=off" in refused.output, refused


def test_release_failing_its_users_is_rolled_back_by_the_watch_and_stops_the_play(cluster: Cluster) -> None:
    """/healthz answers but /release fails for everyone on v3: the load balancer's watch sees
    app1's 5xx, app1 goes back to v2 and into rotation, and app2 is never touched."""
    cluster.release("v3", FAILING_RELEASE_PAGE)
    with load(cluster.lb.address, path="/release", seconds=300, max_requests=60000) as seen:
        time.sleep(1)
        played = cluster.play("rolling.yml", "-e", "watch_seconds=30")
        time.sleep(0.5)
    print(f"rolling.yml with a release failing its users, under load: {played.seconds:.1f}s; {seen}")
    print(f"answers that failed before the watch sent app1 back: {seen.statuses[500]}")
    assert played.returncode != 0, played
    assert played.recap["app1"]["failed"] == 1, played
    assert "answered worse than the one before and was rolled back" in played.output, played
    assert "app2" not in played.recap or played.recap["app2"]["changed"] == 0, played
    assert set(seen.statuses) <= {200, 500} and not seen.errors, seen
    assert [cluster.on_host("app1"), cluster.on_host("app2")] == ["v2 app1", "v2 app2"]
    assert set(cluster.answers()) == {"v2 app1", "v2 app2"}
    listed = cluster.hosts["app1"].run(INSTALLER, "--releases", cwd="/").stdout
    assert "rolled back from on " in listed, listed


def test_failing_release_stops_at_its_first_host_which_stays_drained(cluster: Cluster) -> None:
    cluster.release("v3", BROKEN_HEALTH)
    played = cluster.play("rolling.yml")
    print(f"rolling.yml with a failing /healthz: {played.seconds:.1f}s")
    assert played.returncode != 0, played
    assert played.recap["app1"]["failed"] == 1, played
    # The play stopped there: the second host was never drained nor touched.
    assert "app2" not in played.recap or played.recap["app2"]["changed"] == 0, played
    # deploy/install rolled the first host back to v2; the load balancer serves from the other.
    assert cluster.on_host("app1") == "v2 app1"
    assert cluster.on_host("app2") == "v2 app2"
    assert set(cluster.answers()) == {"v2 app2"}
    site = cluster.lb.read(LB_SITE)
    assert re.search(rf"server {re.escape(cluster.hosts['app1'].address)}:8081 .*\bdown;", site), site


def test_rollback_goes_back_on_every_host_under_load(cluster: Cluster) -> None:
    """After the failed v3 (app1 drained, both app hosts on v2): back to v1 everywhere, the load
    balancer's site and static files included, with no request failing meanwhile."""
    played_under_load(cluster, "rollback.yml")
    assert [cluster.on_host("app1"), cluster.on_host("app2")] == ["v1 app1", "v1 app2"]
    # app1 is back in the upstream: the rollback puts its batch back like an update does.
    assert set(cluster.answers()) == {"v1 app1", "v1 app2"}
    assert cluster.hosts["one"].get("/release").text.strip() == "v1 one"
    listed = cluster.hosts["app1"].run(INSTALLER, "--releases", cwd="/").stdout
    assert re.search(r"rolled back from on ", listed) and re.search(r"failed: ", listed), listed
    lb_release = cluster.lb.run("readlink", f"{RELEASES_DIR}/current").stdout.strip()
    app_release = cluster.hosts["app1"].run("readlink", "/srv/my_app/current").stdout.strip()
    assert lb_release.rsplit("/", 1)[1] == app_release.rsplit("/", 1)[1]


def test_a_drain_is_in_force_when_the_installer_returns(cluster: Cluster) -> None:
    """rolling.yml deploys right after the drain: nginx must have stopped using the host by then."""
    addresses = [cluster.hosts[name].address for name in cluster.groups["app"]]
    command = [f"{RELEASES_DIR}/current/deploy/install", "--role", "lb"]
    command += [f"--app-host={address}" for address in addresses] + [f"--drain={address}" for address in addresses]
    started = time.monotonic()
    drained = cluster.lb.run(*command, cwd="/")
    print(f"a drain of both app hosts on the load balancer: {time.monotonic() - started:.1f}s")
    assert "health: every app host is drained" in drained.stdout, drained.stdout
    # Every app host drained: nginx has nowhere to send a request, from the first one on.
    assert [cluster.lb.get("/release").status for _ in range(5)] == [502] * 5


def test_a_third_app_host_added_to_the_inventory_joins_the_upstream(cluster: Cluster) -> None:
    (app3,) = cluster.lab.boot(["app3"], release=RELEASE)
    cluster.hosts["app3"] = app3
    cluster.groups["app"].append("app3")
    cluster.write_inventory()
    cluster.release("v2")  # the release that runs everywhere: the broken one is withdrawn
    played = cluster.play("site.yml")
    print(f"site.yml with a third app host: {played.seconds:.1f}s")
    assert played.returncode == 0, played
    assert played.recap["app3"]["changed"] > 0, played
    # site.yml puts the drained hosts back too: every app host answers through the load balancer.
    assert set(cluster.answers(count=45)) == {"v2 app1", "v2 app2", "v2 app3"}


def test_an_app_host_taken_out_of_the_inventory_leaves_the_upstream_and_purges_clean(cluster: Cluster) -> None:
    app3 = cluster.hosts["app3"]
    cluster.groups["app"].remove("app3")
    cluster.write_inventory()
    played = cluster.play("site.yml")
    print(f"site.yml without the third app host: {played.seconds:.1f}s")
    assert played.returncode == 0, played
    assert set(played.recap) == {"localhost", "app1", "app2", "lb", "one"}, played
    assert played.recap["lb"]["changed"] > 0, played
    site = cluster.lb.read(LB_SITE)
    assert f"{app3.address}:" not in site, site
    assert set(cluster.answers(count=30)) == {"v2 app1", "v2 app2"}
    # Then the host itself, as the README says: the installer removes what it installed, from the
    # release it runs; the archives are Ansible's.
    purged = app3.run(INSTALLER, "--uninstall", "--purge", cwd="/")
    assert "uninstall: done" in purged.stdout and "left in place" not in purged.stdout, purged.stdout
    app3.run("rm", "-rf", RELEASES_DIR)
    left = app3.run("find", "/etc", "/srv", "/var", "/run", "/usr/local", "-xdev", "-name", "*my_app*").stdout
    assert left == "", left
    assert app3.run("id", "my_app", check=False).returncode == 1  # no such user
    assert not app3.run("ss", "-Hltn", "sport", "= :8081").stdout.strip()
