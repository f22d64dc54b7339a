"""deploy/restore: put a snapshot of deploy/backup back, on this machine.

In order, one line each: the snapshot is verified (sizes and SHA-256), the maintenance page goes
up (where nginx runs), what is there now is kept as a snapshot of its own (before-restore: a
restore loses nothing), the app stops, each database is copied into place under a hidden name,
checked with PRAGMA integrity_check and renamed over the live one (its old -wal, -shm and
-journal files go: they belong to the database it replaces; a PostgreSQL dump is restored by
pg_restore in one transaction, over the objects it replaces), the shared folder is unpacked beside
the live one and swapped in, the app starts and must answer /healthz, and the maintenance page
goes (unless it was up before). A step that fails stops there and says what is where; the
maintenance page then stays up.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from . import backup, layout, maintenance
from .backup import BackupError, Snapshot
from .install.activation import health_status, wait_for_health
from .install.common import InstallError
from .install.ledger import MANIFEST, Manifest
from .install.roles import Role

JOURNALS = ("-wal", "-shm", "-journal")


def systemctl(*args: str) -> None:
    backup.run("systemctl", *args)


def chosen(name: str | None) -> Snapshot:
    found = backup.snapshots()
    if not found:
        raise BackupError(f"no snapshot in {layout.BACKUP_DIR}: deploy/backup takes one")
    if name is None:
        # The newest, but not what a restore kept of what it replaced (unless nothing else is there).
        taken = [snapshot for snapshot in found if snapshot.kind != "before-restore"] or found
        return taken[-1]
    for snapshot in found:
        if snapshot.name == name or snapshot.path == Path(name):
            return snapshot
    names = ", ".join(s.name for s in reversed(found[-5:]))
    raise BackupError(f"no snapshot {name!r} in {layout.BACKUP_DIR} (the newest: {names})")


def put_database(snapshot: Snapshot, relative: str, entry: dict) -> str:
    """The snapshot's copy of a database in place of the live one, checked before it goes live."""
    live = Path(entry["source"])
    staged = live.with_name(f".{live.name}.restoring")
    shutil.copyfile(snapshot.path / relative, staged)
    shutil.chown(staged, layout.SERVICE_USER, layout.SERVICE_USER)
    staged.chmod(0o600)
    check = staged.with_name(staged.name + ".check")
    try:
        integrity = backup.copy_database(staged, check)
    finally:
        check.unlink(missing_ok=True)
    if integrity != "ok":
        staged.unlink()
        raise BackupError(f"{relative} of {snapshot.name} fails PRAGMA integrity_check: {integrity}")
    for suffix in JOURNALS:
        Path(str(live) + suffix).unlink(missing_ok=True)
    os.replace(staged, live)
    return f"{live} ({entry['bytes'] / 1024 / 1024:.1f} MB, integrity ok)"


def put_postgresql(snapshot: Snapshot) -> str:
    """The dump restored into the app's database by its own role: every object it holds is dropped
    and made anew from the dump, in one transaction (a failure leaves the database as it was)."""
    environment = backup.postgresql_environment()
    if environment is None:
        raise BackupError(f"{snapshot.name} holds a PostgreSQL dump, and {layout.ENV_FILE} names no PGDATABASE")
    options = ["--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error"]
    with (snapshot.path / backup.POSTGRESQL_DUMP).open("rb") as dump:
        done = subprocess.run(
            [*backup.AS_SERVICE, "pg_restore", *options, f"--dbname={environment['PGDATABASE']}"],
            stdin=dump, capture_output=True, env=environment, check=False, timeout=6 * 3600, cwd="/",
        )  # fmt: skip
    if done.returncode:
        said = done.stderr.decode(errors="replace").strip()
        raise BackupError(f"pg_restore failed (status {done.returncode}): {said}")
    size = (snapshot.path / backup.POSTGRESQL_DUMP).stat().st_size
    return f"PostgreSQL database {environment['PGDATABASE']} ({size / 1024 / 1024:.1f} MB dump, one transaction)"


def put_shared(snapshot: Snapshot) -> str:
    """The snapshot's shared folder unpacked beside the live one, then swapped in."""
    live = Path(layout.SHARED_DIR)
    staged = live.with_name(f".{live.name}.restoring")
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(mode=0o700)
    with tarfile.open(snapshot.path / backup.SHARED_TAR) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if not parts or parts[0] != "shared" or ".." in parts or member.isdev() or member.islnk():
                raise BackupError(f"{backup.SHARED_TAR} of {snapshot.name} holds {member.name!r}: not restored")
        # tarfile's own checks too where this Python has them (3.11.4 and later).
        archive.extractall(staged, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    unpacked = staged / "shared"
    replaced = live.with_name(f".{live.name}.replaced")
    if live.exists():
        os.replace(live, replaced)
    os.replace(unpacked, live)
    shutil.rmtree(staged)
    shutil.rmtree(replaced, ignore_errors=True)
    return f"{live} ({sum(1 for _ in live.rglob('*'))} entries)"


def restore(name: str | None, from_restic: str | None = None, say: Callable[[str], None] = print) -> int:
    started = time.monotonic()
    role = Role.recorded(Manifest.load(Path(MANIFEST)).role)
    if not role.runs_app:
        raise BackupError(f"this machine is {role.describe}: its data is on the app hosts, restore there")
    if from_restic is not None:
        snapshot = backup.fetch(from_restic)
        say(f"restic: snapshot {from_restic} of the repository is {snapshot.path}")
    else:
        snapshot = chosen(name)
    backup.verify(snapshot)
    record = snapshot.record()
    say(f"snapshot: {snapshot.name} (taken {record['taken']}, release {record['release'] or 'unknown'}): verified")
    page = role.runs_nginx and maintenance.state() is None
    if page:
        say(maintenance.turn_on(f"deploy/restore {snapshot.name}"))
    kept = backup.take("before-restore")
    say(f"kept: what was there, as {kept.path}")
    units = [*layout.SOCKET_UNITS, *layout.APP_SERVICES]
    systemctl("stop", *reversed(units))
    say(f"stop: {' '.join(units)}")
    try:
        for relative, entry in record["files"].items():
            if relative.startswith("state/"):
                say(f"database: {put_database(snapshot, relative, entry)}")
            elif relative == backup.POSTGRESQL_DUMP:
                say(f"database: {put_postgresql(snapshot)}")
            elif relative == backup.SHARED_TAR:
                say(f"shared: {put_shared(snapshot)}")
    finally:
        # Also after a failure: a database is replaced only once its copy passed its check.
        systemctl("start", *units)
    wait_for_health(lambda: health_status(role), "the restored app's /healthz")
    say(f"start: {' '.join(units)}; /healthz answers 200")
    if page:
        say(maintenance.turn_off())
    say(f"restore: done in {time.monotonic() - started:.1f}s ({snapshot.name}; before it: {kept.name})")
    return 0


def run_restore(name: str | None, from_restic: str | None = None) -> int:
    try:
        return restore(name, from_restic)
    except (BackupError, InstallError, OSError, subprocess.SubprocessError, tarfile.TarError) as error:
        up = " The maintenance page is still up: deploy/maintenance off ends it." if maintenance.state() else ""
        print(f"restore: FAILED: {error}.{up}")
        return 1
