"""deploy/maintenance: the site's maintenance page, on and off.

On, nginx answers every request but the health check with 503, the project's maintenance page
(errors/maintenance.html) and Retry-After, for as long as the flag file exists: nginx looks for it
on each request, so neither turning it on nor off reloads anything. The flag holds when and why
maintenance began. The app keeps running (a deploy, a migration or a restore works behind it) and
its /healthz stays reachable through nginx, for deploy/install's health check and for monitors.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import layout
from .probe import probe


def state(flag: Path = Path(layout.MAINTENANCE_FLAG)) -> dict[str, str] | None:
    """When and why maintenance began, or None when it is off."""
    try:
        text = flag.read_text()
    except FileNotFoundError:
        return None
    try:
        recorded = json.loads(text)
    except ValueError:
        return {"since": "", "reason": text.strip()}
    return recorded if isinstance(recorded, dict) else {"since": "", "reason": str(recorded)}


def turn_on(reason: str, flag: Path = Path(layout.MAINTENANCE_FLAG)) -> str:
    if not flag.parent.is_dir():
        raise FileNotFoundError(f"{flag.parent} does not exist: the site is not installed on this machine")
    before = state(flag)
    if before is not None:
        return f"maintenance: already on since {before.get('since') or 'an unknown time'} ({flag})"
    record = {"since": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "reason": reason}
    # Written beside and renamed into place: nginx sees no flag or a whole one.
    scratch = flag.with_name(f".{flag.name}.writing")
    scratch.write_text(json.dumps(record) + "\n")
    scratch.chmod(0o644)
    os.replace(scratch, flag)
    return f"maintenance: on ({flag}); nginx answers {answered()} for the site's pages"


def turn_off(flag: Path = Path(layout.MAINTENANCE_FLAG)) -> str:
    if state(flag) is None:
        return "maintenance: already off"
    flag.unlink()
    return f"maintenance: off; nginx answers {answered()} for the site's pages"


def answered() -> str:
    """What nginx on this machine answers for the home page now, as a browser asks for it."""
    https = layout.TLS_MODE != "none"
    address = "127.0.0.1:443" if https else "127.0.0.1:80"
    answer = probe(address, layout.DOMAIN, "/", tls_server_name=layout.DOMAIN if https else None)
    return f"status {answer.status}" if answer is not None else "nothing (is nginx running?)"
