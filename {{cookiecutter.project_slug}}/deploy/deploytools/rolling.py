"""Restart gunicorn instances one at a time, each healthy again before the next one goes.

Used by deploy/rolling-restart on the server (systemctl restart per instance) and by
deploy/run-local (its own gunicorn processes). While an instance listening on a port restarts,
nginx sends its requests to the others (proxy_next_upstream); an instance behind a systemd socket
keeps its listening socket, so the connections nginx makes to it wait for the restart instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import layout
from .probe import probe

HEALTHY_SECONDS = 60


def healthy(server: str, timeout: float = 2) -> bool:
    """Whether the gunicorn at `server` (unix:/path or host:port) answers /healthz with 200."""
    answer = probe(server, layout.DOMAIN, layout.HEALTH_PATH, timeout=timeout)
    return answer is not None and answer.ok


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
