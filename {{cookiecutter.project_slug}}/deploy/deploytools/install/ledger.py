"""What deploy/install keeps about its own work, in INSTALL_STATE_DIR on the server:

- the manifest (like dpkg's .list files and conffile hashes): every path the installer created,
  with the SHA-256 of what it wrote, the account it created and the units it activated. Uninstall
  and purge remove only what is listed and still as written; a redeploy removes what the new
  version no longer has.
- the journal: written ahead of every change of a run (how to undo it), fsynced, and removed when
  the run ends. A journal found at start means a run was interrupted (killed, power lost): the
  next run undoes it before anything else.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import layout
from .common import INSTALL_STATE_DIR, InstallError

MANIFEST = f"{INSTALL_STATE_DIR}/manifest.json"
JOURNAL = f"{INSTALL_STATE_DIR}/journal"
LOCK = f"{INSTALL_STATE_DIR}/lock"
FORMAT = 1


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@dataclass
class Manifest:
    # server path -> {"type": "file", "sha256": ...} | {"type": "link", "target": ...} | {"type": "dir"}
    paths: dict[str, dict[str, str]] = field(default_factory=dict)
    user_created: bool = False  # the service's account and group are this installer's
    active_units: list[str] = field(default_factory=list)  # what the installed version enables
    # The role this machine was installed for, with its options (roles.py); empty: a whole server.
    role: dict = field(default_factory=dict)
    # The release it was last installed from (its id): what nginx's cached answers came from.
    release: str = ""
    # Static files of the release before it that it has not: still served until the next deploy.
    carried: list[str] = field(default_factory=list)
    # PostgreSQL's role and database this installer created ({"role": ..., "database": ...}): a
    # purge leaves them, with the commands that drop them.
    database: dict = field(default_factory=dict)

    @classmethod
    def load(cls, disk: Path) -> Manifest:
        if not os.path.exists(disk):  # (unreadable: preflight says why)
            return cls()
        try:
            data = json.loads(disk.read_text())
            return cls(
                paths=data["paths"],
                user_created=data["user_created"],
                active_units=data["active_units"],
                role=data.get("role", {}),
                release=data.get("release", ""),
                carried=data.get("carried", []),
                database=data.get("database", {}),
            )
        except (ValueError, KeyError, TypeError) as error:
            raise InstallError(f"{disk} is not a manifest deploy/install can read ({error}): move it away") from None

    def content(self) -> bytes:
        data = {"format": FORMAT, "project": layout.SLUG, **asdict(self)}
        return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()

    def owns(self, path: str) -> bool:
        return path in self.paths

    def unchanged(self, path: str, disk: Path) -> bool:
        """Whether `path` is still what the installer put there."""
        entry = self.paths.get(path)
        if entry is None:
            return False
        kind = entry["type"]
        if kind == "link":
            return disk.is_symlink() and os.readlink(disk) == entry["target"]
        if kind == "dir":
            return disk.is_dir() and not disk.is_symlink()
        return disk.is_file() and not disk.is_symlink() and sha256(disk.read_bytes()) == entry["sha256"]


class Journal:
    """Append-only, one JSON record per line, each fsynced before the change it describes. The run
    that writes it holds a lock on it: a second run at the same time stops instead of mixing in."""

    def __init__(self, disk: Path) -> None:
        self.disk = disk
        self.file: int | None = None
        self.made: list[Path] = []  # folders created to hold it

    def exists(self) -> bool:
        return self.disk.exists() or self.disk.is_symlink()

    def busy(self) -> bool:
        """Whether a running deploy/install holds the journal (else it is from an interrupted run)."""
        try:
            descriptor = os.open(self.disk, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(descriptor)
        return False

    def read(self) -> tuple[dict, list[dict]]:
        """The header of an interrupted run and its records; a torn last line is skipped."""
        header: dict = {}
        records = []
        for number, line in enumerate(self.disk.read_text(errors="replace").splitlines()):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if number == 0:
                header = record
            else:
                records.append(record)
        return header, records

    def open(self, command: str) -> None:
        for folder in reversed(self.disk.parents):
            if not folder.exists():
                folder.mkdir(0o755)
                self.made.append(folder)
        try:
            self.file = os.open(self.disk, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            raise InstallError(f"another deploy/install is running on this server (it holds {self.disk})") from None
        fcntl.flock(self.file, fcntl.LOCK_EX)
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        made = [str(folder) for folder in self.made]
        self.add({"command": command, "pid": os.getpid(), "started": started, "made": made})

    def add(self, record: dict) -> None:
        if self.file is None:
            return
        os.write(self.file, (json.dumps(record) + "\n").encode())
        os.fsync(self.file)

    def close(self) -> None:
        """The run is over, done or undone: nothing is left to recover."""
        self.disk.unlink(missing_ok=True)
        if self.file is not None:
            os.close(self.file)
            self.file = None
        for folder in reversed(self.made):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self.made.clear()
