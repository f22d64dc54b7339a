"""The releases on a server: what each deploy wrote, which one runs, and which venv each one uses.

- RELEASES_DIR/<id>/: the project's files as one deploy installed them, written once into a
  hidden folder and renamed into place whole; never changed afterwards. <id> is release_id():
  the same files make the same release, on every host and in deploy/release's archive name.
- RELEASES_DIR/<id>/venv: a link to VENVS_DIR/<key>, built by deploy/setup-venv once for each
  requirements.txt and Python version, and shared by every release with the same key.
- APP_DIR (current): the link to the release that runs; every unit names paths through it.
- The log (releases.json, beside the manifest): when each release was deployed, what git said
  about it, and whether it failed its health check; --releases shows it and --rollback reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import layout
from .common import INSTALL_STATE_DIR, InstallError, app_files

LOG = f"{INSTALL_STATE_DIR}/releases.json"
# Releases kept on the server besides the running one (and the venvs they use); older ones go.
KEEP = 5
# setup-venv's record of the requirements it installed: a venv without it is not finished.
VENV_STAMP = ".requirements.sha256"
# The names deploy/install gives releases and venvs (and a release being written): pruning
# removes nothing else it finds in their folders.
RELEASE_NAME = re.compile(r"\.?[0-9a-f]{12}(\.partial)?")
VENV_NAME = re.compile(r"[0-9a-f]{16}")


def release_id() -> str:
    """The first 12 hex digits of the SHA-256 over the release's files (names and contents) and the
    settings made at bake time: another id as soon as anything the server gets changes."""
    digest = hashlib.sha256()
    paths = app_files()
    if layout.ENV_SOURCE.exists():
        paths[layout.ENV_SOURCE.name] = layout.ENV_SOURCE
    for name, path in sorted(paths.items()):
        digest.update(name.encode() + b"\0")
        if path.is_file():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def venv_key(requirements: bytes, python_version: str) -> str:
    """The venv folder's name for these requirements and this Python (major.minor)."""
    return hashlib.sha256(requirements + b"\0" + python_version.encode()).hexdigest()[:16]


def release_dir(release: str) -> str:
    return f"{layout.RELEASES_DIR}/{release}"


def venv_dir(key: str) -> str:
    return f"{layout.VENVS_DIR}/{key}"


def current_target(release: str) -> str:
    """What the current link holds for `release`: a path relative to the link's folder."""
    return os.path.relpath(release_dir(release), os.path.dirname(layout.APP_DIR))


def venv_target(key: str) -> str:
    """What a release's venv link holds for venv `key`: a path relative to the release."""
    return os.path.relpath(venv_dir(key), release_dir("release"))


def now_utc(seconds: float | None = None) -> str:
    """The time (now, or `seconds` since the epoch) as the release log and the snapshots write it."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


@dataclass
class Entry:
    id: str
    venv: str  # its venv's key
    deployed: str  # when it was first switched to (or tried)
    describe: str = ""  # `git describe` of the project it was made from, when it was a git checkout
    failed: str = ""  # why it was never switched to, or was switched away from: its check failed
    rolled_back: str = ""  # when --rollback left it (a plain rollback goes further back, not to it)
    migrations: list[str] = field(default_factory=list)  # Django's, applied by its deploy: app.name
    backup: str = ""  # the snapshot of the data taken before those migrations (deploy/restore NAME)

    @property
    def skipped(self) -> str:
        """Why a plain --rollback passes this release by ("": it does not)."""
        if self.failed:
            return f"failed: {self.failed}"
        return f"rolled back from on {self.rolled_back}" if self.rolled_back else ""


@dataclass
class Log:
    entries: list[Entry] = field(default_factory=list)  # oldest first

    @classmethod
    def load(cls, disk: Path) -> Log:
        if not os.path.exists(disk):
            return cls()
        try:
            data = json.loads(disk.read_text())
            return cls([Entry(**entry) for entry in data["releases"]])
        except (ValueError, KeyError, TypeError) as error:
            raise InstallError(f"{disk} is not a release log deploy/install can read ({error}): move it away") from None

    def content(self) -> bytes:
        data = {"project": layout.SLUG, "releases": [asdict(entry) for entry in self.entries]}
        return (json.dumps(data, indent=1) + "\n").encode()

    def save(self, disk: Path) -> None:
        """Written beside and renamed over: a reader sees the old log or the new one."""
        temporary = disk.with_name(f".{disk.name}.writing")
        temporary.write_bytes(self.content())
        temporary.chmod(0o600)
        os.replace(temporary, disk)

    def find(self, release: str) -> Entry | None:
        return next((entry for entry in self.entries if entry.id == release), None)

    def deployed(self, entry: Entry) -> None:
        """`entry` is the newest deploy now (again, if it was one before)."""
        self.entries = [known for known in self.entries if known.id != entry.id] + [entry]

    def previous(self, current: str) -> Entry | None:
        """The release to roll back to from `current`: the newest before it that did not fail."""
        ids = [entry.id for entry in self.entries]
        before = self.entries[: ids.index(current)] if current in ids else self.entries
        return next((entry for entry in reversed(before) if not entry.skipped), None)

    def kept(self, current: str, keep: int = KEEP, before: str | None = None) -> list[Entry]:
        """The entries pruning keeps, in order: the current release, the `keep` newest others that did
        not fail, the one that ran `before` it whatever its place (a rollback's way back), and the
        `keep` newest failed ones (a record only: a failed release's folder went with its run)."""
        good = [entry.id for entry in self.entries if not entry.failed and entry.id != current]
        bad = [entry.id for entry in self.entries if entry.failed and entry.id != current]
        chosen = {current, before, *good[max(len(good) - keep, 0) :], *bad[max(len(bad) - keep, 0) :]}
        return [entry for entry in self.entries if entry.id in chosen]


def running_release(disk_link: Path) -> str | None:
    """The id the current link points to, or None (no link yet, or the layout before releases)."""
    if not disk_link.is_symlink():
        return None
    return Path(os.readlink(disk_link)).name
