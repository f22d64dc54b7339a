"""The default project on real Debian servers, installed as a user installs it.

Each release boots one server (systemd as PID 1, Debian's nginx with its default site), gets the
baked project copied to /root/my_app with a wheelhouse for its Python (the servers reach no
package index), and `deploy/install` run there as root. The tests share that server, in order;
each one leaves it serving.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from servers import NO_WATCH, RELEASES, Checkout, Host, copy_project, http_get, load, other_requirements

DOMAIN = "example.com"
HOME_TEXT = "Served by gunicorn behind nginx."
HEALTHZ_OK = 'return "200 OK", "text/plain; charset=utf-8", b"ok\\n"'
HEALTHZ_FAILING = 'return "500 Internal Server Error", "text/plain; charset=utf-8", b"broken\\n"'
APP = "my_app/app.py"
SITE = "deploy/nginx/my_app.conf"
ACCESS_LOG = "/var/log/nginx/my_app.access.log"


@dataclass
class Installed:
    host: Host
    checkout: Checkout
    output: str
    returncode: int
    seconds: float
    default_site_before: bool


@pytest.fixture(scope="module", params=list(RELEASES))
def server(request, lab, server_project) -> Iterator[Installed]:
    release = request.param
    project = server_project(release)
    with lab.booted(f"install-{release}", release=release) as (host,):
        default_site = host.exists("/etc/nginx/sites-enabled/default")
        checkout = copy_project(host, project.path, "/root/my_app")
        started = time.monotonic()
        result = checkout.install()
        seconds = time.monotonic() - started
        print(f"{release}: first install {seconds:.1f}s")
        yield Installed(host, checkout, result.stdout + result.stderr, result.returncode, seconds, default_site)


@pytest.fixture
def installed(server: Installed) -> Installed:
    """The server, with the first install having succeeded (its output otherwise)."""
    assert server.returncode == 0, f"deploy/install failed:\n{server.output}"
    return server


def raw(address: str, request: bytes, port: int = 80) -> bytes:
    """What the server answers to `request` as sent; b"" when it closes without a word (444)."""
    with socket.create_connection((address, port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def page(host: Host) -> str:
    response = host.get("/")
    assert response.status == 200, response.text
    return response.text


def test_install_from_a_checkout_under_root_serves_the_site(server: Installed) -> None:
    assert server.returncode == 0, server.output
    assert server.output.strip().splitlines()[-1].startswith("install: done"), server.output
    assert "My App" in page(server.host)


def test_site_answers_through_nginx_and_the_systemd_socket(installed: Installed) -> None:
    host = installed.host
    response = host.get("/")
    assert response.status == 200
    # Set by the site's security snippet: the answer came through nginx.
    assert response.headers["x-content-type-options"] == "nosniff"
    assert host.get("/static/style.css").status == 200
    assert host.run("stat", "-c", "%U:%G %a", "/run/my_app/gunicorn.sock").stdout.split() == ["www-data:root", "600"]
    # Another account in nginx's group (a php-fpm pool, a deploy user) cannot reach gunicorn, which
    # would take it for a trusted proxy.
    if host.run("id", "neighbour", check=False).returncode:
        host.run("useradd", "--system", "--no-create-home", "--groups", "www-data", "neighbour")
    curl = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", "/run/my_app/gunicorn.sock"]
    curl.append("http://example.com/healthz")

    def as_account(name: str) -> subprocess.CompletedProcess[str]:
        return host.run("setpriv", f"--reuid={name}", f"--regid={name}", "--init-groups", *curl, check=False)

    assert as_account("www-data").stdout == "200"
    refused = as_account("neighbour")
    # curl's exit 7: it could not connect (the words differ between curl releases).
    assert (refused.returncode, refused.stdout) == (7, "000"), refused
    assert "www-data" in host.run("ps", "-o", "user=", "-C", "nginx").stdout.split()
    assert {user for user, _ in processes(host, "my_app.service")} == {"my_app"}


def processes(host: Host, unit: str) -> list[tuple[str, int]]:
    """(user, RSS in KiB) of every process of a systemd unit."""
    found = []
    for line in host.run("ps", "-e", "-o", "unit:80=,user:32=,rss=").stdout.splitlines():
        name, user, rss = line.split()
        if name == unit:
            found.append((user, int(rss)))
    assert found, f"{unit} has no processes"
    return found


def test_stopped_service_is_started_by_the_next_request(installed: Installed) -> None:
    host = installed.host
    host.run("systemctl", "stop", "my_app.service")
    assert not host.is_active("my_app.service")
    assert host.is_active("my_app.socket"), "stopping the service closed its socket"
    assert host.get("/").status == 200
    assert host.is_active("my_app.service")


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: evil.com\r\nConnection: close\r\n\r\n", id="unknown-host"),
        pytest.param(b"GET / HTTP/1.0\r\n\r\n", id="no-host"),
        pytest.param(b"GET / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n", id="ip-address-host"),
    ],
)
def test_requests_for_other_hosts_are_closed_without_an_answer(installed: Installed, request_bytes: bytes) -> None:
    host = installed.host
    assert installed.default_site_before, "the server should start with Debian's default site"
    answer = raw(host.address, request_bytes.replace(b"{address}", host.address.encode()))
    assert answer == b"", answer[:200]
    assert host.get("/").status == 200


def test_nginx_configuration_passes_without_warnings(installed: Installed) -> None:
    result = installed.host.run("nginx", "-t", check=False)
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr, result.stderr


def test_redeploy_of_new_code_under_load_fails_no_request(installed: Installed) -> None:
    host, checkout = installed.host, installed.checkout
    before = page(host)
    marker = f"release {time.monotonic_ns()}"
    checkout.edit(APP, HOME_TEXT, f"{HOME_TEXT} {marker}")
    with load(host.address, seconds=90, max_requests=20000) as seen:
        started = time.monotonic()
        output = checkout.installed()
        seconds = time.monotonic() - started
        time.sleep(0.5)  # a little load on the new workers too
    print(f"{installed.host.release}: redeploy {seconds:.1f}s under load: {seen}")
    assert seen.failed == 0, f"{seen}\n{output}"
    assert "reload my_app.service" in output
    assert marker in page(host) and marker not in before


def test_release_whose_health_check_fails_is_rolled_back_under_load(installed: Installed) -> None:
    host, checkout = installed.host, installed.checkout
    before = page(host)
    app = checkout.edit(APP, HEALTHZ_OK, HEALTHZ_FAILING)
    checkout.put_back(APP, app.replace(HEALTHZ_OK, HEALTHZ_FAILING).replace(HOME_TEXT, f"{HOME_TEXT} broken"))
    running = current(host)
    try:
        with load(host.address, seconds=150, max_requests=30000, marker=f"{HOME_TEXT} broken") as seen:
            result = checkout.install(timeout=240)
    finally:
        checkout.put_back(APP, app)
    output = result.stdout + result.stderr
    print(f"{installed.host.release}: failed release under load: {seen}, {seen.marked} answered by it")
    assert result.returncode == 1, output
    # Caught on its own socket, before the switch: no user request ever reached it.
    failed = re.search(r"^activate: FAILED: the new release's /healthz: status 500 for \d+s$", output, re.MULTILINE)
    assert failed, output
    assert seen.marked == 0, seen
    assert seen.failed == 0, seen
    assert page(host) == before and current(host) == running
    assert host.get("/healthz").status == 200
    # Marked in the log: --releases says why, and a plain rollback passes it by.
    listed = releases(checkout)
    assert listed[running] == "current"
    [(bad_release, bad)] = [(release, state) for release, state in listed.items() if state.startswith("failed: ")]
    assert "activate: the new release's /healthz: status 500" in bad
    # And in the journal, as an error of the deploy, with the release's id as a field.
    said = host.run("journalctl", "-p", "err", "-t", "my_app-deploy", f"RELEASE={bad_release}", "-o", "cat").stdout
    assert f"my_app: release {bad_release} failed at activate: " in said, said


# The app's routes, and the same with "/" failing: always, or for one request in five at random.
ROUTES = 'ROUTES = {"/": home,'
BROKEN_HOME = """def broken_home(environ: dict) -> tuple[str, str, bytes]:
    return "500 Internal Server Error", "text/plain; charset=utf-8", b"broken\\n"


ROUTES = {"/": broken_home,"""
FLAKY_HOME = """def flaky_home(environ: dict) -> tuple[str, str, bytes]:
    import random

    if random.random() < 0.2:
        return "500 Internal Server Error", "text/plain; charset=utf-8", b"broken\\n"
    return home(environ)  # {marker}


ROUTES = {{"/": flaky_home,"""


def test_release_that_fails_its_users_is_rolled_back_by_the_watch(installed: Installed) -> None:
    """/healthz answers, "/" fails for everyone: the watch sees it in the access log within seconds
    of the switch and goes back at once, long before its window ends."""
    host, checkout = installed.host, installed.checkout
    running, before = current(host), page(host)
    app = checkout.edit(APP, ROUTES, BROKEN_HOME)
    try:
        with load(host.address, seconds=120, max_requests=30000) as seen:
            time.sleep(2)  # the running release's answers, for the watch to compare with
            started = time.monotonic()
            result = checkout.install("--watch", "60", timeout=240)
            took = time.monotonic() - started
            time.sleep(0.5)
    finally:
        checkout.put_back(APP, app)
    output = result.stdout + result.stderr
    print(f"{host.release}: a release failing on / was watched and rolled back in {took:.1f}s; under load: {seen}")
    print(f"{host.release}: answers that failed before the rollback: {seen.statuses[500]}")
    assert result.returncode == 1, output
    said = re.search(r"^install: failed at watch: 5xx (\S+)% of (\d+) answer\(s\) in (\S+)s", output, re.MULTILINE)
    assert said, output
    assert float(said[1]) > 90 and float(said[3]) < 60, output
    assert page(host) == before and current(host) == running
    assert set(seen.statuses) <= {200, 500} and not seen.errors, seen
    assert "failed: watch: " in releases(checkout)[next(iter(releases(checkout)))]


@pytest.mark.one_release("trixie")
def test_release_as_good_as_the_one_before_is_kept_by_the_watch(installed: Installed) -> None:
    """One answer in five fails in the running release and in the new one alike: the new one stays."""
    host, checkout = installed.host, installed.checkout
    first, second = FLAKY_HOME.format(marker="first"), FLAKY_HOME.format(marker="second")
    app = checkout.edit(APP, ROUTES, first)
    try:
        with load(host.address, seconds=150, max_requests=40000) as seen:
            checkout.installed("--watch", "0")
            flaky = current(host)
            time.sleep(5)  # the flaky release's own answers: what the next one is compared with
            checkout.put_back(APP, app.replace(ROUTES, second))
            output = checkout.installed("--watch", "10")
    finally:
        checkout.put_back(APP, app)
    print(f"{host.release}: a release as flaky as the one before, watched: {output.splitlines()[-3:]}; {seen}")
    said = re.search(r"^watch: 5xx (\S+)% of (\d+) answer\(s\) in \S+s \(the previous release: (\S+)% of", output, re.M)
    assert said, output
    assert 10 < float(said[1]) < 30 and 10 < float(said[3]) < 30 and int(said[2]) >= 100, output
    assert re.search(r"^watch: .*, kept$", output, re.MULTILINE), output
    assert current(host) not in (flaky, "") and seen.statuses[500] > 0
    checkout.installed("--watch", "0")
    assert HOME_TEXT in page(host)


@pytest.mark.one_release("trixie")
def test_status_counts_what_the_site_answered_under_load(installed: Installed) -> None:
    """deploy/status on the server, after the paced load and a load of 404s: the last minute's
    counts are those the clients got, and the release, units and deploys are the server's."""
    host = installed.host
    time.sleep(1.5)  # nginx's buffered lines of earlier tests are written by now
    host.run("truncate", "-s", "0", ACCESS_LOG)  # nginx appends: the file may be emptied under it
    with (
        load(host.address, seconds=30, max_requests=1200) as found,
        load(host.address, path="/no-such-page", seconds=30, max_requests=300) as missing,
    ):
        time.sleep(6)
    sent = found.sent + missing.sent

    def minute() -> dict:
        said = host.run("/srv/my_app/current/deploy/status", "--json", cwd="/")
        return json.loads(said.stdout)

    deadline = time.monotonic() + 10
    while (facts := minute())["traffic"]["60"]["requests"] < sent and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"{host.release}: deploy/status after {found} and {missing}: {facts['traffic']['60']}")
    last = facts["traffic"]["60"]
    assert last["requests"] == sent
    assert last["classes"] == {"2xx": found.statuses[200], "4xx": missing.statuses[404]}
    assert found.failed == 0 and missing.statuses[404] == missing.sent
    assert last["share_5xx"] == 0 and last["p50"] is not None and last["p99"] >= last["p50"]
    assert facts["release"] == current(host) and facts["role"] == "server"
    service = next(unit for unit in facts["units"] if unit["unit"] == "my_app.service")
    assert service["active"] == "active" and service["workers"] >= 1, service
    assert facts["deploys"][0]["release"] == current(host) and facts["deploys"][0]["outcome"] == "ok", facts
    text = host.run("/srv/my_app/current/deploy/status", cwd="/").stdout
    assert f"release: {current(host)}" in text and "my_app.service: active (running)" in text, text


SLOW_ROUTE = """def slow(environ: dict) -> tuple[str, str, bytes]:
    import time

    time.sleep(int(environ["QUERY_STRING"].removeprefix("ms=")) / 1000)
    return "200 OK", "text/plain; charset=utf-8", b"slept\\n"


ROUTES = {"/slow": slow, "/": home,"""


@pytest.mark.one_release("bookworm")
def test_status_percentiles_are_those_of_the_times_the_app_took(installed: Installed) -> None:
    """A page that sleeps as long as it is asked (a release with it), asked 100 times with known
    times, fewer at once than gunicorn has workers: deploy/status's percentiles are those times."""
    host, checkout = installed.host, installed.checkout
    app = checkout.edit(APP, ROUTES, SLOW_ROUTE)
    try:
        checkout.installed()
        time.sleep(1.5)
        host.run("truncate", "-s", "0", ACCESS_LOG)
        asked = [100] * 60 + [200] * 37 + [500] * 3
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda ms: http_get(host.address, f"/slow?ms={ms}").status, asked))
        assert statuses == [200] * 100

        def minute() -> dict:
            return json.loads(host.run("/srv/my_app/current/deploy/status", "--json", cwd="/").stdout)["traffic"]["60"]

        deadline = time.monotonic() + 10
        while (last := minute())["requests"] < 100 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        checkout.put_back(APP, app)
        checkout.installed()
    print(f"{host.release}: deploy/status of 100 requests of known times: {last}")
    assert last["requests"] == 100
    # Nearest rank: the 50th answer is a 0.1 s one, the 95th 0.2 s, the 99th 0.5 s.
    for key, expected in (("p50", 0.1), ("p95", 0.2), ("p99", 0.5)):
        assert last[key] == pytest.approx(expected, rel=0.1), key
        assert last[f"upstream_{key}"] == pytest.approx(expected, rel=0.1), key


def test_maintenance_under_load_answers_503_with_the_page_and_fails_nothing_else(installed: Installed) -> None:
    """deploy/maintenance on, then off, under the paced load: every answer is a 200 or, while it
    is on, the maintenance page's 503; /healthz answers meanwhile, deploy/status says so."""
    host = installed.host
    command = "/srv/my_app/current/deploy/maintenance"
    with load(host.address, seconds=60, max_requests=20000) as seen:
        time.sleep(1)
        on = host.run(command, "on", "--reason", "a test", cwd="/")
        time.sleep(2)
        during, health = host.get("/"), host.get("/healthz")
        said = host.run("/srv/my_app/current/deploy/status", cwd="/").stdout
        off = host.run(command, "off", cwd="/")
        time.sleep(1)
    print(f"{host.release}: maintenance on for 2 s, then off, under load: {seen}")
    assert "nginx answers status 503" in on.stdout, on.stdout
    assert during.status == 503 and "is down for maintenance" in during.text
    assert during.headers["retry-after"] == "120"
    assert health.status == 200
    assert set(seen.statuses) == {200, 503} and not seen.errors, seen
    assert seen.statuses[503] > 100, seen
    assert re.search(r"^maintenance: ON since .*: a test", said, re.MULTILINE), said
    assert "nginx answers status 200" in off.stdout, off.stdout
    assert host.run(command, cwd="/").stdout.strip() == "maintenance: off"
    assert page(host)


def current(host: Host) -> str:
    """The release the server's current link names."""
    return host.run("readlink", "/srv/my_app/current").stdout.strip().removeprefix("releases/")


def releases(checkout: Checkout) -> dict[str, str]:
    """deploy/install --releases as release id -> state, newest first."""
    lines = checkout.installed("--releases").splitlines()
    assert lines[0].split() == ["release", "deployed", "venv", "git", "state"], lines
    return {line.split()[0]: line.split(None, 6)[6] for line in lines[1:]}


def test_rollback_goes_back_in_seconds_without_any_package_source(
    installed: Installed, server_project, wheel_cache, tmp_path
) -> None:
    """A code release, then a requirements change (a venv of its own: a restart instead of a HUP);
    each rollback moves the link back under load, with no wheelhouse and no index in reach."""
    host, checkout = installed.host, installed.checkout
    first = current(host)
    marker = f"release {time.monotonic_ns()}"
    checkout.edit(APP, HOME_TEXT, f"{HOME_TEXT} {marker}")
    checkout.installed()
    second = current(host)
    with other_requirements(checkout, server_project(host.release).path, wheel_cache):
        with load(host.address, seconds=120, max_requests=30000) as seen:
            output = checkout.installed()
        print(f"{host.release}: deploy of new requirements under load: {seen}")
        assert seen.failed == 0, f"{seen}\n{output}"
        assert "restart my_app.service" in output, output
        third = current(host)
        assert len({first, second, third}) == 3
        venvs = host.run("ls", "/srv/my_app/venvs").stdout.split()
        assert len(venvs) == 2, venvs

        # No package source in reach: no wheelhouse (and, as always here, no index).
        wheels = f"{checkout.path}/wheels"
        host.run("mv", wheels, f"{wheels}.away")
        try:
            for back_to, how in ((second, "restart"), (first, "reload")):
                with load(host.address, seconds=60, max_requests=20000) as seen:
                    started = time.monotonic()
                    output = checkout.installed("--rollback")
                    took = time.monotonic() - started
                print(f"{host.release}: --rollback to {back_to} in {took:.2f}s ({how}) under load: {seen}")
                assert seen.failed == 0, f"{seen}\n{output}"
                assert current(host) == back_to and f"{how} my_app.service" in output, output
                assert took < 5, output
        finally:
            host.run("mv", f"{wheels}.away", wheels)
    assert marker not in page(host)
    listed = releases(checkout)
    assert listed[first] == "current"
    assert listed[second].startswith("rolled back from on ") and listed[third].startswith("rolled back from on ")
    # Each deploy and rollback is in the journal: among the app's own lines, and by its fields.
    among = host.run("journalctl", "-u", "my_app.service", "-o", "cat", "--no-pager").stdout
    assert f"my_app: release {third} deployed (before: {second})" in among, among
    assert f"my_app: release {first} rolled back to (before: {second})" in among, among
    found = host.run("journalctl", f"RELEASE={second}", "DEPLOY_ACTION=rollback", "-o", "json").stdout
    assert json.loads(found.splitlines()[-1])["PREVIOUS_RELEASE"] == third
    # The project as it was before this test is that release again: nothing to build, the link moves.
    checkout.edit(APP, f"{HOME_TEXT} {marker}", HOME_TEXT)
    output = checkout.installed()
    assert current(host) == first and f"release: {first} running" in output, output


@pytest.mark.parametrize("after", ["release", "venv", "validate", "activate"])
def test_installer_killed_after_each_stage_leaves_one_whole_release_and_the_rerun_finishes(
    installed: Installed, after: str
) -> None:
    """kill -9 once the step `after` is reported (the next one under way): the site keeps answering
    with one release, the old or the new, and a plain rerun undoes the run and then deploys. (A run
    that ended before the kill came leaves nothing to undo: the rerun then changes nothing.)"""
    host, checkout = installed.host, installed.checkout
    old_page, old_release = page(host), current(host)
    marker = f"release {time.monotonic_ns()}"
    checkout.edit(APP, HOME_TEXT, f"{HOME_TEXT} {marker}")
    with load(host.address, seconds=120, max_requests=30000) as seen:
        process = subprocess.Popen(
            host.command("deploy/install", *NO_WATCH, cwd=checkout.path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        killed = False
        for line in process.stdout:
            if line.startswith(f"{after}: "):
                journal = host.run("cat", "/var/lib/my_app-install/journal", check=False).stdout.splitlines()
                if journal:
                    killed = host.run("kill", "-KILL", str(json.loads(journal[0])["pid"]), check=False).returncode == 0
                break
        process.wait(timeout=60)
        now = page(host)
        assert now == old_page or f"{HOME_TEXT} {marker}" in now, now
        output = checkout.installed()
        time.sleep(0.5)
    print(f"{host.release}: deploy/install killed after {after} ({killed=}), then run again, under load: {seen}")
    if killed:
        assert re.search(r"^recover: install \(pid \d+, .*\) was interrupted: undone", output, re.MULTILINE), output
    else:
        assert output.splitlines()[-1] == "install: nothing changed", output
    assert f"{HOME_TEXT} {marker}" in page(host) and current(host) != old_release
    assert seen.failed == 0, f"{seen}\n{output}"


def server_files(host: Host) -> str:
    """Every path deploy/install may touch, with its type, mode, size and modification time."""
    folders = ["/srv/my_app", "/etc/my_app", "/etc/nginx", "/etc/systemd/system", "/var/lib/my_app-install"]
    return host.run("find", *folders, "-printf", "%p %y %m %s %T@\\n").stdout


def test_dry_run_on_the_live_server_changes_nothing_and_ends_at_once(installed: Installed) -> None:
    """A redeploy and a rollback, dry: what they would do, exit 0, nothing waited on or changed."""
    host, checkout = installed.host, installed.checkout
    before, running = server_files(host), current(host)
    app = checkout.edit(APP, HOME_TEXT, f"{HOME_TEXT} dry run")
    try:
        for args in (("--dry-run",), ("--dry-run", "--rollback")):
            started = time.monotonic()
            result = checkout.install(*args, timeout=60)
            took = time.monotonic() - started
            print(f"{host.release}: deploy/install {' '.join(args)} on the live server: {took:.1f}s")
            assert result.returncode == 0, result.stdout + result.stderr
            assert took < 5, result.stdout
            assert result.stdout.splitlines()[-1].startswith("install: dry run, nothing changed"), result.stdout
    finally:
        checkout.put_back(APP, app)
    assert server_files(host) == before and current(host) == running


def test_broken_site_fails_and_nginx_keeps_serving_the_previous_one(installed: Installed) -> None:
    host, checkout = installed.host, installed.checkout
    site_before = host.read("/etc/nginx/sites-available/my_app.conf")
    site = checkout.edit(SITE, "    server_tokens off;\n", "    server_tokens off;\n    no_such_directive on;\n")
    try:
        result = checkout.install()
    finally:
        checkout.put_back(SITE, site)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "no_such_directive" in output
    assert host.read("/etc/nginx/sites-available/my_app.conf") == site_before
    assert host.run("nginx", "-t", check=False).returncode == 0
    assert page(host)


def test_site_answers_after_the_server_boots_again(installed: Installed) -> None:
    host = installed.host
    assert installed.host.reboot() in {"running", "degraded"}
    assert "My App" in page(host)
    assert host.is_active("nginx.service")


def test_killed_gunicorn_master_is_replaced_with_few_failed_requests(installed: Installed) -> None:
    host = installed.host
    page(host)
    main_pid = host.run("systemctl", "show", "--property=MainPID", "--value", "my_app.service").stdout.strip()
    assert main_pid != "0"
    with load(host.address, seconds=30, max_requests=20000) as seen:
        time.sleep(1)
        host.run("kill", "-KILL", main_pid)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            now = host.run("systemctl", "show", "--property=MainPID", "--value", "my_app.service").stdout.strip()
            if now not in {"0", main_pid} and host.is_active("my_app.service"):
                break
            time.sleep(0.1)
        back = time.monotonic() - (deadline - 20)
        time.sleep(2)
    print(f"{host.release}: gunicorn master SIGKILLed under load: back after {back:.1f}s; {seen}")
    state = host.run("systemctl", "status", "--no-pager", "--lines=30", "my_app.service", check=False).stdout
    assert host.is_active("my_app.service"), state
    assert back < 15, f"the service was not back within 15s: {seen}"
    assert seen.failed <= 3, seen


# Run inside a server: the memory of every gunicorn process (PSS: shared pages counted once, in
# shares), sampled every 20 ms until the file named by the argument appears; its first and largest.
MEMORY_SAMPLER = """
import json, os, sys, time
first = peak = None
while True:
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"gunicorn" not in open(f"/proc/{pid}/cmdline", "rb").read():
                continue
            total += sum(int(line.split()[1]) for line in open(f"/proc/{pid}/smaps_rollup") if line.startswith("Pss:"))
        except OSError:
            pass
    first = total if first is None else first
    peak = max(peak or 0, total)
    if os.path.exists(sys.argv[1]):
        break
    time.sleep(0.02)
print(json.dumps({"first": first, "peak": peak}))
"""


def test_measurements_of_a_release_switch(installed: Installed, server_project, wheel_cache) -> None:
    """Printed for the record (README, "Releases"): the new release's own health check, the time
    from the switch to every app server answering from it, and gunicorn's memory while two
    releases run, for new code (a reload) and for new requirements (a restart)."""
    host, checkout = installed.host, installed.checkout
    stop = "/tmp/stop-sampling"

    def measured(kind: str) -> None:
        sampler = subprocess.Popen(
            host.command("python3", "-c", MEMORY_SAMPLER, stop), stdout=subprocess.PIPE, text=True
        )
        time.sleep(0.3)
        output = checkout.installed()
        host.run("touch", stop)
        memory = json.loads(sampler.communicate(timeout=30)[0])
        host.run("rm", stop)
        canary = re.search(r"the new release answered /healthz on its own socket in ([\d.]+)s", output)
        switch = re.search(r"every app server answered /healthz from it ([\d.]+)s after the switch", output)
        assert canary and switch, output
        print(
            f"{host.release}: switch to {kind}: own health check {canary[1]}s, switch to every app server"
            f" answering {switch[1]}s; gunicorn memory {memory['first'] / 1024:.1f} MiB, at most"
            f" {memory['peak'] / 1024:.1f} MiB meanwhile"
        )
        assert memory["peak"] < 4 * memory["first"], memory

    app = checkout.edit(APP, HOME_TEXT, f"{HOME_TEXT} measured")
    try:
        measured("new code")
        with other_requirements(checkout, server_project(host.release).path, wheel_cache):
            measured("new requirements")
    finally:
        checkout.put_back(APP, app)
    checkout.installed()


def test_measurements_of_the_live_server(installed: Installed) -> None:
    """Printed for the record; bounds only where a regression would be a bug."""
    host = installed.host
    security = host.run("systemd-analyze", "security", "--no-pager", "my_app.service", check=False).stdout
    exposure = re.search(r"Overall exposure level for my_app.service: ([\d.]+)", security)
    assert exposure, security
    page(host)
    rss = {unit: sum(kib for _, kib in processes(host, unit)) for unit in ("nginx.service", "my_app.service")}
    print(
        f"{host.release}: systemd-analyze security my_app.service: {exposure[1]}; idle RSS nginx"
        f" {rss['nginx.service'] / 1024:.1f} MiB, gunicorn {rss['my_app.service'] / 1024:.1f} MiB;"
        f" first install {installed.seconds:.1f}s"
    )
    assert float(exposure[1]) <= 2.0


# An env file with what trips naive parsers; what systemd passes the service is the reference.
TRICKY_ENV = (
    "PLAIN=1\n"
    "  SPACED = two words  \n"
    "  # INDENTED_COMMENT=1\n"
    "; SEMICOLON_COMMENT=1\n"
    "HASH_AFTER=1 # not a comment\n"
    "NO_EQUALS_LINE\n"
    'DOUBLE="a b"\n'
    "SINGLE='a \"b\" $c'\n"
    'ESCAPES="q\\"d\\$e\\n"\n'
    "APOSTROPHE=it's\n"
    'JOINED="a"b\n'
    "BACKSLASH=a\\ b\\\\c\n"
    "CONTINUED=one \\\ntwo\n"
    "EMPTY=\n"
    "URL=postgres://u:p@h/db?x=1\n"
    "1INVALID=1\n"
    "TWICE=1\nTWICE=2\n"
)


def test_the_service_writes_its_shared_folder_and_nothing_else_of_the_install(installed: Installed) -> None:
    """Seen from inside the service's sandbox, as its user: uploads go to shared/, which outlives
    releases; the releases, the current one included, are read-only."""
    host = installed.host
    pid = host.run("systemctl", "show", "--property=MainPID", "--value", "my_app.service").stdout.strip()
    uid = host.run("id", "-u", "my_app").stdout.strip()
    inside = ["nsenter", f"--target={pid}", "--mount", f"--setuid={uid}", f"--setgid={uid}"]
    assert host.run(*inside, "touch", "/srv/my_app/shared/upload", check=False).returncode == 0
    assert host.exists("/srv/my_app/shared/upload")
    refused = host.run(*inside, "touch", "/srv/my_app/current/upload", check=False)
    # Root's and 0750 already; and the unit's ProtectSystem=strict mounts it read-only besides.
    assert refused.returncode != 0, refused.stderr
    environment = host.run("systemctl", "show", "--property=Environment", "my_app.service").stdout
    assert "SHARED_DIRECTORY=/srv/my_app/shared" in environment
    # A deploy keeps it.
    checkout = installed.checkout
    app = checkout.edit(APP, HOME_TEXT, f"{HOME_TEXT} shared")
    checkout.installed()
    checkout.put_back(APP, app)
    assert host.exists("/srv/my_app/shared/upload")
    host.run("rm", "/srv/my_app/shared/upload")


def test_the_env_file_reads_as_systemd_gives_it_to_the_service(installed: Installed) -> None:
    host = installed.host
    host.write("/tmp/tricky.env", TRICKY_ENV)
    given = host.run(
        "systemd-run", "--wait", "--pipe", "--quiet", "--property=EnvironmentFile=/tmp/tricky.env", "/usr/bin/env", "-0"
    ).stdout
    by_systemd = dict(entry.split("=", 1) for entry in given.split("\0") if "=" in entry)
    ours = host.run(
        "python3",
        "-c",
        "import importlib.util, json, pathlib; "
        "spec = importlib.util.spec_from_file_location("
        "'envfile', '/srv/my_app/current/deploy/deploytools/envfile.py'); "
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
        "print(json.dumps(module.read_env_file(pathlib.Path('/tmp/tricky.env'))))",
    ).stdout
    parsed = json.loads(ours)
    assert parsed == {name: by_systemd[name] for name in parsed}
    assert set(parsed) == {name for name in by_systemd if name in TRICKY_ENV}


def test_an_unknown_platform_is_refused_before_any_change(installed: Installed) -> None:
    """A server that is none of the template's platforms (os-release says so) gets no change at all."""
    host, checkout = installed.host, installed.checkout
    manifest = host.read("/var/lib/my_app-install/manifest.json")
    before = host.read("/usr/lib/os-release")
    host.write("/usr/lib/os-release", re.sub(r"(?m)^ID=.*$", "ID=slackware", before))
    try:
        checkout.edit(APP, HOME_TEXT, f"{HOME_TEXT} unknown platform")
        result = checkout.install()
    finally:
        host.write("/usr/lib/os-release", before)
        checkout.edit(APP, f"{HOME_TEXT} unknown platform", HOME_TEXT)
    assert result.returncode == 1, result.stdout
    assert "preflight: FAILED" in result.stdout and "unknown platform slackware-" in result.stdout, result.stdout
    assert result.stdout.strip().splitlines()[-1] == "install: nothing changed", result.stdout
    assert host.read("/var/lib/my_app-install/manifest.json") == manifest
    assert "unknown platform" not in host.get("/").text
