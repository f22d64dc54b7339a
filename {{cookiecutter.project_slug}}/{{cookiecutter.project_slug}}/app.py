"""A small WSGI application: a home page, a health check, and a page nginx shows is proxied right.

Replace it with your own; keep `/healthz` (nginx, the install command and monitoring use it).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable

PROJECT_NAME = {{ cookiecutter.project_name | tojson }}

StartResponse = Callable[[str, list[tuple[str, str]]], object]

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


def client_address(environ: dict) -> str:
    """The client's address as nginx saw it.

    nginx overwrites X-Forwarded-For with the address of the peer it accepted, and gunicorn only
    trusts the header from nginx (forwarded_allow_ips), so it cannot be spoofed from outside.
    """
    return environ.get("HTTP_X_FORWARDED_FOR") or environ.get("REMOTE_ADDR") or "unknown"


def home(environ: dict) -> tuple[str, str, bytes]:
    page = HOME_PAGE.format(
        name=html.escape(PROJECT_NAME),
        client_addr=html.escape(client_address(environ)),
        scheme=html.escape(environ["wsgi.url_scheme"]),
        host=html.escape(environ.get("HTTP_HOST", "")),
    )
    return "200 OK", "text/html; charset=utf-8", page.encode()


def healthz(environ: dict) -> tuple[str, str, bytes]:
    return "200 OK", "text/plain; charset=utf-8", b"ok\n"


ROUTES = {"/": home, "/healthz": healthz}


def application(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
    view = ROUTES.get(environ.get("PATH_INFO") or "/")
    if view is None:
        status, content_type, body = "404 Not Found", "text/plain; charset=utf-8", b"not found\n"
    elif environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        status, content_type, body = "405 Method Not Allowed", "text/plain; charset=utf-8", b"method not allowed\n"
    else:
        status, content_type, body = view(environ)
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if status.startswith("405"):
        headers.append(("Allow", "GET, HEAD"))
    start_response(status, headers)
    return [b"" if environ["REQUEST_METHOD"] == "HEAD" else body]
