{% set home_page %}
HOME_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{name}</title>
  <link rel="stylesheet" href="/static/style.css">
</head>
<body>
  <main>
    <h1>{name}</h1>
    <p>Served by gunicorn behind nginx. The stylesheet of this page comes from nginx directly.</p>
    <dl>
      <dt>Your address</dt><dd id="client-addr">{client_addr}</dd>
      <dt>Scheme</dt><dd id="scheme">{scheme}</dd>
      <dt>Host</dt><dd id="host">{host}</dd>
    </dl>
  </main>
</body>
</html>
"""
{% endset %}
{% if cookiecutter.framework == "asgi" %}
"""A small ASGI application: a home page, a health check, and a websocket echo at /ws.

Replace it with your own (any ASGI framework works the same way); keep `/healthz` (nginx, the
install command and monitoring use it).
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Any

from .proxy import client_address

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

{{ home_page }}

def header(scope: Scope, name: bytes) -> str:
    return next((value.decode("latin-1") for key, value in scope["headers"] if key == name), "")


def client_of(scope: Scope) -> str:
    """The client's address, from nginx's X-Forwarded-For when a trusted proxy connected."""
    peer = scope.get("client")
    return client_address(peer[0] if peer else None, header(scope, b"x-forwarded-for"))


async def respond(send: Send, status: int, content_type: str, body: bytes, method: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def http(scope: Scope, send: Send) -> None:
    path, method = scope["path"], scope["method"]
    if path not in ("/", "/healthz"):
        await respond(send, 404, "text/plain; charset=utf-8", b"not found\n", method)
    elif method not in ("GET", "HEAD"):
        await respond(send, 405, "text/plain; charset=utf-8", b"method not allowed\n", method)
    elif path == "/healthz":
        await respond(send, 200, "text/plain; charset=utf-8", b"ok\n", method)
    else:
        page = HOME_PAGE.format(
            name=html.escape(PROJECT_NAME),
            client_addr=html.escape(client_of(scope)),
            scheme=html.escape(scope["scheme"]),
            host=html.escape(header(scope, b"host")),
        )
        await respond(send, 200, "text/html; charset=utf-8", page.encode(), method)


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Echo every text message back, through nginx's websocket proxying."""
    if scope["path"] != "/ws":
        await send({"type": "websocket.close", "code": 1008})
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
        else:
            return


async def lifespan(receive: Receive, send: Send) -> None:
    """Nothing to set up or tear down; answer gunicorn's startup and shutdown messages."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http":
        await http(scope, send)
    elif scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "lifespan":
        await lifespan(receive, send)
{% else %}
"""A small WSGI application: a home page, a health check, and a page nginx shows is proxied right.

Replace it with your own; keep `/healthz` (nginx, the install command and monitoring use it).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable

from .proxy import client_address

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}

StartResponse = Callable[[str, list[tuple[str, str]]], object]

{{ home_page }}

def client_of(environ: dict) -> str:
    """The client's address, from nginx's X-Forwarded-For when a trusted proxy connected."""
    return client_address(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"))


def home(environ: dict) -> tuple[str, str, bytes]:
    page = HOME_PAGE.format(
        name=html.escape(PROJECT_NAME),
        client_addr=html.escape(client_of(environ)),
        scheme=html.escape(environ["wsgi.url_scheme"]),
        host=html.escape(environ.get("HTTP_HOST", "")),
    )
    return "200 OK", "text/html; charset=utf-8", page.encode()


def healthz(environ: dict) -> tuple[str, str, bytes]:
    return "200 OK", "text/plain; charset=utf-8", b"ok\n"


def cached(environ: dict) -> tuple[str, str, bytes]:
    """The same page for every visitor, so a shared cache may keep it (CACHE_CONTROL below)."""
    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    page = f"<!doctype html>\n<title>{html.escape(PROJECT_NAME)}</title>\n<p>Made at <time>{made}</time>.</p>\n"
    return "200 OK", "text/html; charset=utf-8", page.encode()


ROUTES = {"/": home, "/healthz": healthz, "/cached": cached}
# Pages that are the same for everyone: nginx's shared cache (the `cache` answer) keeps them for
# max-age seconds. Never mark a page public that shows anything of one visitor.
CACHE_CONTROL = {"/cached": "public, max-age=60"}


def application(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO") or "/"
    view = ROUTES.get(path)
    if view is None:
        status, content_type, body = "404 Not Found", "text/plain; charset=utf-8", b"not found\n"
    elif environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        status, content_type, body = "405 Method Not Allowed", "text/plain; charset=utf-8", b"method not allowed\n"
    else:
        status, content_type, body = view(environ)
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if status.startswith("405"):
        headers.append(("Allow", "GET, HEAD"))
    elif status.startswith("200") and path in CACHE_CONTROL:
        headers.append(("Cache-Control", CACHE_CONTROL[path]))
    start_response(status, headers)
    return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]
{% endif %}
