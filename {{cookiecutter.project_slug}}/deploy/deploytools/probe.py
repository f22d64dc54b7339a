"""One HTTP probe for every health check: nginx's site, one gunicorn, a local stack.

probe("127.0.0.1:80", "example.com", "/healthz") asks like a browser would, with the site's Host;
an address may also be a unix socket ("unix:/run/app.sock") or IPv6 ("[::1]:8080"). With
`tls_server_name` the connection speaks TLS and sends that name (SNI), so that nginx picks the
site's certificate; the certificate is not verified: the probe checks the app, not the certificate.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass

# A health answer is short; reading more of a body than this only delays the probe.
BODY_LIMIT = 64 * 1024


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case

    @property
    def ok(self) -> bool:
        return self.status == 200


def split_address(address: str) -> tuple[str, int]:
    """("127.0.0.1", 80) from "127.0.0.1:80", ("::1", 80) from "[::1]:80"."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port or unix:/path")
    return host.strip("[]"), int(port)


def connect(address: str, timeout: float) -> socket.socket:
    if address.startswith("unix:"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address.removeprefix("unix:"))
        except OSError:
            sock.close()
            raise
        return sock
    return socket.create_connection(split_address(address), timeout=timeout)


class _Connection(http.client.HTTPConnection):
    """http.client over any address of ours, with TLS when a server name is given."""

    def __init__(self, address: str, tls_server_name: str | None, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.address = address
        self.tls_server_name = tls_server_name

    def connect(self) -> None:
        sock = connect(self.address, self.timeout)  # type: ignore[arg-type]
        if self.tls_server_name is not None:
            # It checks the app behind nginx, not the certificate chain (a new one may not be trusted yet).
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=self.tls_server_name)
        self.sock = sock


def probe(address: str, host: str, path: str, tls_server_name: str | None = None, timeout: float = 3) -> Answer | None:
    """GET `path` with `Host: host` from `address`: the status and headers, or None when nothing
    answered (refused, timed out, closed without a response)."""
    connection = _Connection(address, tls_server_name, timeout)
    try:
        connection.request("GET", path, headers={"Host": host, "Connection": "close"})
        response = connection.getresponse()
        response.read(BODY_LIMIT)
        return Answer(response.status, {name.lower(): value for name, value in response.getheaders()})
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
