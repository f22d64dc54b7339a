"""deploy/backup and deploy/restore: snapshots of the app's data, and putting one back.

The app's data: every SQLite database in the service's state folder (STATE_DIR: Django's
db.sqlite3), copied through SQLite's online backup API by the service's own account (a copy of a
live database taken with cp can be torn mid-write; the API copies one consistent state, and
writers go on meanwhile), and the shared folder (uploads, media) as a tar file. A snapshot is a
folder of BACKUP_DIR, written under a hidden name and renamed into place whole:

    <UTC time>-<kind>/snapshot.json   when, which release ran, each file with its size and SHA-256
    <UTC time>-<kind>/state/<name>    each database, checked with PRAGMA integrity_check
    <UTC time>-<kind>/shared.tar      the shared folder
    <UTC time>-<kind>/postgresql.dump database=postgresql: pg_dump's custom format of the database

With database=postgresql the database is dumped instead (pg_dump --format=custom, one consistent
transaction while the app writes on), by the service's account with the env file's settings: the
connection the app has, on a whole server and on an app host alike. pg_restore puts it back.

Kinds: manual (deploy/backup), timer (the daily unit), before-<release> (deploy/install, before the
migrations of that release), before-restore (deploy/restore, of what it replaces). BACKUP_DIR is
root's alone (0700): it holds the users' data. The newest BACKUPS_KEPT of each kind stay.

With backup=restic, each snapshot taken by hand or by the timer also goes to the restic
repository the env file names (RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE, and whatever else restic
reads from its environment: AWS_* for S3, ...): encrypted, deduplicated, off this machine. The
timer's runs then apply the repository's retention (restic forget --prune). Without
RESTIC_REPOSITORY, snapshots stay on this machine, and deploy/backup says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .envfile import read_env_file
from .install.common import AS_SERVICE
from .install.releases import now_utc

SNAPSHOT_FILE = "snapshot.json"
SHARED_TAR = "shared.tar"
SQLITE_COPY = Path(__file__).with_name("sqlitecopy.py")
SQLITE_MAGIC = b"SQLite format 3\0"
POSTGRESQL_DUMP = "postgresql.dump"
# restic's own cache (index and metadata of the repository), kept between runs.
RESTIC_CACHE_DIR = f"/var/cache/{layout.SLUG}-restic"
# What the repository keeps of this project's snapshots once the timer's run sent its own.
RESTIC_KEEP = ["--keep-daily", "7", "--keep-weekly", "5", "--keep-monthly", "12"]


class BackupError(Exception):
    pass


@dataclass(frozen=True)
class Snapshot:
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str:
        return self.name.split("-", 1)[1]

    def record(self) -> dict:
        return json.loads((self.path / SNAPSHOT_FILE).read_text())


def run(*command: str, env: dict[str, str] | None = None, timeout: float = 3600) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env, timeout=timeout)
    if done.returncode:
        said = (done.stderr or done.stdout).strip()
        raise BackupError(f"{' '.join(command)} failed (status {done.returncode}): {said}")
    return done.stdout


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def databases(folder: Path = Path(layout.STATE_DIR)) -> list[Path]:
    """The SQLite databases of the state folder (by their header, not their name)."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as head:
                if head.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
                    found.append(path)
    return found


def copy_database(source: Path, target: Path) -> str:
    """`source` copied to `target` by the service's account through SQLite's backup API; what
    PRAGMA integrity_check says of the copy ("ok")."""
    said = run(*AS_SERVICE, sys.executable, str(SQLITE_COPY), str(source), str(target))
    return json.loads(said)["integrity"]


def postgresql_environment() -> dict[str, str] | None:
    """The env file's PostgreSQL settings with the environment pg_dump runs in; None: SQLite."""
    if not layout.DATABASE:
        return None
    path = Path(layout.ENV_FILE)
    settings = read_env_file(path) if path.is_file() else {}
    if not settings.get("PGDATABASE"):
        return None
    return {**os.environ, **{name: value for name, value in settings.items() if name.startswith("PG")}}


def dump_database(target: Path, environment: dict[str, str]) -> None:
    """pg_dump's custom format (compressed; pg_restore picks from it) of the app's database, written by
    root from the dump the service's account reads: the backup folder is root's alone."""
    with target.open("xb") as output:
        os.fchmod(output.fileno(), 0o600)
        done = subprocess.run(
            [*AS_SERVICE, "pg_dump", "--format=custom", "--no-owner", "--no-privileges"],
            stdout=output, stderr=subprocess.PIPE, text=False, env=environment, check=False, timeout=6 * 3600, cwd="/",
        )  # fmt: skip
    if done.returncode:
        raise BackupError(f"pg_dump failed (status {done.returncode}): {done.stderr.decode(errors='replace').strip()}")


def running_release() -> str:
    link = Path(layout.APP_DIR)
    return Path(os.readlink(link)).name if link.is_symlink() else ""


def snapshots(kind: str | None = None) -> list[Snapshot]:
    """The snapshots on this machine, oldest first (of `kind` only, when given)."""
    folder = Path(layout.BACKUP_DIR)
    if not folder.is_dir():
        return []
    found = [Snapshot(p) for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return [s for s in found if (s.path / SNAPSHOT_FILE).is_file() and (kind is None or s.kind == kind)]


def take(kind: str) -> Snapshot:
    """A snapshot of the app's data now; the oldest of its kind beyond BACKUPS_KEPT go."""
    started = time.time()
    folder = Path(layout.BACKUP_DIR)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    name = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + f"-{kind}"
    partial = folder / f".{name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    state = partial / "state"
    state.mkdir(parents=True, mode=0o700)
    files: dict[str, dict] = {}
    try:
        for database in databases():
            # The service's account writes the copy beside the database (the backup folder is
            # root's alone), then it moves here and becomes root's.
            scratch = database.with_name(f".{database.name}.{name}")
            try:
                integrity = copy_database(database, scratch)
                if integrity != "ok":
                    raise BackupError(f"the copy of {database} fails PRAGMA integrity_check: {integrity}")
                shutil.move(scratch, state / database.name)
            finally:
                scratch.unlink(missing_ok=True)
            shutil.chown(state / database.name, "root", "root")
            files[f"state/{database.name}"] = {"source": str(database), "integrity": integrity}
        if (environment := postgresql_environment()) is not None:
            dump_database(partial / POSTGRESQL_DUMP, environment)
            files[POSTGRESQL_DUMP] = {"source": f"PostgreSQL database {environment['PGDATABASE']}"}
        shared = Path(layout.SHARED_DIR)
        if shared.is_dir():
            with tarfile.open(partial / SHARED_TAR, "w") as archive:
                archive.add(shared, arcname="shared")
            files[SHARED_TAR] = {"source": str(shared)}
        for relative, record in files.items():
            path = partial / relative
            path.chmod(0o600)
            record |= {"bytes": path.stat().st_size, "sha256": sha256(path)}
        record = {
            "project": layout.SLUG,
            "kind": kind,
            "taken": now_utc(started),
            "seconds": round(time.time() - started, 3),
            "release": running_release(),
            "files": files,
        }
        (partial / SNAPSHOT_FILE).write_text(json.dumps(record, indent=1) + "\n")
        (partial / SNAPSHOT_FILE).chmod(0o600)
        os.replace(partial, folder / name)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    for old in snapshots(kind)[: -layout.BACKUPS_KEPT]:
        shutil.rmtree(old.path)
    return Snapshot(folder / name)


def describe(snapshot: Snapshot) -> str:
    record = snapshot.record()
    total = sum(entry["bytes"] for entry in record["files"].values())
    names = ", ".join(record["files"]) or "nothing (no database, no shared folder)"
    return f"{snapshot.path}: {names}; {total / 1024 / 1024:.1f} MB in {record['seconds']:.1f}s"


def verify(snapshot: Snapshot) -> None:
    """Every file of the snapshot is as it was written (size and SHA-256)."""
    for relative, entry in snapshot.record()["files"].items():
        path = snapshot.path / relative
        if not path.is_file() or sha256(path) != entry["sha256"]:
            raise BackupError(f"{path} is missing or changed since the snapshot was taken: not restored")


def restic_environment() -> dict[str, str] | None:
    """restic's settings from the env file, with the environment they run in; None: none there."""
    if layout.BACKUP != "restic":
        return None
    path = Path(layout.ENV_FILE)
    settings = read_env_file(path) if path.is_file() else {}
    if not (settings.get("RESTIC_REPOSITORY") or settings.get("RESTIC_REPOSITORY_FILE")):
        return None
    return {**os.environ, "RESTIC_CACHE_DIR": RESTIC_CACHE_DIR, **settings}


def restic(environment: dict[str, str], *arguments: str) -> str:
    return run("restic", *arguments, env=environment, timeout=6 * 3600)


def send(snapshot: Snapshot) -> str:
    """The snapshot into the restic repository; what to say of it."""
    environment = restic_environment()
    if environment is None:
        if layout.BACKUP == "restic":
            return f"not sent off this machine: RESTIC_REPOSITORY is not set in {layout.ENV_FILE}"
        return ""
    tags = ["--tag", layout.SLUG, "--tag", snapshot.kind.split("-", 1)[0]]
    said = restic(environment, "backup", "--json", *tags, str(snapshot.path))
    summary = next((json.loads(line) for line in said.splitlines() if '"summary"' in line), {})
    repository = environment.get("RESTIC_REPOSITORY", "the restic repository")
    sent = f"sent to {repository} as restic snapshot {summary.get('snapshot_id', '?')[:8]}"
    if snapshot.kind == "timer":
        restic(environment, "forget", "--prune", "--tag", layout.SLUG, *RESTIC_KEEP)
        sent += " (repository pruned)"
    return sent


def fetch(restic_id: str) -> Snapshot:
    """A snapshot from the restic repository, put among this machine's snapshots (by its name)."""
    environment = restic_environment()
    if environment is None:
        raise BackupError(f"no restic repository: set RESTIC_REPOSITORY and RESTIC_PASSWORD_FILE in {layout.ENV_FILE}")
    folder = Path(layout.BACKUP_DIR)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    scratch = folder / f".restic-{time.time_ns()}"
    try:
        restic(environment, "restore", restic_id, "--tag", layout.SLUG, "--target", str(scratch))
        found = [path.parent for path in scratch.rglob(SNAPSHOT_FILE)]
        if len(found) != 1:
            raise BackupError(f"restic snapshot {restic_id} holds {len(found)} snapshots of deploy/backup, not one")
        target = folder / found[0].name
        if target.exists():
            return Snapshot(target)
        os.replace(found[0], target)
        return Snapshot(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
