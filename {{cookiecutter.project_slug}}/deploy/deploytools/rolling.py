"""Restart gunicorn instances one at a time, each healthy again before the next one goes.

Used by deploy/rolling-restart on the server (systemctl restart per instance) and by
deploy/run-local (its own gunicorn processes). While one instance restarts, nginx sends
requests to the others (proxy_next_upstream); a single instance behind a systemd socket keeps
its listening socket, so connections wait instead of failing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from . import layout

HEALTHY_SECONDS = 60


def healthy(server: str, timeout: float = 2) -> bool:
    """Whether the gunicorn at `server` (unix:/path or host:port) answers /healthz with 200."""
    if server.startswith("unix:"):
        family, address = socket.AF_UNIX, server.removeprefix("unix:")
    else:
        host, _, port = server.rpartition(":")
        family, address = socket.AF_INET, (host, int(port))  # type: ignore[assignment]
    request = f"GET {layout.HEALTH_PATH} HTTP/1.1\r\nHost: {layout.DOMAIN}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(request)
            return sock.recv(64).startswith(b"HTTP/1.1 200 ")
    except OSError:
        return False


def wait_healthy(server: str, seconds: float = HEALTHY_SECONDS) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if healthy(server):
            return True
        time.sleep(0.1)
    return False


def rolling_restart(servers: list[str], restart: Callable[[int], None], say: Callable[[str], None] = print) -> bool:
    """restart(i) each instance in turn; stop at the first that does not come back healthy."""
    for index, server in enumerate(servers):
        restart(index)
        if not wait_healthy(server):
            say(f"restart: instance {index + 1} ({server}) not healthy within {HEALTHY_SECONDS}s; stopped here")
            return False
        say(f"restart: instance {index + 1} of {len(servers)} ({server}) healthy")
    return True
