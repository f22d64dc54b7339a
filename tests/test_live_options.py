"""The options, running for real: each framework, each worker type, TLS, and several instances,
under deploy/run-local with real nginx and gunicorn on 127.0.0.1."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_tool
from helpers import DOMAIN, LOOPBACK, LiveStack, Response, load, request, start_stack, unverified_tls

VARIANTS = {
    "flask-gthread-tls": {"framework": "flask", "worker_class": "gthread", "tls_mode": "existing"},
    "django-gevent-tcp": {"framework": "django", "worker_class": "gevent", "bind": "tcp"},
    "asgi-3-instances": {"framework": "asgi", "instances": "3"},
    "existing-sync": {"framework": "existing", "existing_app": "shop.wsgi:application"},
}

# For framework=existing: the user's own app, copied into the baked folder.
SHOP_APP = """def application(environ, start_response):
    body = b"ok\\n" if environ["PATH_INFO"] == "/healthz" else b"<h1>My App</h1> the shop"
    start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.fixture(scope="module")
def variants(cookies_session, framework_venv: Path) -> Iterator[dict[str, LiveStack]]:
    """Every variant baked and running at once, shared by this module's tests."""
    require_tool("nginx", "apt-get install nginx")
    require_tool("openssl", "apt-get install openssl")
    from contextlib import ExitStack

    with ExitStack() as running:
        # gunicorn's own access log (off by default) shows which requests reached gunicorn.
        running.enter_context(pytest.MonkeyPatch.context()).setenv("GUNICORN_ACCESSLOG", "-")
        stacks = {}
        for name, answers in VARIANTS.items():
            result = cookies_session.bake(extra_context=answers)
            assert result.exception is None, result.exception
            project = Path(result.project_path)
            if answers["framework"] == "existing":
                (project / "shop").mkdir()
                (project / "shop" / "__init__.py").write_text("")
                (project / "shop" / "wsgi.py").write_text(SHOP_APP)
            stacks[name] = running.enter_context(start_stack(project, framework_venv))
        yield stacks


def https_get(stack: LiveStack, path: str = "/") -> Response:
    context = unverified_tls()
    connection = http.client.HTTPSConnection("localhost", stack.state["https_port"], timeout=10, context=context)
    try:
        connection.request("GET", path, headers={"Host": DOMAIN})
        answer = connection.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        connection.close()


def get(stack: LiveStack, path: str = "/") -> Response:
    return https_get(stack, path) if stack.state["https_port"] else stack.get(path)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_serves_its_app_health_check_and_static_files(variants, name: str) -> None:
    stack = variants[name]
    home = get(stack)
    assert home.status == 200 and "<h1>My App</h1>" in home.text
    assert get(stack, "/healthz").body == b"ok\n"
    static = "/static/README.txt" if name == "existing-sync" else "/static/style.css"
    assert get(stack, static).status == 200
    assert static not in stack.gunicorn_log()  # served by nginx
    # The favicon: the project's own (Django's collected too); an existing app without one gets an
    # empty answer from nginx, not a 404 from the app.
    icon = get(stack, "/favicon.ico")
    assert icon.status == (204 if name == "existing-sync" else 200), icon
    assert "favicon" not in stack.gunicorn_log()


@pytest.mark.parametrize(
    "name, worker", [("flask-gthread-tls", "gthread"), ("django-gevent-tcp", "gevent"), ("asgi-3-instances", "asgi")]
)
def test_each_worker_type_runs(variants, name: str, worker: str) -> None:
    assert f"Using worker: {worker}" in variants[name].gunicorn_log()


@pytest.mark.parametrize("name", ["flask-gthread-tls", "django-gevent-tcp", "asgi-3-instances"])
def test_frameworks_see_the_client_address_nginx_forwarded(variants, name: str) -> None:
    page = get(variants[name], "/").text
    assert f'<dd id="client-addr">{LOOPBACK}</dd>' in page


def test_django_serves_collected_static_files_and_its_own_pages(variants) -> None:
    stack = variants["django-gevent-tcp"]
    collected = Path(stack.state["prefix"]) / "static" / "style.css"
    assert collected.exists()  # collectstatic ran into the folder nginx serves
    assert stack.get("/static/style.css").body == collected.read_bytes()
    assert stack.get("/no-such-page").status == 404  # Django's own 404, not DEBUG's


def websocket_echo(port: int, text: str) -> str:
    """One text frame through nginx to the app's /ws and back (RFC 6455, client frames masked)."""
    key = base64.b64encode(os.urandom(16)).decode()
    handshake = (
        f"GET /ws HTTP/1.1\r\nHost: {DOMAIN}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection((LOOPBACK, port), timeout=10) as sock:
        sock.sendall(handshake.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101 "), head
        payload, mask = text.encode(), os.urandom(4)
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
        frame = head.split(b"\r\n\r\n", 1)[1]
        while len(frame) < 2 or len(frame) < 2 + frame[1]:
            frame += sock.recv(4096)
        assert frame[0] == 0x81  # a final text frame
        return frame[2 : 2 + frame[1]].decode()


def test_asgi_websocket_echoes_through_nginx(variants) -> None:
    assert websocket_echo(variants["asgi-3-instances"].port, "hello through nginx") == "hello through nginx"


def tls_handshake(port: int, version: ssl.TLSVersion) -> tuple[str, str | None]:
    context = unverified_tls()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer the old versions at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    context.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection((LOOPBACK, port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=DOMAIN) as tls,
    ):
        return tls.version(), tls.selected_alpn_protocol()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_tls_12_and_13_are_accepted_with_http2(variants, version: ssl.TLSVersion) -> None:
    port = variants["flask-gthread-tls"].state["https_port"]
    assert tls_handshake(port, version) == (version.name.replace("v1_", "v1."), "h2")


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"], ids=["tls1.0", "tls1.1"])
def test_old_tls_versions_are_refused_by_the_server(variants, version: str) -> None:
    port = variants["flask-gthread-tls"].state["https_port"]
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):  # nginx's alert, not the client's refusal
        tls_handshake(port, getattr(ssl.TLSVersion, version))


def test_http_redirects_to_https_and_https_sends_hsts(variants) -> None:
    stack = variants["flask-gthread-tls"]
    redirect = stack.get("/some/page?x=1")
    # run-local's HTTPS port is not 443: the redirect names it, or the browser would land nowhere.
    https_port = stack.state["https_port"]
    assert redirect.status == 301
    assert redirect.headers["location"] == f"https://{DOMAIN}:{https_port}/some/page?x=1"
    secure = https_get(stack)
    assert secure.headers["strict-transport-security"] == "max-age=63072000"
    assert '<dd id="scheme">https</dd>' in secure.text  # the app knows the request was HTTPS


def test_one_instance_down_requests_still_succeed(variants) -> None:
    stack = variants["asgi-3-instances"]
    first = stack.state["gunicorn_pids"][0]
    os.kill(first, signal.SIGTERM)
    stack.wait_for(
        lambda: not Path(f"/proc/{first}").exists() or "zombie" in Path(f"/proc/{first}/status").read_text(),
        what="instance 1 stopped",
    )
    statuses = [request(stack.port, "/").status for _ in range(30)]
    assert statuses == [200] * 30


def test_rolling_restart_under_load_fails_no_request(variants) -> None:
    stack = variants["asgi-3-instances"]
    before = set(stack.state["gunicorn_pids"])
    with load(stack.port, seconds=40, max_requests=40000, concurrency=4) as result:
        time.sleep(0.5)
        result.mark_event()
        restart = subprocess.run(
            [str(stack.project / "deploy" / "run-local"), "--restart"], capture_output=True, text=True, timeout=300
        )
        # --restart returns once every instance is back: the new pids are there at once.
        after = set(json.loads((stack.project / ".run-local.json").read_text())["gunicorn_pids"])
        time.sleep(0.5)  # a little load after the last instance is back
        result.done = True
    print(f"rolling restart under load: {result.sent} sent ({result.sent_after_event} during), {result.failed} failed")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "restart: ok" in restart.stdout
    assert result.sent_after_event >= 100
    assert result.failed == 0, (result.statuses, result.errors)
    assert before.isdisjoint(after)  # every instance was replaced
