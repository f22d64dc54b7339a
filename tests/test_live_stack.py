"""The generated stack, running for real under deploy/run-local: nginx in front of gunicorn.

Every request goes to 127.0.0.1; every load and fault loop is bounded in count and time.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import pytest
from conftest import Baked, require_tool
from helpers import (
    DOMAIN,
    LOOPBACK,
    LiveStack,
    load,
    process_gone,
    request,
    slow_clients,
    start_stack,
    timed_get,
)


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


def raw_exchange(port: int, data: bytes, seconds: float = 5) -> bytes:
    """Send `data`, return what comes back up to the end of the answer's headers or the close."""
    with socket.create_connection((LOOPBACK, port), timeout=seconds) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received and (chunk := sock.recv(65536)):
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
    assert gunicorn_lines(stack, "reloading")


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
