"""What the command line asked deploy/install for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..traffic import THRESHOLD_POINTS
from .releases import KEEP
from .roles import Role

WATCH_SECONDS = 30.0


@dataclass(frozen=True)
class Options:
    """deploy/install's options, as parsed (deploy/install, the script, parses them)."""

    root: Path | None = None
    dry_run: bool = False
    verbose: bool = False
    purge: bool = False
    adopt: bool = False  # take over what exists and this installer did not make (see system.py)
    role: Role | None = None  # --role and its options; None: as the manifest records (roles.py)
    # --rollback [ID]: "" for the release before the running one; None: no rollback.
    rollback: str | None = None
    # --force: roll back even to a release that does not know a migration the database has.
    force: bool = False
    # --keep N: releases kept besides the running one (older ones go, with the venvs they alone use).
    keep: int = KEEP
    # --watch SECONDS: after the switch, how long a whole server watches its answers (0: not at all),
    # and how many percentage points of 5xx more than the previous release's send it back.
    watch: float = WATCH_SECONDS
    watch_threshold: float = THRESHOLD_POINTS
    # --migrations: run (Django's migrations before the switch, the default) or skip (the first app
    # host's run does them: several app hosts on one database).
    migrations: str = "run"
    # --database-clients N: the app hosts that share the database, for the connection count.
    database_clients: int = 1
    # --database-host ADDRESS: the db host every app host shares; the role's password comes on stdin.
    database_host: str | None = None
    database_password: str | None = None
