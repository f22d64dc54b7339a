"""How to put one path back as it was before a run: kept in memory and in the journal."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Undo:
    """How to put one path back as it was before this run."""

    path: Path
    kind: str  # "created", "created-tree" (a release or a venv, whole), "replaced", "meta" or "removed-dir"
    backup: Path | None = None
    meta: tuple[int, int, int] | None = None  # mode, uid and gid before the change

    def record(self) -> dict:
        return {
            "undo": self.kind,
            "path": str(self.path),
            "backup": str(self.backup) if self.backup else None,
            "meta": list(self.meta) if self.meta else None,
        }

    @classmethod
    def from_record(cls, record: dict) -> Undo:
        backup, meta = record.get("backup"), record.get("meta")
        path, kind = Path(record["path"]), record["undo"]
        return cls(path, kind, Path(backup) if backup else None, (meta[0], meta[1], meta[2]) if meta else None)


def chown_as(path: Path, original: os.stat_result) -> None:
    if os.geteuid() == 0:
        os.chown(path, original.st_uid, original.st_gid, follow_symlinks=False)


def undo_one(undo: Undo) -> None:
    path = undo.path
    if undo.kind == "created-tree":
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
    elif undo.kind == "created":
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        else:
            path.unlink(missing_ok=True)
    elif undo.kind == "replaced" and undo.backup is not None:
        temporary = path.with_name(f".{path.name}.restoring")
        temporary.unlink(missing_ok=True)
        shutil.copy2(undo.backup, temporary, follow_symlinks=False)
        chown_as(temporary, undo.backup.lstat())
        os.replace(temporary, path)
    elif undo.meta is not None:
        mode, uid, gid = undo.meta
        if undo.kind == "removed-dir":
            path.mkdir()
        path.chmod(mode)
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
