"""Who may tell the app the client's address: the proxies gunicorn trusts, and no one else.

gunicorn believes X-Forwarded-Proto only from the addresses in FORWARDED_ALLOW_IPS (see
gunicorn.conf.py), but passes X-Forwarded-For on from anyone. The app believes that header from
the same peers: nginx on this machine (the unix socket, or loopback) or, on an app host of its
own, the load balancers (deploy/install --role app --trust). From any other peer it is a forgery.
"""

from __future__ import annotations

import ipaddress
import os

# As gunicorn.conf.py reads it, with the same default: nginx on this machine.
DEFAULT_TRUSTED = "127.0.0.1,::1"


def trusted_peer(address: str | None) -> bool:
    """Whether the peer that connected is a proxy whose forwarded headers count."""
    if not address:
        # A unix socket has no peer address, and only nginx may connect to it (mode 0660).
        return True
    allowed = [item.strip() for item in os.environ.get("FORWARDED_ALLOW_IPS", DEFAULT_TRUSTED).split(",")]
    if "*" in allowed:
        return True
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    for item in filter(None, allowed):
        try:
            if peer in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_address(peer: str | None, forwarded_for: str | None) -> str:
    """The client's address: nginx's X-Forwarded-For (it overwrites what clients send with the
    peer it accepted) when a trusted proxy connected, the peer's own address otherwise."""
    if forwarded_for and trusted_peer(peer):
        return forwarded_for
    return peer or "unknown"
