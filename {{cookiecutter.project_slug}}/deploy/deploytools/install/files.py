"""The file layer of deploy/install: one transaction over the server's files.

- every file is compared (content, mode, owner) before it is written, so a run with nothing new
  changes nothing and says so;
- every file that is replaced or removed is first copied, with its mode and owner, to
  INSTALL_DIR/backups/<UTC time>/<its absolute path>, and every change is noted in the undo list:
  restore() puts the backed-up files back and removes whatever this run created. Each undo
  record also goes to the journal before the change it undoes (ledger.py);
- what the installer creates is listed in the manifest with its hash, and what it did not create
  is left alone: its folders keep their mode and owner, removal skips changed files;
- no path is written or removed through a symbolic link on the way to it (escape()).
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable, Collection
from pathlib import Path, PurePosixPath

from .. import layout
from .common import BACKUPS_DIR, ENV_DIR, INSTALL_STATE_DIR, KEEP_BACKUPS, ROOT, InstallError, Owner, cache, describe
from .ledger import Journal, Manifest, sha256
from .report import Report
from .target import Target
from .undo import Undo, chown_as, undo_one

# Folders that are the installer's own on a live server: no link may lead out of them. (Above
# them, /srv or /etc/nginx may be links an operator made; in a staged tree, nothing may be.)
OWN_FOLDERS = tuple(
    dict.fromkeys([layout.INSTALL_DIR, ENV_DIR, layout.NGINX_SNIPPETS_DIR, layout.STATE_DIR, INSTALL_STATE_DIR])
)


class Files:
    def __init__(self, target: Target, report: Report, manifest: Manifest, journal: Journal) -> None:
        self.target = target
        self.report = report
        self.manifest = manifest
        self.journal = journal
        self.adopt = target.options.adopt
        self.touched: set[str] = set()  # paths this run placed or kept, with their parents
        self.left: list[str] = []  # what removal left in place, and why
        self.undo_list: list[Undo] = []
        self.planned: set[str] = set()  # folders a dry run would have created
        self.backup_dir: str | None = None
        self.backups_created = False
        # What restore() leaves to remove_trees(): trees this run made, folders it created.
        self.trees: list[Undo] = []
        self.created_dirs: list[Path] = []
        self.keep_backups = True
        self.purging = False

    def disk(self, path: str) -> Path:
        return self.escape(path)

    def escape(self, path: str) -> Path:
        """Where `path` is on disk, once no folder on the way there is a symbolic link that could
        lead the write or removal out of the tree (see OWN_FOLDERS)."""
        current = self.target.root
        server = PurePosixPath("/")
        for part in PurePosixPath(path).parts[1:-1]:
            current, server = current / part, server / part
            try:
                info = os.lstat(current)
            except OSError:  # missing (nothing to follow), or unreadable (the write fails, said clearly)
                break
            guarded = self.target.defers or any(
                str(server) == own or str(server).startswith(own + "/") for own in OWN_FOLDERS
            )
            if guarded and stat.S_ISLNK(info.st_mode):
                where = f"--root {self.target.root}" if self.target.defers else f"{server}"
                raise InstallError(
                    f"{server} is a symbolic link (to {os.readlink(current)}): deploy/install does not write or remove"
                    f" through links, so that nothing lands outside {where}. Replace the link with a real folder"
                    " (or remove it) and run again"
                )
        return self.target.disk(path)

    def note(self, undo: Undo) -> None:
        """How to undo the change about to be made: in memory, and in the journal first."""
        self.journal.add(undo.record())
        self.undo_list.append(undo)

    def created_tree(self, path: str) -> None:
        """`path` is about to be made whole by this run (a release, a venv): undone by removing it."""
        if self.target.writes:
            self.note(Undo(self.disk(path), "created-tree"))

    def touch(self, path: str, entry: dict[str, str] | None = None) -> None:
        """`path` is part of this version (and the manifest's, with `entry`)."""
        if entry is not None:
            self.manifest.paths[path] = entry
        self.touched.add(path)
        self.touched.update(str(parent) for parent in PurePosixPath(path).parents)

    def forget(self, path: str) -> None:
        self.manifest.paths.pop(path, None)

    # Folders ------------------------------------------------------------------------------------
    def make_parents(self, path: str) -> None:
        for parent in reversed(PurePosixPath(path).parents[:-1]):
            if not self.disk(str(parent)).exists() and str(parent) not in self.planned:
                self.create_dir(str(parent), 0o755, ROOT)

    def create_dir(self, path: str, mode: int, owner: Owner) -> None:
        self.target.changed("created", path, f"({describe(owner, mode)})")
        self.touch(path, {"type": "dir"})
        if not self.target.writes:
            self.planned.add(path)
            return
        disk = self.disk(path)
        self.note(Undo(disk, "created"))
        disk.mkdir(mode)
        disk.chmod(mode)
        if ids := self.target.ids(owner):
            os.chown(disk, *ids)

    def ensure_dir(self, path: str, mode: int, owner: Owner) -> None:
        disk = self.disk(path)
        if disk.is_symlink() or (disk.exists() and not disk.is_dir()):
            raise InstallError(f"{path} should be a folder but is not: move it away and run again")
        if disk.exists():
            # A folder the installer did not create keeps its mode and owner, unless adopted.
            if self.manifest.owns(path) or self.adopt:
                self.touch(path, {"type": "dir"})
                self.fix_meta(path, mode, owner)
            else:
                self.touch(path)
        elif path not in self.planned:
            self.make_parents(path)
            self.create_dir(path, mode, owner)

    def fix_meta(self, path: str, mode: int, owner: Owner) -> None:
        disk = self.disk(path)
        now = disk.lstat()
        ids = self.target.ids(owner)
        if stat.S_IMODE(now.st_mode) == mode and (ids is None or (now.st_uid, now.st_gid) == ids):
            return
        self.target.changed("fixed", path, f"({describe(owner, mode)}, was {stat.S_IMODE(now.st_mode):04o})")
        if not self.target.writes:
            return
        self.note(Undo(disk, "meta", meta=(stat.S_IMODE(now.st_mode), now.st_uid, now.st_gid)))
        disk.chmod(mode)
        if ids:
            os.chown(disk, *ids)

    # Files and links ----------------------------------------------------------------------------
    def ensure_file(
        self,
        path: str,
        content: bytes,
        mode: int,
        owner: Owner,
        *,
        create_only: bool = False,
        conffile: bool = False,
        listed: bool = True,
    ) -> None:
        """`path` holds `content` with `mode` and `owner`. create_only: an existing file is kept as
        it is. conffile: the operator's to edit (purge removes it even when changed). listed=False:
        the installer's own records, not part of the manifest."""
        disk = self.disk(path)
        if disk.is_dir() and not disk.is_symlink():
            raise InstallError(f"{path} should be a file but is a folder: move it away and run again")
        entry = {"type": "file", "sha256": sha256(content), **({"conffile": "yes"} if conffile else {})}
        if disk.is_symlink() or disk.exists():
            if create_only:
                self.touch(path)
                return
            if listed:
                self.touch(path, entry)
            if not disk.is_symlink() and disk.read_bytes() == content:
                self.fix_meta(path, mode, owner)
                return
            self.target.changed("updated", path, f"({describe(owner, mode)}; previous one backed up)")
            if self.target.writes:
                self.note(Undo(disk, "replaced", backup=self.backup(path)))
                self.write(disk, content, mode, owner)
            return
        self.make_parents(path)
        if listed:
            self.touch(path, entry)
        self.target.changed("created", path, f"({describe(owner, mode)})")
        if self.target.writes:
            self.note(Undo(disk, "created"))
            self.write(disk, content, mode, owner)

    def write(self, disk: Path, content: bytes, mode: int, owner: Owner) -> None:
        """Write through a temporary file and a rename: readers see the old file or the new one."""
        temporary = disk.with_name(f".{disk.name}.installing")
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fchmod(descriptor, mode)
            if ids := self.target.ids(owner):
                os.fchown(descriptor, *ids)
            os.fsync(descriptor)
        os.replace(temporary, disk)

    def ensure_link(self, path: str, target: str) -> None:
        disk = self.disk(path)
        self.touch(path, {"type": "link", "target": target})
        if disk.is_symlink() and os.readlink(disk) == target:
            return
        if disk.is_dir() and not disk.is_symlink():
            raise InstallError(f"{path} should be a link but is a folder: move it away and run again")
        existed = disk.is_symlink() or disk.exists()
        if not existed:
            self.make_parents(path)
        self.target.changed("updated" if existed else "created", path, f"-> {target}")
        if not self.target.writes:
            return
        self.note(Undo(disk, "replaced", backup=self.backup(path)) if existed else Undo(disk, "created"))
        temporary = disk.with_name(f".{disk.name}.installing")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target)
        os.replace(temporary, disk)

    def remove_file(self, path: str, *, listed_only: bool = True) -> None:
        """Remove a file or link the installer placed and nobody changed since (listed_only=False:
        whatever is there, e.g. what the project no longer has in a folder that is the installer's)."""
        disk = self.disk(path)
        if not (disk.is_symlink() or disk.exists()):
            self.forget(path)
            return
        if listed_only and not self.manifest.unchanged(path, disk):
            # Purge removes the configuration the installer created even once edited, like dpkg.
            conffile = self.purging and self.manifest.paths.get(path, {}).get("conffile")
            if not conffile:
                why = (
                    "changed since it was installed" if self.manifest.owns(path) else "not installed by deploy/install"
                )
                self.left.append(f"{path} ({why})")
                return
        self.target.changed("removed", path, "(backed up)" if self.keep_backups else "")
        self.forget(path)
        if not self.target.writes:
            return
        if self.keep_backups:
            self.note(Undo(disk, "replaced", backup=self.backup(path)))
        disk.unlink()

    def remove_dir(self, path: str, *, listed_only: bool = True) -> None:
        """Remove a folder the installer created, once its files are gone (Python caches go with
        it). A folder that still holds something else, or that is not the installer's, stays."""
        disk = self.disk(path)
        if disk.is_symlink() or not disk.is_dir():
            self.forget(path)
            return
        if listed_only and not self.manifest.owns(path):
            return
        if any(not cache(p.relative_to(disk).parts) for p in disk.rglob("*") if not p.is_dir()):
            self.left.append(f"{path} (holds files deploy/install did not place)")
            return
        self.target.changed("removed", path)
        self.forget(path)
        if not self.target.writes:
            return
        for leftover in disk.rglob("__pycache__"):
            shutil.rmtree(leftover)
        now = disk.lstat()
        self.note(Undo(disk, "removed-dir", meta=(stat.S_IMODE(now.st_mode), now.st_uid, now.st_gid)))
        disk.rmdir()

    def remove_tree(self, path: str) -> None:
        """Remove a folder that the installer's commands filled (the venv, the backups) with all
        it holds, without a backup (--purge). Links inside are removed, never followed."""
        disk = self.disk(path)
        if disk.is_symlink():
            self.left.append(f"{path} (a symbolic link where a folder was expected)")
            return
        if not disk.exists():
            self.forget(path)
            return
        self.target.changed("removed", path, "and everything in it")
        self.forget(path)
        if self.target.writes:
            shutil.rmtree(disk)

    def mirror(
        self,
        dest: str,
        files: dict[str, Path],
        *,
        dir_mode: int,
        file_mode: int,
        owner: Owner,
        exec_mode: int | None = None,
        skip: Callable[[tuple[str, ...]], bool] = cache,
        keep: Collection[str] = (),
    ) -> None:
        """Make `dest` hold exactly `files` (relative path -> source); what it holds besides, other
        than skipped names and the files in `keep` (and their folders), is backed up and removed."""
        self.ensure_dir(dest, dir_mode, owner)
        for relative, source in files.items():
            target = f"{dest}/{relative}"
            if source.is_dir():
                self.ensure_dir(target, dir_mode, owner)
            else:
                executable = exec_mode is not None and os.access(source, os.X_OK)
                mode = exec_mode if executable and exec_mode is not None else file_mode
                self.ensure_file(target, source.read_bytes(), mode, owner)
        here = self.disk(dest)
        if not here.is_dir():
            return
        kept_folders = {str(PurePosixPath(name).parent) for name in keep}
        kept_folders |= {str(parent) for folder in kept_folders for parent in PurePosixPath(folder).parents}
        # Deepest first, so that a folder is empty by the time its turn comes.
        for found in sorted(here.rglob("*"), reverse=True):
            relative = found.relative_to(here)
            target = f"{dest}/{relative.as_posix()}"
            if relative.as_posix() in keep or relative.as_posix() in kept_folders:
                self.touch(target)  # still the installer's: no prune removes it
                continue
            if relative.as_posix() in files or skip(relative.parts):
                continue
            if found.is_dir() and not found.is_symlink():
                self.remove_dir(target, listed_only=False)
            else:
                self.remove_file(target, listed_only=False)

    # Backups and the way back -------------------------------------------------------------------
    def backup(self, path: str) -> Path:
        """Copy `path` (a file or a link) with its mode and owner into this run's backup folder."""
        if self.backup_dir is None:
            self.backup_dir = self.new_backup_dir()
        base = self.disk(self.backup_dir)
        # Parent folders copy the mode and owner of the originals: `cp -a <backup>/. /` restores
        # files without loosening or tightening any folder on the way.
        for parent in reversed(PurePosixPath(path).parents[:-1]):
            copy = base / str(parent).lstrip("/")
            if not copy.exists():
                original = self.disk(str(parent)).lstat()
                copy.mkdir()
                copy.chmod(stat.S_IMODE(original.st_mode))
                chown_as(copy, original)
        source = self.disk(path)
        copy = base / path.lstrip("/")
        shutil.copy2(source, copy, follow_symlinks=False)
        chown_as(copy, source.lstat())
        return copy

    def new_backup_dir(self) -> str:
        backups = self.disk(BACKUPS_DIR)
        if not backups.exists():
            backups.mkdir(0o700, parents=True)
            self.backups_created = True
            self.journal.add({"backups_created": True})
        self.touch(BACKUPS_DIR, {"type": "tree"})
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for attempt in range(1, 100):
            name = stamp if attempt == 1 else f"{stamp}-{attempt}"
            try:
                (backups / name).mkdir(0o700)
            except FileExistsError:
                continue
            self.journal.add({"backup_dir": f"{BACKUPS_DIR}/{name}"})
            return f"{BACKUPS_DIR}/{name}"
        raise InstallError(f"cannot create a backup folder in {BACKUPS_DIR}")

    def restore(self) -> list[str]:
        """Undo every file change of this run, newest first, but the release and venv it made:
        processes may still run from them until the services are back on the previous release
        (remove_trees() then). The problems met (none: all undone)."""
        problems = []
        created = {undo.path for undo in self.undo_list if undo.kind == "created"}
        self.trees = [undo for undo in self.undo_list if undo.kind == "created-tree"]
        for undo in reversed(self.undo_list):
            if undo.kind == "created-tree":
                continue
            try:
                undo_one(undo)
            except OSError as error:
                problems.append(f"{undo.path}: {error}")
        self.undo_list.clear()
        self.created_dirs = sorted(created, reverse=True)
        if not problems and self.backup_dir is not None:
            # Everything is back in place: the copies are the files as they are now.
            shutil.rmtree(self.disk(self.backup_dir))
            if self.backups_created:
                self.disk(BACKUPS_DIR).rmdir()
                # The folders this run made around the backups (a first install's install folder)
                # were not empty while they held them: they go now.
                for folder in self.disk(BACKUPS_DIR).parents:
                    if folder not in created or any(folder.iterdir()):
                        break
                    folder.rmdir()
            self.backup_dir = None
        return problems

    def remove_trees(self) -> list[str]:
        """The release and venv this run made, once nothing runs from them; then the folders this
        run made that they alone kept (a first install's releases/ and install folder)."""
        problems = []
        for undo in reversed(self.trees):
            try:
                undo_one(undo)
            except OSError as error:
                problems.append(f"{undo.path}: {error}")
        for folder in self.created_dirs:
            if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()
        self.trees, self.created_dirs = [], []
        return problems

    def prune_backups(self) -> None:
        """Keep the newest KEEP_BACKUPS backup folders."""
        backups = self.disk(BACKUPS_DIR)
        if not self.target.writes or not backups.is_dir():
            return
        folders = sorted((p for p in backups.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in folders[:-KEEP_BACKUPS]:
            shutil.rmtree(old)
