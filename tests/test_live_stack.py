"""The generated stack, running for real under deploy/run-local: nginx in front of gunicorn.

Every request goes to 127.0.0.1; every load and fault loop is bounded in count and time.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import signal
import socket
import ssl
import stat
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from conftest import Baked, bake_or_fail, require_tool
from helpers import (
    DOMAIN,
    LOOPBACK,
    LiveStack,
    free_port,
    load,
    process_gone,
    request,
    slow_clients,
    start_stack,
    timed_get,
    unverified_tls,
)

PROBE_APP = Path(__file__).with_name("probe_app.py")


@pytest.fixture
def stack(baked: Baked, app_venv: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveStack]:
    """The default project under run-local, with gunicorn's own access log on (GUNICORN_ACCESSLOG=-)
    so that the tests can see which requests reached gunicorn."""
    require_tool("nginx", "apt-get install nginx")
    monkeypatch.setenv("GUNICORN_ACCESSLOG", "-")
    with start_stack(baked.path, app_venv) as live:
        yield live


def with_probe(project: Path) -> Path:
    """The baked project with tests/probe_app.py in front of its own app (wsgi.py), nothing else changed."""
    shutil.copy(PROBE_APP, project / "probe_app.py")
    wsgi = project / "wsgi.py"
    wrapped = "\nfrom probe_app import wrap  # noqa: E402\n\napplication = wrap(application)\n"
    wsgi.write_text(wsgi.read_text() + wrapped)
    return project


@contextmanager
def probed_stack(
    cookies_session, app_venv: Path, edits: dict[str, tuple[str, str]] | None = None, **answers: str
) -> Iterator[LiveStack]:
    """The project baked with `answers` and the probe app; `edits`: file -> (old, new), as a user edits."""
    require_tool("nginx", "apt-get install nginx")
    project = with_probe(bake_or_fail(cookies_session, **answers).path)
    for name, (old, new) in (edits or {}).items():
        text = (project / name).read_text()
        assert old in text, f"{old!r} not in {name}"
        (project / name).write_text(text.replace(old, new))
    with start_stack(project, app_venv) as live:
        yield live


@pytest.fixture(scope="module")
def probed(cookies_session, app_venv: Path) -> Iterator[LiveStack]:
    """The default project, as generated (gunicorn's access log off), with the probe app."""
    with probed_stack(cookies_session, app_venv) as live:
        yield live


@pytest.fixture(scope="module")
def cached(cookies_session, app_venv: Path) -> Iterator[LiveStack]:
    """The default project baked with cache=on, with the probe app."""
    with probed_stack(cookies_session, app_venv, cache="on") as live:
        yield live


def gunicorn_lines(stack: LiveStack, needle: str) -> list[str]:
    return [line for line in stack.gunicorn_log().splitlines() if needle in line]


def test_home_page_and_health_check_come_back_through_nginx(stack: LiveStack) -> None:
    home = stack.get("/")
    assert home.status == 200
    assert home.headers["server"] == "nginx"  # server_tokens off: no version
    assert "<h1>My App</h1>" in home.text
    assert stack.get("/healthz").body == b"ok\n"
    assert gunicorn_lines(stack, '"GET /healthz HTTP/1.1" 200')  # it did reach gunicorn


def test_security_headers_are_on_every_answer(stack: LiveStack) -> None:
    for path in ("/", "/static/style.css", "/no-such-page"):
        answer = stack.get(path)
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["x-frame-options"] == "SAMEORIGIN", path
        assert "default-src 'self'" in answer.headers["content-security-policy"], path


def test_static_files_are_served_by_nginx_not_gunicorn(stack: LiveStack) -> None:
    css = stack.get("/static/style.css")
    assert css.status == 200 and css.headers["content-type"] == "text/css"
    assert css.headers["cache-control"] == "max-age=2592000"
    assert css.body == (stack.project / "my_app/static/style.css").read_bytes()
    stack.get("/healthz")  # a request that does reach gunicorn, so its log is written
    stack.wait_for(lambda: gunicorn_lines(stack, "GET /healthz"), what="gunicorn's access log line")
    assert gunicorn_lines(stack, "/static/") == []


def test_the_favicon_comes_from_nginx_and_is_cached(stack: LiveStack) -> None:
    icon = stack.get("/favicon.ico")
    assert (icon.status, icon.headers["content-type"]) == (200, "image/x-icon")
    assert icon.body == (stack.project / "my_app/static/favicon.ico").read_bytes()
    assert icon.headers["cache-control"] == "max-age=2592000"
    assert icon.headers["x-content-type-options"] == "nosniff"
    stack.get("/healthz")
    stack.wait_for(lambda: gunicorn_lines(stack, "GET /healthz"), what="gunicorn's access log line")
    assert gunicorn_lines(stack, "favicon") == []


def test_a_link_in_the_static_folder_is_never_followed(stack: LiveStack, tmp_path: Path) -> None:
    secret = tmp_path / "x.key"
    secret.write_text("-----BEGIN PRIVATE KEY-----\n")
    secret.chmod(0o644)
    tmp_path.chmod(0o755)
    link = stack.project / "my_app/static/leak.txt"
    link.symlink_to(secret)
    try:
        answer = stack.get("/static/leak.txt")
    finally:
        link.unlink()
    assert answer.status == 403 and b"PRIVATE KEY" not in answer.body
    assert stack.get("/static/style.css").status == 200


def test_gunicorns_socket_is_private_to_the_user_running_the_stack(cookies_session, app_venv: Path) -> None:
    """Whoever connects to gunicorn's socket is a trusted proxy: no other user of the machine may."""
    with probed_stack(cookies_session, app_venv, bind="unix") as live:
        sockets = Path(live.state["prefix"]) / "sockets"
        assert stat.S_IMODE(sockets.stat().st_mode) == 0o700
        (socket_path,) = sockets.glob("*.sock")
        if os.geteuid() != 0:
            return
        connect = f"import socket; socket.socket(socket.AF_UNIX).connect({str(socket_path)!r})"
        as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        # The system's Python: a venv under root's home is not for nobody to run.
        refused = subprocess.run([*as_nobody, "/usr/bin/python3", "-c", connect], capture_output=True, text=True)
        assert refused.returncode == 1 and "PermissionError" in refused.stderr, refused


def test_text_answers_are_gzipped(stack: LiveStack) -> None:
    answer = stack.get("/", headers={"Accept-Encoding": "gzip"})
    assert answer.headers.get("content-encoding") == "gzip"
    assert answer.headers["vary"] == "Accept-Encoding"


def test_app_sees_client_address_and_scheme_through_forwarded_headers(stack: LiveStack) -> None:
    page = stack.get("/").text
    assert f'<dd id="client-addr">{LOOPBACK}</dd>' in page
    assert '<dd id="scheme">http</dd>' in page
    assert f'<dd id="host">{DOMAIN}</dd>' in page
    stack.wait_for(lambda: gunicorn_lines(stack, f'{LOOPBACK} "GET / HTTP'), what="client address in the access log")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
        {"X-Forwarded-Ssl": "on"},
        {"X-Forwarded-Protocol": "https", "Forwarded": "for=203.0.113.9;proto=https"},
    ],
    ids=["forwarded-for-and-proto", "forwarded-ssl", "forwarded-protocol-and-rfc7239"],
)
def test_client_cannot_spoof_its_address_or_scheme(stack: LiveStack, headers: dict[str, str]) -> None:
    answer = stack.get("/", headers=headers)
    assert answer.status == 200  # not gunicorn's 400 for disagreeing scheme headers
    assert f'<dd id="client-addr">{LOOPBACK}</dd>' in answer.text
    assert '<dd id="scheme">http</dd>' in answer.text


def raw_exchange(port: int, data: bytes, seconds: float = 5, *, whole: bool = False) -> bytes:
    """Send `data`, return what comes back up to the end of the answer's headers (`whole`: up to
    the close) or the close."""
    with socket.create_connection((LOOPBACK, port), timeout=seconds) as sock:
        sock.sendall(data)
        received = b""
        while (whole or b"\r\n\r\n" not in received) and (chunk := sock.recv(65536)):
            received += chunk
        return received


def test_body_over_the_limit_gets_413_from_nginx(stack: LiveStack) -> None:
    # The declared length alone is enough for nginx to refuse; no 11 MB need to be sent.
    head = f"POST / HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Length: {11 * 1024 * 1024}\r\nConnection: close\r\n\r\n"
    answer = raw_exchange(stack.port, head.encode())
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert gunicorn_lines(stack, '"POST /') == []
    small = stack.get("/", method="POST", body=b"x" * 1024)
    assert small.status == 405  # under the limit: the app itself answers


@pytest.mark.parametrize(
    "path",
    ["/static/../wsgi.py", "/static/..%2fwsgi.py", "/static/%2e%2e/%2e%2e/wsgi.py", "/static..%2f..%2fwsgi.py",
     "/static/..%252fwsgi.py", "/static//etc/passwd", "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc/passwd"],
)  # fmt: skip
def test_no_path_leaves_the_static_folder(stack: LiveStack, path: str) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n"
    answer = raw_exchange(stack.port, request.encode(), whole=True)
    assert b"application = " not in answer and b"root:x:0:0" not in answer, answer[:200]


@pytest.mark.parametrize("path", ["/.env", "/.git/config", "/static/.htpasswd", "/my_app/.hidden"])
def test_dotfiles_are_denied(stack: LiveStack, path: str) -> None:
    assert stack.get(path).status == 403


def test_well_known_stays_reachable(stack: LiveStack) -> None:
    # Not denied by the dotfile rule: the request reaches the app, which has no such page.
    assert stack.get("/.well-known/security.txt").status == 404


@pytest.mark.parametrize(
    "head",
    [
        "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: 203.0.113.9\r\nConnection: close\r\n\r\n",
    ],
    ids=["other-host", "no-host", "bare-ip"],
)
def test_a_forged_host_never_reaches_the_app(stack: LiveStack, head: str) -> None:
    assert raw_exchange(stack.port, head.encode()) == b""  # 444: closed without an answer
    assert gunicorn_lines(stack, '"GET / ') == []


def test_http11_keep_alive_from_the_client_works(stack: LiveStack) -> None:
    connection = http.client.HTTPConnection(LOOPBACK, stack.port, timeout=5)
    try:
        sockets = []
        for _ in range(5):
            connection.request("GET", "/healthz", headers={"Host": DOMAIN})
            answer = connection.getresponse()
            assert answer.read() == b"ok\n"
            assert not answer.will_close
            sockets.append(connection.sock)
        assert len(set(map(id, sockets))) == 1  # five answers on one connection
    finally:
        connection.close()


def test_gunicorn_down_shows_the_error_page_from_nginx(stack: LiveStack) -> None:
    master = stack.state["gunicorn_pids"][0]
    os.kill(master, signal.SIGTERM)
    stack.wait_for(lambda: process_gone(master), what="gunicorn stopped")
    answer = stack.get("/")
    assert answer.status == 502
    assert "My App is briefly unavailable" in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["x-content-type-options"] == "nosniff"  # security headers kept


def test_reload_under_load_loses_no_request(stack: LiveStack) -> None:
    before = stack.all_workers()
    with load(stack.port, seconds=3, max_requests=6000, concurrency=4) as result:
        time.sleep(1)
        result.mark_event()
        os.kill(stack.state["gunicorn_pids"][0], signal.SIGHUP)
    print(f"HUP under load: {result.sent} sent ({result.sent_after_event} after the HUP), {result.failed} failed")
    assert result.sent_at_event >= 100 and result.sent_after_event >= 100
    assert result.failed == 0, (result.statuses, result.errors)
    stack.wait_for(lambda: stack.gunicorn_workers().isdisjoint(before), what="all workers replaced")
    assert gunicorn_lines(stack, "Hang up: Master")


def test_killed_worker_is_replaced_and_requests_keep_succeeding(stack: LiveStack) -> None:
    workers = stack.all_workers()
    victim = min(workers)
    with load(stack.port, seconds=3, max_requests=6000, concurrency=4) as result:
        time.sleep(1)
        result.mark_event()
        os.kill(victim, signal.SIGKILL)
    print(f"worker SIGKILL under load: {result.sent} sent ({result.sent_after_event} after), {result.failed} failed")
    stack.wait_for(
        lambda: len(now := stack.gunicorn_workers()) == len(workers) and victim not in now,
        what="the killed worker replaced",
    )
    assert result.sent_at_event >= 100 and result.sent_after_event >= 100
    assert result.failed <= 1, (result.statuses, result.errors)  # at most the request it was serving
    assert all(request(stack.port, "/healthz").status == 200 for _ in range(20))


def test_slow_clients_do_not_stall_normal_requests(stack: LiveStack) -> None:
    idle = [timed_get(stack.port)[1] for _ in range(10)]
    with slow_clients(stack.port, count=50, seconds=6):
        time.sleep(0.5)  # let every slow connection start its trickle
        busy = [timed_get(stack.port) for _ in range(20)]
    statuses = {status for status, _ in busy}
    busy_median = statistics.median(seconds for _, seconds in busy)
    idle_median = statistics.median(idle)
    print(f"slow clients: idle median {idle_median * 1000:.1f} ms, with 50 slow ones {busy_median * 1000:.1f} ms")
    assert statuses == {200}
    # Sync workers exposed directly would all be stuck reading the slow headers; nginx buffers them.
    assert max(seconds for _, seconds in busy) < 1.0


PER_CLIENT_CONNECTIONS = 128


def test_one_address_cannot_hold_every_connection_with_slow_bodies(stack: LiveStack) -> None:
    """Past 128 connections at once from one address nginx answers 429 at once; other addresses,
    and a browser's burst from one, are served meanwhile."""
    extra = 12
    head = f"POST / HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Length: 100000\r\n\r\nx".encode()
    held = []
    try:
        for _ in range(PER_CLIENT_CONNECTIONS + extra):
            sock = socket.create_connection((LOOPBACK, stack.port), timeout=5, source_address=("127.0.0.2", 0))
            held.append(sock)
            sock.sendall(head)  # then the body never comes
        deadline = time.monotonic() + 5
        refused: set[socket.socket] = set()
        while len(refused) < extra and time.monotonic() < deadline:
            readable, _, _ = select.select([sock for sock in held if sock not in refused], [], [], 0.2)
            for sock in readable:
                assert sock.recv(64).startswith(b"HTTP/1.1 429 "), "an answer other than 429"
                refused.add(sock)
        time.sleep(0.3)  # any further refusal would have come by now
        readable, _, _ = select.select([sock for sock in held if sock not in refused], [], [], 0)
        assert (len(refused), readable) == (extra, []), f"{len(refused)} refused; {len(readable)} more answered"
        # Another address is served; so is a browser's burst of 8 connections at once from a third.
        assert request(stack.port, "/healthz").status == 200
        burst = []
        for _ in range(8):
            burst.append(socket.create_connection((LOOPBACK, stack.port), timeout=5, source_address=("127.0.0.3", 0)))
        for sock in burst:
            sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
        answers = [sock.recv(64) for sock in burst]
        for sock in burst:
            sock.close()
        assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers), answers
    finally:
        for sock in held:
            sock.close()


def test_stop_keeps_the_logs_it_advertised(baked: Baked, app_venv: Path) -> None:
    require_tool("nginx", "apt-get install nginx")
    with start_stack(baked.path, app_venv) as stack:
        assert stack.get("/").status == 200
        stopped = subprocess.run(
            [str(baked.path / "deploy" / "run-local"), "--stop"], capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        logs = Path(stack.state["nginx_access_log"]).parent
        assert f"logs kept in {logs}/" in stopped.stdout
        assert "GET / HTTP/1.1" in Path(stack.state["nginx_access_log"]).read_text()
        assert Path(stack.state["gunicorn_log"]).read_text()
        # Only the logs are left of the scratch folder.
        assert [entry.name for entry in Path(stack.state["prefix"]).iterdir()] == ["logs"]


# Headers a client forges --------------------------------------------------------------------------

FORGED = {
    "X-Real-IP": "203.0.113.9",
    "X-Forwarded-Port": "4444",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Prefix": "/evil",
    "X-Forwarded-Server": "evil.example",
    "X-Forwarded-Scheme": "https",
    "X-Scheme": "https",
    "X-Host": "evil.example",
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
    "X-Original-Host": "evil.example",
    # httpoxy: HTTP_PROXY in the app's environment, which some HTTP clients take for their proxy.
    "Proxy": "http://evil.example:3128",
}


def echo(stack: LiveStack, headers: dict[str, str] | None = None) -> dict:
    answer = stack.get("/probe/echo", headers=headers)
    assert answer.status == 200, answer.text
    return json.loads(answer.body)


def test_forged_proxy_headers_are_replaced_or_removed_before_the_app(probed: LiveStack) -> None:
    seen = echo(probed, FORGED)["headers"]
    # Set from what nginx itself knows.
    assert seen["x-real-ip"] == LOOPBACK
    assert seen["x-forwarded-port"] == str(probed.port)
    assert seen["x-forwarded-host"] == DOMAIN
    # Nothing nginx could vouch for: removed.
    removed = {name.lower() for name in FORGED} - {"x-real-ip", "x-forwarded-port", "x-forwarded-host"}
    assert removed.isdisjoint(seen), {name: seen[name] for name in removed & seen.keys()}


# No version anywhere ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GARBAGE\r\n\r\n",
        "GET /.env HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    ],
    ids=["http11-without-host", "garbage-request-line", "403-from-the-site"],
)
def test_error_answers_from_nginx_name_no_version(probed: LiveStack, head: str) -> None:
    answer = raw_exchange(probed.port, head.encode(), whole=True)
    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 403 ")), answer[:200]
    assert b"\r\nServer: nginx\r\n" in answer
    assert b"nginx/" not in answer


@pytest.fixture(scope="module")
def tls_stack(cookies_session, app_venv: Path) -> Iterator[LiveStack]:
    with probed_stack(cookies_session, app_venv, tls_mode="existing") as live:
        yield live


def https_raw(port: int, head: str) -> bytes:
    """`head` over TLS with the site's own name as SNI, whatever Host it carries; the whole answer."""
    context = unverified_tls()
    with (
        socket.create_connection((LOOPBACK, port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname=DOMAIN) as tls,
    ):
        tls.sendall(head.encode())
        answer = b""
        with suppress(ssl.SSLError, ConnectionResetError):
            while chunk := tls.recv(65536):
                answer += chunk
        return answer


def test_https_with_another_host_gets_no_version(tls_stack: LiveStack) -> None:
    head = "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    answer = https_raw(tls_stack.state["https_port"], head)
    assert b"nginx/" not in answer
    assert b"probe" not in answer and b"My App" not in answer  # never the app


def test_run_local_takes_both_ports_and_names_the_https_address_first(bake, app_venv: Path) -> None:
    require_tool("nginx", "apt-get install nginx")
    require_tool("openssl", "apt-get install openssl")
    project = bake(tls_mode="existing")
    https_port = free_port()
    with start_stack(project.path, app_venv, "--https-port", str(https_port)) as live:
        # The line a user reads: the address that serves the site, not the one that only redirects.
        assert live.output[-1] == f"ready: https://localhost:{https_port}/ (nginx -> gunicorn)", live.output
        assert live.state["https_port"] == https_port and live.state["url"] == f"https://localhost:{https_port}/"
        context = unverified_tls()
        with (
            socket.create_connection((LOOPBACK, https_port), timeout=5) as sock,
            context.wrap_socket(sock, server_hostname="localhost") as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 200 ")
    said = live.process.stdout.read().splitlines()
    assert f"also: https://{DOMAIN}:{https_port}/ where {DOMAIN} points to 127.0.0.1 (e.g. in /etc/hosts)" in said
    assert f"http: http://localhost:{live.port}/ redirects to HTTPS (a throwaway self-signed certificate)" in said


@pytest.mark.parametrize(
    "answers, arguments, message",
    [
        ({}, ["--https-port", "18443"], "--https-port 18443: this site serves no HTTPS (tls_mode is none)"),
        ({"tls_mode": "existing"}, ["--port", "18080", "--https-port", "18080"], "--port and --https-port are both"),
        ({"tls_mode": "existing"}, ["--https-port", "443"], "--https-port 443: not a port from 1024 to 65535"),
    ],
    ids=["https-port-without-https", "same-port-twice", "privileged-port"],
)
def test_run_local_refuses_ports_it_cannot_use(bake, answers: dict, arguments: list[str], message: str) -> None:
    require_tool("nginx", "apt-get install nginx")
    project = bake(**answers)
    result = project.run("deploy/run-local", *arguments)
    assert result.returncode == 1 and message in result.stderr, result.stdout + result.stderr
    assert not (project.path / ".run-local.json").exists()


# Timeouts and retries ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_threaded_instances(cookies_session, app_venv: Path) -> Iterator[LiveStack]:
    """Two gthread instances, their timeout edited down to 2 s in both files that hold it, and the
    retry window below it, as the proxy snippet says a shorter read timeout needs."""
    edits = {
        "gunicorn.conf.py": ("timeout = 30\n", "timeout = 2\n"),
        "deploy/nginx/my_app.conf": ("proxy_read_timeout 30s;", "proxy_read_timeout 2s;"),
        "deploy/nginx/snippets/proxy.conf": ("proxy_next_upstream_timeout 5s;", "proxy_next_upstream_timeout 1s;"),
    }
    with probed_stack(cookies_session, app_venv, edits, worker_class="gthread", instances="2") as live:
        yield live


def slow_starts(stack: LiveStack) -> list[str]:
    return [line for line in stack.gunicorn_log().splitlines() if "probe-slow-start" in line]


def test_a_slow_request_ends_at_the_timeout_and_runs_on_one_instance_only(two_threaded_instances: LiveStack) -> None:
    stack = two_threaded_instances
    before = len(slow_starts(stack))
    started = time.monotonic()
    answer = stack.get("/probe/slow?seconds=6")
    took = time.monotonic() - started
    assert answer.status == 504
    # nginx's proxy_read_timeout (= gunicorn's timeout, 2 s) ends it; a threaded worker would not.
    assert took < 4, f"{took:.1f} s"
    time.sleep(1)  # a retry on the other instance would have started by now (no readiness to wait on)
    assert len(slow_starts(stack)) - before == 1, slow_starts(stack)


# The shared cache (cache=on) ---------------------------------------------------------------------


def twice(stack: LiveStack, path: str, headers: dict[str, str] | None = None) -> list:
    answers = [stack.get(path, headers=headers) for _ in range(2)]
    assert [a.status for a in answers] == [200, 200]
    return answers


def test_a_public_page_is_served_from_the_cache(cached: LiveStack) -> None:
    first, second = twice(cached, "/probe/page?cache-control=public,max-age=60&n=public")
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("MISS", "HIT")
    assert first.body == second.body  # made once by the app
    assert second.headers["x-content-type-options"] == "nosniff"  # security headers on cached answers too


def test_the_generated_cached_page_is_cacheable(cached: LiveStack) -> None:
    first, second = twice(cached, "/cached")
    assert first.headers["cache-control"] == "public, max-age=60"
    assert second.headers["x-cache-status"] == "HIT" and first.body == second.body
    # The home page shows the visitor's address: no Cache-Control, never cached.
    assert [answer.headers["x-cache-status"] for answer in twice(cached, "/")] == ["MISS", "MISS"]


@pytest.mark.parametrize(
    "query",
    [
        "cache-control=public,max-age=60&set-cookie=1",
        "cache-control=private,max-age=60",
        "cache-control=no-store",
        "cache-control=public,no-store",
        "cache-control=max-age=60",
        "",
    ],
    ids=["public-with-set-cookie", "private", "no-store", "public-no-store", "max-age-not-public", "no-cache-control"],
)
def test_the_cache_never_stores_a_page_the_app_did_not_mark_public(cached: LiveStack, query: str) -> None:
    first, second = twice(cached, f"/probe/page?{query}&n={query or 'none'}")
    assert second.headers["x-cache-status"] != "HIT"
    assert first.body != second.body  # the app made it twice


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Authorization": "Bearer secret"}, None),
        ({"Cookie": "sessionid=abc"}, None),
        ({"Cookie": "theme=dark; session=xyz"}, None),
        ({"Cookie": "remember_token=alice"}, None),
        ({"Cookie": "jwt=eyJhbGciOi.x.y"}, None),
        ({"Cookie": "auth=alice"}, None),
        ({"Cookie": "csrftoken=abc"}, None),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"x=POISON"),
    ],
    ids=[
        "authorization",
        "django-session",
        "flask-session",
        "remember-token",
        "jwt",
        "auth",
        "csrftoken",
        "get-with-a-body",
    ],
)
def test_requests_with_credentials_or_a_body_never_use_nor_fill_the_cache(
    cached: LiveStack, headers: dict[str, str], body: bytes | None
) -> None:
    name = "-".join(headers.values()).replace(" ", "") + str(len(body or b""))
    path = f"/probe/page?cache-control=public,max-age=60&n={name}"
    answers = [cached.get(path, headers=headers, body=body) for _ in range(2)]
    assert [answer.status for answer in answers] == [200, 200]
    first, second = answers
    assert (first.headers["x-cache-status"], second.headers["x-cache-status"]) == ("BYPASS", "BYPASS")
    assert first.body != second.body
    anonymous = cached.get(path)
    assert anonymous.headers["x-cache-status"] == "MISS"  # the answers to them were not stored
    # and what anonymous visitors filled is not served to them either.
    assert cached.get(path, headers=headers, body=body).headers["x-cache-status"] == "BYPASS"


def test_without_the_cache_answer_nothing_is_cached(probed: LiveStack) -> None:
    first, second = twice(probed, "/probe/page?cache-control=public,max-age=60")
    assert "x-cache-status" not in second.headers
    assert first.body != second.body


# Logs ----------------------------------------------------------------------------------------------


def test_one_access_log_by_default_nginx_with_timings(probed: LiveStack) -> None:
    probed.get("/healthz?log-check")
    log = Path(probed.state["nginx_access_log"])
    # Buffered: written at least once a second.
    probed.wait_for(lambda: "GET /healthz?log-check" in log.read_text(), seconds=5, what="the access log line")
    line = next(line for line in log.read_text().splitlines() if "GET /healthz?log-check" in line)
    assert " rt=0." in line and " urt=0." in line
    assert "/healthz?log-check" not in probed.gunicorn_log()


def test_maintenance_flag_puts_the_page_up_and_keeps_the_health_check(probed: LiveStack) -> None:
    """The flag deploy/maintenance writes (its local path here): 503, the project's page and
    Retry-After for every page, static files too; /healthz still reaches the app; gone, all is back."""
    flag = Path(probed.state["prefix"]) / "maintenance"
    flag.write_text('{"since": "now", "reason": "test"}\n')
    try:
        page, style, health = probed.get("/"), probed.get("/static/style.css"), probed.get("/healthz")
    finally:
        flag.unlink()
    assert page.status == 503 and style.status == 503
    assert "is down for maintenance" in page.text
    assert page.headers["retry-after"] == "120" and page.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert health.status == 200 and health.body == b"ok\n"
    assert probed.get("/").status == 200


def status(project: Path, *args: str) -> str:
    command = [sys.executable, "deploy/status", *args]
    return subprocess.run(command, cwd=project, capture_output=True, text=True, check=True, timeout=30).stdout


def test_status_shows_what_the_site_answered_from_the_access_log(cookies_session, app_venv: Path) -> None:
    """deploy/status on the log of a stack that served requests of known status and duration: the
    counts and shares exact, the percentiles those of the durations within 10%."""
    durations = [0.1] * 60 + [0.2] * 37 + [0.5] * 3
    paths = [f"/probe/slow?seconds={seconds}" for seconds in durations]
    paths += ["/probe/status?code=500"] * 10 + ["/probe/status?code=404"] * 20
    with probed_stack(cookies_session, app_venv) as live:
        log = Path(live.state["nginx_access_log"])
        time.sleep(1.5)  # nginx writes its buffered lines at least once a second
        log.write_bytes(b"")  # only this test's requests (nginx appends, so the file may be emptied)
        # Fewer at once than gunicorn has workers: no request waits for one, so nginx's times are the app's.
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda path: live.get(path).status, paths))
        assert statuses.count(200) == 100 and statuses.count(500) == 10 and statuses.count(404) == 20

        def summary() -> dict:
            return json.loads(status(live.project, "--json", "--log", str(log)))

        live.wait_for(lambda: summary()["traffic"]["300"]["requests"] == len(paths), seconds=5, what="every line")
        facts = summary()
    five = facts["traffic"]["300"]
    assert facts["traffic"]["900"]["requests"] == len(paths)
    assert five["share_5xx"] == pytest.approx(100 * 10 / len(paths))
    assert five["share_gateway"] == 0
    # Nearest rank over 130 answers: the 65th is a 0.1 s one, the 124th 0.2 s, the 129th 0.5 s.
    for key, expected in (("p50", 0.1), ("p95", 0.2), ("p99", 0.5)):
        assert five[key] == pytest.approx(expected, rel=0.1), key
        assert five[f"upstream_{key}"] == pytest.approx(expected, rel=0.1), key
    [server] = facts["servers"]
    assert facts["servers"][server]["requests"] == len(paths)
    text = status(live.project, "--log", str(log))
    assert "last 5 min" in text and f"{len(paths)}" in text and "7.7%" in text


def test_emptying_the_cache_folder_empties_the_cache(cached: LiveStack) -> None:
    """The purge step after a deploy: delete the files, and the next request goes to the app."""
    path = "/probe/page?cache-control=public,max-age=600&n=purge"
    first, second = twice(cached, path)
    assert second.headers["x-cache-status"] == "HIT"
    folder = Path(cached.state["prefix"]) / "tmp" / "my_app-cache"
    entries = [entry for entry in folder.rglob("*") if entry.is_file()]
    assert entries
    for entry in entries:
        entry.unlink()
    third = cached.get(path)
    assert third.headers["x-cache-status"] == "MISS" and third.body != first.body


# Request smuggling -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kept_alive(cookies_session, app_venv: Path) -> Iterator[LiveStack]:
    """gthread workers behind upstream keep-alive (the connections a smuggled request would ride),
    with gunicorn's own access log on: it lists every request gunicorn parsed."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GUNICORN_ACCESSLOG", "-")
        with probed_stack(cookies_session, app_venv, worker_class="gthread") as live:
            yield live


def smuggled(tag: str) -> bytes:
    """The request hidden in a body. nginx may take it for the client's next request (then it
    forwards it as such, and logs it); gunicorn must never find it in what nginx forwarded."""
    return f"GET /probe/echo?smuggled={tag} HTTP/1.1\r\nHost: {DOMAIN}\r\nX: ".encode()


def chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


def smuggling_cases() -> dict[str, bytes]:
    """Each a whole request as sent on one connection; {tag} marks where its smuggled request goes."""
    head = f"POST /probe/echo HTTP/1.1\r\nHost: {DOMAIN}\r\n"
    cases: dict[str, bytes] = {}

    def add(name: str, headers: str, body: bytes, line_end: str = "\r\n") -> None:
        hidden = body.replace(b"{tag}", smuggled(name))
        text = (head + headers).replace("\r\n", line_end) + line_end
        cases[name] = text.encode() + hidden

    # Content-Length and Transfer-Encoding disagree (CL.TE, TE.CL).
    prefix = b"0\r\n\r\n{tag}"
    add("cl-te", f"Content-Length: {len(prefix) + 60}\r\nTransfer-Encoding: chunked\r\n", prefix)
    add("te-cl", "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", chunked(b"{tag}"))
    # Obfuscated Transfer-Encoding that one parser may take for chunked and another not.
    obfuscated = {
        "te-space-before-colon": "Transfer-Encoding : chunked",
        "te-tab": "Transfer-Encoding:\tchunked",
        "te-leading-space": "Transfer-Encoding:  chunked",
        "te-xchunked": "Transfer-Encoding: xchunked",
        "te-chunked-x": "Transfer-Encoding: chunkedx",
        "te-quoted": 'Transfer-Encoding: "chunked"',
        "te-uppercase": "Transfer-Encoding: CHUNKED",
        "te-identity-chunked": "Transfer-Encoding: identity, chunked",
        "te-chunked-identity": "Transfer-Encoding: chunked, identity",
        "te-twice": "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        "te-twice-reversed": "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked",
        "te-vertical-tab": "Transfer-Encoding:\x0bchunked",
        "te-form-feed": "Transfer-Encoding:\x0cchunked",
        "te-folded": "Transfer-Encoding:\r\n chunked",
        "te-underscore": "Transfer_Encoding: chunked",
        "te-null": "Transfer-Encoding: chunked\x00",
        "te-comma-empty": "Transfer-Encoding: chunked,",
        "te-gzip-chunked": "Transfer-Encoding: gzip, chunked",
    }
    for name, header in obfuscated.items():
        add(f"{name}-with-cl", f"Content-Length: {len(prefix) + 60}\r\n{header}\r\n", prefix)
        add(name, f"{header}\r\n", prefix)
    # Two Content-Lengths, or one that parsers read differently.
    body = b"x{tag}"
    add("cl-twice", f"Content-Length: 1\r\nContent-Length: {len(body) + 60}\r\n", body)
    add("cl-comma", f"Content-Length: 1, {len(body) + 60}\r\n", body)
    add("cl-plus", "Content-Length: +1\r\n", body)
    add("cl-negative", "Content-Length: -1\r\n", body)
    add("cl-leading-zeros", "Content-Length: 0001\r\n", body)
    add("cl-hex", "Content-Length: 0x1\r\n", body)
    add("cl-space-inside", "Content-Length: 1 0\r\n", body)
    # Chunk sizes that overflow, or come with junk.
    add("chunk-overflow", "Transfer-Encoding: chunked\r\n", b"10000000000000001\r\nx\r\n0\r\n\r\n{tag}")
    add("chunk-negative", "Transfer-Encoding: chunked\r\n", b"-1\r\nx\r\n0\r\n\r\n{tag}")
    add("chunk-extension-lf", "Transfer-Encoding: chunked\r\n", b"1;x\nx\r\n0\r\n\r\n{tag}")
    add("chunk-bare-lf", "Transfer-Encoding: chunked\r\n", b"1\nx\n0\n\n{tag}")
    add("chunk-size-space", "Transfer-Encoding: chunked\r\n", b"1 \r\nx\r\n0\r\n\r\n{tag}")
    # Bare LF line ends, and HTTP/1.0 with chunked.
    add("bare-lf-headers", f"Content-Length: {len(prefix) + 60}\r\nTransfer-Encoding: chunked\r\n", prefix, "\n")
    cases["http10-chunked"] = (
        f"POST /probe/echo HTTP/1.0\r\nHost: {DOMAIN}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + b"0\r\n\r\n"
        + smuggled("http10-chunked")
    )
    cases["get-with-cl-body"] = (
        f"GET /probe/echo HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Length: 60\r\n\r\n".encode()
        + smuggled("get-with-cl-body")
    )
    return cases


SMUGGLING = smuggling_cases()


@pytest.mark.parametrize("case", list(SMUGGLING))
def test_gunicorn_parses_no_request_that_nginx_did_not_forward(kept_alive: LiveStack, case: str) -> None:
    with socket.create_connection((LOOPBACK, kept_alive.port), timeout=5) as sock:
        sock.sendall(SMUGGLING[case] + b"\r\n\r\n")
        sock.settimeout(2)
        with suppress(OSError):
            while sock.recv(65536):
                pass
    # Requests on the kept-alive upstream connections after it, each answered as itself.
    for _ in range(4):
        assert json.loads(kept_alive.get("/probe/echo").body)["headers"].get("x") is None
    marker = f"/healthz?after={case}"
    kept_alive.get(marker)
    nginx_log = Path(kept_alive.state["nginx_access_log"])
    # Both logs have every line up to the marker by now (nginx's is flushed each second).
    kept_alive.wait_for(lambda: marker in kept_alive.gunicorn_log(), what="gunicorn's access log")
    kept_alive.wait_for(lambda: marker in nginx_log.read_text(), seconds=5, what="nginx's access log")
    needle = f"smuggled={case} "
    assert kept_alive.gunicorn_log().count(needle) <= nginx_log.read_text().count(needle)


def test_the_smuggling_check_sees_a_request_that_did_not_come_through_nginx(kept_alive: LiveStack) -> None:
    """The check above can fail: the same bytes sent to gunicorn's socket directly put a request in
    gunicorn's log that nginx's never had."""
    (path,) = (Path(kept_alive.state["prefix"]) / "sockets").glob("*.sock")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(str(path))
        sock.sendall(SMUGGLING["cl-leading-zeros"].replace(b"cl-leading-zeros", b"direct") + b"\r\n\r\n")
        with suppress(OSError):
            while sock.recv(65536):
                pass
    kept_alive.wait_for(lambda: "smuggled=direct " in kept_alive.gunicorn_log(), what="the direct request")
    assert "smuggled=direct " not in Path(kept_alive.state["nginx_access_log"]).read_text()
