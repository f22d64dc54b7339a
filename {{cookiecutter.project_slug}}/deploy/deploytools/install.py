"""deploy/install: put this project on its server and keep it there, one checked step at a time.

Steps, one line of output each: preflight, user, dirs, env, app, venv, static, errors, systemd,
nginx, selinux (RHEL), validate, activate, https (Let's Encrypt's first certificate), health.
Together they are one transaction over files:

- every file is compared (content, mode, owner) before it is written, so a run with nothing new
  changes nothing and says so;
- every file that is replaced or removed is first copied, with its mode and owner, to
  INSTALL_DIR/backups/<UTC time>/<its absolute path>; when validation or the health check fails,
  every one of them is put back, whatever this run created is removed, and the previous version
  is started again;
- the env file is created once and never written again.

Commands that act on the system (systemctl, useradd, nginx -t, restorecon, ...) are started by
`Server.run` and nowhere else: --dry-run prints them, --root records them in the staged tree for
the target to run, and only a plain run executes them.
"""

from __future__ import annotations

import grp
import http.client
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import ssl
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import layout
from .envfile import read_env_file
from .nginx import find_nginx
from .rolling import wait_healthy

# Paths and names derived from layout.py -------------------------------------------------------
BACKUPS_DIR = f"{layout.INSTALL_DIR}/backups"
ENV_DIR = str(PurePosixPath(layout.ENV_FILE).parent)
REQUIREMENTS = f"{layout.APP_DIR}/requirements.txt"
SETUP_VENV = f"{layout.APP_DIR}/deploy/setup-venv"
VENV_PYTHON = f"{layout.VENV_DIR}/bin/python"
# A staged install (--root) writes the commands the target still has to run here, in the tree.
STAGED_RECORD = f"/var/lib/{layout.SLUG}-install/commands.log"
# Every unit file of the project (services, sockets, and timers or others if it gains some).
UNIT_FILES = sorted(path.name for path in layout.SYSTEMD_DIR.iterdir() if path.is_file())
NGINX_SERVICE = "nginx.service"
# certbot runs every hook in this folder after a renewal; ours reloads nginx.
CERTBOT_HOOK_SOURCE = layout.DEPLOY_DIR / "certbot-deploy-hook"
CERTBOT_HOOK = f"/etc/letsencrypt/renewal-hooks/deploy/{layout.NGINX_SITE.stem}-nginx"
# Folders nginx serves files from (SELinux labels them).
NGINX_READS = [
    layout.STATIC_ROOT,
    layout.ERRORS_ROOT,
    *([layout.ACME_ROOT] if layout.TLS_MODE == "letsencrypt" else []),
]
NOLOGIN = "/usr/sbin/nologin"
HEALTH_SECONDS = 60
KEEP_BACKUPS = 10
# What stays in the project: its tests and virtualenvs (any top-level folder with a pyvenv.cfg
# too) and, at any depth, env files (secrets: the project's one is installed once as ENV_FILE
# instead), hidden files (.git, run-local's state) and Python caches.
LEFT_BEHIND = frozenset({"tests", "venv", layout.LOCAL_VENV.name})
CACHES = frozenset({"__pycache__"})
# A line of deploy/check's output: its verdict and the check's name.
CHECK_LINE = re.compile(r"(ok|skip) +(\w+) ")
# The past and present forms of what happens to a path, for "3 created" and "would create".
VERBS = {"created": "create", "updated": "update", "removed": "remove", "fixed": "fix"}

# Who owns what: root writes everything; the service's group may read its code, nothing more.
ROOT = ("root", "root")
SERVICE_READS = ("root", layout.SERVICE_USER)


@dataclass(frozen=True)
class Platform:
    install: str  # the package manager's install command
    python: str  # the packages that give python3.11+ with its venv module
    venv_python: str  # the interpreter setup-venv builds the venv with on the target


PLATFORMS = {
    "debian-13": Platform("apt-get install", "python3 python3-venv", "python3"),
    "debian-12": Platform("apt-get install", "python3 python3-venv", "python3"),
    "ubuntu-24.04": Platform("apt-get install", "python3 python3-venv", "python3"),
    "rhel-9": Platform("dnf install", "python3.11", "python3.11"),
}
PLATFORM = PLATFORMS[layout.PLATFORM]

ENV_TEMPLATE = f"""\
# Settings and secrets of {layout.SLUG}, one NAME=value per line, read by systemd for
# {" ".join(layout.APP_SERVICES)} (EnvironmentFile=). Created once by deploy/install, which never
# overwrites it; mode 0600, only root reads it. A change applies when the service restarts (a
# reload keeps the environment it started with): systemctl restart {" ".join(layout.APP_SERVICES)}
#
# Workers per app server (default: 2 x cores + 1, or the number the project was made with).
# WEB_CONCURRENCY=5
# gunicorn's log level: debug, info, warning, error.
# GUNICORN_LOGLEVEL=info
"""


class InstallError(Exception):
    """Why the install stopped, in words an operator can act on."""


@dataclass(frozen=True)
class Options:
    root: Path | None = None
    dry_run: bool = False
    verbose: bool = False
    purge: bool = False


@dataclass
class Undo:
    """How to put one path back as it was before this run."""

    path: Path
    kind: str  # "created", "replaced", "meta" or "removed-dir"
    backup: Path | None = None
    meta: tuple[int, int, int] | None = None  # mode, uid and gid before the change


def unit_file(unit: str) -> str:
    """The file that defines a unit: an instance my_app@1.service comes from my_app@.service."""
    name, _, suffix = unit.rpartition(".")
    return f"{name.split('@', 1)[0]}@.{suffix}" if "@" in name else unit


def cache(parts: tuple[str, ...]) -> bool:
    return any(part in CACHES for part in parts) or parts[-1].endswith(".pyc")


def app_skips(project: Path) -> Callable[[tuple[str, ...]], bool]:
    """What of `project` stays behind, by path parts relative to it."""
    left_behind = LEFT_BEHIND | {venv.parent.name for venv in project.glob("*/pyvenv.cfg")}

    def skip(parts: tuple[str, ...]) -> bool:
        hidden = any(part.startswith(".") or part.endswith(".env") for part in parts)
        return parts[0] in left_behind or hidden or cache(parts)

    return skip


def tree(source: Path, skip: Callable[[tuple[str, ...]], bool] = cache) -> dict[str, Path]:
    """Every folder and file under `source` by relative path, parents first, without skipped ones."""
    if not source.is_dir():
        raise InstallError(f"{source} is missing from the project")
    found = {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if not skip(relative.parts):
            found[relative.as_posix()] = path
    return found


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines())


def describe(owner: tuple[str, str], mode: int) -> str:
    return f"{owner[0]}:{owner[1]} {mode:04o}"


def health_status() -> int | None:
    """The status nginx answers for /healthz with the site's Host, or None when nothing answers."""
    if layout.TLS_MODE == "none":
        connection = http.client.HTTPConnection("127.0.0.1", 80, timeout=3)
    else:
        # Checked by address, so the certificate cannot match; this checks the app, not the certificate.
        context = ssl._create_unverified_context()
        connection = http.client.HTTPSConnection("127.0.0.1", 443, timeout=3, context=context)
    try:
        connection.request("GET", layout.HEALTH_PATH, headers={"Host": layout.DOMAIN})
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def health_url() -> str:
    scheme = "http" if layout.TLS_MODE == "none" else "https"
    return f"{scheme}://127.0.0.1{layout.HEALTH_PATH} (Host: {layout.DOMAIN})"


def wait_for_health(seconds: float = HEALTH_SECONDS) -> float:
    """Seconds until /healthz answered 200 through nginx; InstallError when it does not in time."""
    start = time.monotonic()
    status = None
    while time.monotonic() - start < seconds:
        status = health_status()
        if status == 200:
            return time.monotonic() - start
        time.sleep(0.25)
    said = f"status {status}" if status else "no answer"
    raise InstallError(f"{health_url()}: {said} within {seconds}s")


def this_platform() -> str | None:
    """This machine as debian-12, ubuntu-24.04 or rhel-9 (Rocky and Alma count as RHEL)."""
    try:
        lines = Path("/etc/os-release").read_text().splitlines()
    except OSError:
        return None
    fields = dict(line.split("=", 1) for line in lines if "=" in line)
    name, version = (fields.get(key, "").strip('"') for key in ("ID", "VERSION_ID"))
    if name in {"rhel", "rocky", "almalinux", "centos"}:
        return f"rhel-{version.split('.')[0]}"
    return f"{name}-{version}"


class Server:
    """The target: this machine, or a staged tree (--root). Every change goes through here."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.staged = options.root is not None
        self.root = options.root or Path("/")
        self.dry_run = options.dry_run
        self.step_name = "preflight"
        self.changes: list[tuple[str, str]] = []  # (created/updated/removed/fixed, server path)
        self.commands: list[str] = []  # run, recorded or shown
        self.pending: list[str] = []  # action lines of the current step
        self.journal: list[Undo] = []
        self.planned: set[str] = set()  # folders a dry run would have created
        self.backup_dir: str | None = None
        self.backups_created = False
        self.keep_backups = True
        # What a staged tree tells about the target: whether an install was there before this run.
        self.installed_before = self.disk(layout.APP_DIR).is_dir()
        self.units_before = {name for name in UNIT_FILES if self.disk(f"{layout.SYSTEMD_UNIT_DIR}/{name}").exists()}

    # Output -------------------------------------------------------------------------------------
    def action(self, verb: str, text: str) -> None:
        self.pending.append(f"  {'would ' if self.dry_run else ''}{verb} {text}")

    def step(self, result: str) -> None:
        print(f"{self.step_name}: {result}", flush=True)
        self.flush()

    def flush(self) -> None:
        if self.pending and (self.dry_run or self.options.verbose):
            print("\n".join(self.pending), flush=True)
        self.pending.clear()

    def mark(self) -> int:
        return len(self.changes)

    def summary(self, since: int, base: str | None = None) -> str:
        """'2 created, 1 updated (wsgi.py, ...)' for the changes since `since`, or 'unchanged'."""
        changes = self.changes[since:]
        if not changes:
            return "unchanged"
        counts = Counter(verb for verb, _ in changes)
        if self.dry_run:
            text = ", ".join(f"{count} to {VERBS[verb]}" for verb, count in counts.items())
        else:
            text = ", ".join(f"{count} {verb}" for verb, count in counts.items())
        if base is not None and len(changes) <= 3:
            names = [path.removeprefix(base + "/") if path != base else path for _, path in changes]
            text += f" ({', '.join(names)})"
        return text

    # Commands -----------------------------------------------------------------------------------
    def run(
        self, *command: str, query: bool = False, env: dict[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str] | None:
        """Run a command on the system: the one place where one starts.

        A query (query=True) only reads: it runs in a dry run too, and a staged tree has nothing to
        answer it (None). Any other command runs only in a plain run: a dry run shows it, a staged
        install records it for the target. None: the command did not run. `env` adds variables
        without showing them (secrets from the env file).
        """
        line = shlex.join(command)
        if self.staged:
            if not query:
                self.commands.append(line)
                self.action("record:", line)
            return None
        if not query:
            self.commands.append(line)
            self.action("run:", line)
            if self.dry_run:
                return None
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, env={**os.environ, **env} if env else None
        )
        if check and result.returncode:
            said = indent(result.stdout + result.stderr) or "    (no output)"
            raise InstallError(f"{line} failed with status {result.returncode}:\n{said}")
        return result

    def outcome(self) -> str:
        """What became of this run's commands: done, recorded (--root), or would be (--dry-run)."""
        done = "recorded" if self.staged else "run" if self.dry_run else "done"
        return f"would be {done}" if self.dry_run else done

    def user_exists(self) -> bool:
        if self.staged:
            return self.installed_before
        try:
            pwd.getpwnam(layout.SERVICE_USER)
        except KeyError:
            return False
        return True

    def unit_is(self, state: str, unit: str) -> bool:
        """systemctl is-enabled / is-active; a staged tree counts units installed by an earlier run."""
        if self.staged:
            if unit == NGINX_SERVICE:
                return self.installed_before
            return unit_file(unit) in self.units_before
        result = self.run("systemctl", f"is-{state}", "--quiet", unit, query=True, check=False)
        return result is not None and result.returncode == 0

    # Files --------------------------------------------------------------------------------------
    def disk(self, path: str) -> Path:
        """Where a server path is on this machine's disk (under the staged tree with --root)."""
        return self.root / path.lstrip("/")

    def ids(self, owner: tuple[str, str]) -> tuple[int, int] | None:
        """uid and gid for `owner`, or None where they cannot be applied: in a staged tree (the
        target's accounts do not exist here) and in a dry run before the service's user exists."""
        if self.staged:
            return (0, 0) if owner == ROOT and os.geteuid() == 0 else None
        try:
            return pwd.getpwnam(owner[0]).pw_uid, grp.getgrnam(owner[1]).gr_gid
        except KeyError:
            return None

    def changed(self, verb: str, path: str, detail: str = "") -> None:
        self.changes.append((verb, path))
        shown = f"would {VERBS[verb]}" if self.dry_run else verb
        self.pending.append(f"  {shown} {path}{' ' + detail if detail else ''}")

    def make_parents(self, path: str) -> None:
        for parent in reversed(PurePosixPath(path).parents[:-1]):
            if not self.disk(str(parent)).exists() and str(parent) not in self.planned:
                self.create_dir(str(parent), 0o755, ROOT)

    def create_dir(self, path: str, mode: int, owner: tuple[str, str]) -> None:
        self.changed("created", path, f"({describe(owner, mode)})")
        if self.dry_run:
            self.planned.add(path)
            return
        disk = self.disk(path)
        self.journal.append(Undo(disk, "created"))
        disk.mkdir(mode)
        disk.chmod(mode)
        if ids := self.ids(owner):
            os.chown(disk, *ids)

    def ensure_dir(self, path: str, mode: int, owner: tuple[str, str]) -> None:
        disk = self.disk(path)
        if disk.is_symlink() or (disk.exists() and not disk.is_dir()):
            raise InstallError(f"{path} should be a folder but is not: move it away and run again")
        if disk.exists():
            self.fix_meta(path, mode, owner)
        elif path not in self.planned:
            self.make_parents(path)
            self.create_dir(path, mode, owner)

    def fix_meta(self, path: str, mode: int, owner: tuple[str, str]) -> None:
        disk = self.disk(path)
        now = disk.lstat()
        ids = self.ids(owner)
        if stat.S_IMODE(now.st_mode) == mode and (ids is None or (now.st_uid, now.st_gid) == ids):
            return
        self.changed("fixed", path, f"({describe(owner, mode)}, was {stat.S_IMODE(now.st_mode):04o})")
        if self.dry_run:
            return
        self.journal.append(Undo(disk, "meta", meta=(stat.S_IMODE(now.st_mode), now.st_uid, now.st_gid)))
        disk.chmod(mode)
        if ids:
            os.chown(disk, *ids)

    def ensure_file(
        self, path: str, content: bytes, mode: int, owner: tuple[str, str], *, create_only: bool = False
    ) -> None:
        disk = self.disk(path)
        if disk.is_dir() and not disk.is_symlink():
            raise InstallError(f"{path} should be a file but is a folder: move it away and run again")
        if disk.is_symlink() or disk.exists():
            if create_only:
                return
            if not disk.is_symlink() and disk.read_bytes() == content:
                self.fix_meta(path, mode, owner)
                return
            self.changed("updated", path, f"({describe(owner, mode)}; previous one backed up)")
            if not self.dry_run:
                self.journal.append(Undo(disk, "replaced", backup=self.backup(path)))
                self.write(disk, content, mode, owner)
            return
        self.make_parents(path)
        self.changed("created", path, f"({describe(owner, mode)})")
        if not self.dry_run:
            self.journal.append(Undo(disk, "created"))
            self.write(disk, content, mode, owner)

    def write(self, disk: Path, content: bytes, mode: int, owner: tuple[str, str]) -> None:
        """Write through a temporary file and a rename: readers see the old file or the new one."""
        temporary = disk.with_name(f".{disk.name}.installing")
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fchmod(descriptor, mode)
            if ids := self.ids(owner):
                os.fchown(descriptor, *ids)
            os.fsync(descriptor)
        os.replace(temporary, disk)

    def ensure_link(self, path: str, target: str) -> None:
        disk = self.disk(path)
        if disk.is_symlink() and os.readlink(disk) == target:
            return
        if disk.is_dir() and not disk.is_symlink():
            raise InstallError(f"{path} should be a link but is a folder: move it away and run again")
        existed = disk.is_symlink() or disk.exists()
        if not existed:
            self.make_parents(path)
        self.changed("updated" if existed else "created", path, f"-> {target}")
        if self.dry_run:
            return
        self.journal.append(Undo(disk, "replaced", backup=self.backup(path)) if existed else Undo(disk, "created"))
        temporary = disk.with_name(f".{disk.name}.installing")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target)
        os.replace(temporary, disk)

    def remove_file(self, path: str) -> None:
        disk = self.disk(path)
        if not (disk.is_symlink() or disk.exists()):
            return
        self.changed("removed", path, "(backed up)" if self.keep_backups else "")
        if self.dry_run:
            return
        if self.keep_backups:
            self.journal.append(Undo(disk, "replaced", backup=self.backup(path)))
        disk.unlink()

    def remove_dir(self, path: str) -> None:
        """Remove a folder whose files were removed already, with its Python caches. A folder that
        still holds something else (skipped names: not this run's to remove) stays."""
        disk = self.disk(path)
        if any(not cache(p.relative_to(disk).parts) for p in disk.rglob("*") if not p.is_dir()):
            return
        self.changed("removed", path)
        if self.dry_run:
            return
        for leftover in disk.rglob("__pycache__"):
            shutil.rmtree(leftover)
        now = disk.lstat()
        disk.rmdir()
        self.journal.append(Undo(disk, "removed-dir", meta=(stat.S_IMODE(now.st_mode), now.st_uid, now.st_gid)))

    def remove_tree(self, path: str) -> None:
        """Remove a folder and everything in it, without a backup (--purge)."""
        disk = self.disk(path)
        if not disk.exists():
            return
        self.changed("removed", path, "and everything in it")
        if not self.dry_run:
            shutil.rmtree(disk)

    def mirror(
        self,
        dest: str,
        files: dict[str, Path],
        *,
        dir_mode: int,
        file_mode: int,
        owner: tuple[str, str],
        exec_mode: int | None = None,
        skip: Callable[[tuple[str, ...]], bool] = cache,
    ) -> None:
        """Make `dest` hold exactly `files` (relative path -> source); what it holds besides, other
        than skipped names, is backed up and removed."""
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
        # Deepest first, so that a folder is empty by the time its turn comes.
        for found in sorted(here.rglob("*"), reverse=True):
            relative = found.relative_to(here)
            if relative.as_posix() in files or skip(relative.parts):
                continue
            target = f"{dest}/{relative.as_posix()}"
            if found.is_dir() and not found.is_symlink():
                self.remove_dir(target)
            else:
                self.remove_file(target)

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
                self.chown_as(copy, original)
        source = self.disk(path)
        copy = base / path.lstrip("/")
        shutil.copy2(source, copy, follow_symlinks=False)
        self.chown_as(copy, source.lstat())
        return copy

    @staticmethod
    def chown_as(path: Path, original: os.stat_result) -> None:
        if os.geteuid() == 0:
            os.chown(path, original.st_uid, original.st_gid, follow_symlinks=False)

    def new_backup_dir(self) -> str:
        backups = self.disk(BACKUPS_DIR)
        if not backups.exists():
            backups.mkdir(0o700, parents=True)
            self.backups_created = True
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        for attempt in range(1, 100):
            name = stamp if attempt == 1 else f"{stamp}-{attempt}"
            try:
                (backups / name).mkdir(0o700)
            except FileExistsError:
                continue
            return f"{BACKUPS_DIR}/{name}"
        raise InstallError(f"cannot create a backup folder in {BACKUPS_DIR}")

    def restore(self) -> list[str]:
        """Undo every file change of this run, newest first; the problems met (none: all undone)."""
        problems = []
        for undo in reversed(self.journal):
            try:
                self.undo(undo)
            except OSError as error:
                problems.append(f"{undo.path}: {error}")
        self.journal.clear()
        if not problems and self.backup_dir is not None:
            # Everything is back in place: the copies are the files as they are now.
            shutil.rmtree(self.disk(self.backup_dir))
            if self.backups_created:
                self.disk(BACKUPS_DIR).rmdir()
            self.backup_dir = None
        return problems

    def undo(self, undo: Undo) -> None:
        path = undo.path
        if undo.kind == "created":
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)
        elif undo.kind == "replaced" and undo.backup is not None:
            temporary = path.with_name(f".{path.name}.restoring")
            temporary.unlink(missing_ok=True)
            shutil.copy2(undo.backup, temporary, follow_symlinks=False)
            self.chown_as(temporary, undo.backup.lstat())
            os.replace(temporary, path)
        elif undo.meta is not None:
            mode, uid, gid = undo.meta
            if undo.kind == "removed-dir":
                path.mkdir()
            path.chmod(mode)
            if os.geteuid() == 0:
                os.chown(path, uid, gid)

    def prune_backups(self) -> None:
        """Keep the newest KEEP_BACKUPS backup folders."""
        backups = self.disk(BACKUPS_DIR)
        if self.dry_run or not backups.is_dir():
            return
        folders = sorted((p for p in backups.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in folders[:-KEEP_BACKUPS]:
            shutil.rmtree(old)

    def write_record(self, title: str) -> Path | None:
        """Append this run's commands to the staged tree's record, for the target to run in order."""
        if not self.staged or self.dry_run or not self.commands:
            return None
        record = self.disk(STAGED_RECORD)
        if not record.exists():
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text(
                "# Commands for the server this tree was staged for, one block per deploy/install run,\n"
                "# oldest first. Run each block's commands in order, as root, once its files are in place.\n"
            )
        stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        with record.open("a") as file:
            file.write(f"\n# {stamp}: {title}\n" + "".join(f"{line}\n" for line in self.commands))
        return record


def preflight(server: Server, *, installing: bool) -> str:
    """What the run needs before it changes anything: every problem at once, or InstallError."""
    if server.staged:
        if server.root.resolve() == Path("/"):
            raise InstallError("--root / is this machine itself: run without --root to install here")
        if server.root.resolve().is_relative_to(layout.PROJECT_DIR):
            raise InstallError(f"--root {server.root} is inside the project, which is copied: pick a folder outside")
        if not server.dry_run:
            server.root.mkdir(parents=True, exist_ok=True)
        return f"staging for {layout.PLATFORM} under {server.root} (no account, service or package touched)"
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root: sudo deploy/install")
    if not shutil.which("systemctl"):
        problems.append("systemctl not found: the server must run systemd")
    nginx = find_nginx()
    if nginx is None:
        problems.append(f"nginx is not installed: {PLATFORM.install} nginx")
    if installing and importlib.util.find_spec("ensurepip") is None:
        problems.append(f"Python cannot create virtualenvs here: {PLATFORM.install} {PLATFORM.python}")
    if installing and certificate_pending(server) and not shutil.which("certbot"):
        epel = " (from EPEL)" if layout.PLATFORM == "rhel-9" else ""
        problems.append(f"certbot is not installed: {PLATFORM.install} certbot{epel}")
    if installing and layout.TLS_MODE == "existing":
        tls_files = {layout.TLS_CERTIFICATE: "certificate (full chain)", layout.TLS_CERTIFICATE_KEY: "key"}
        problems += [
            f"TLS: no {what} at {path}: put it there first"
            for path, what in tls_files.items()
            if not Path(path).exists()
        ]
    if layout.PLATFORM == "rhel-9" and selinux_enabled(server) and not shutil.which("semanage"):
        problems.append("semanage is missing (SELinux is on): dnf install policycoreutils-python-utils")
    if problems:
        raise InstallError("\n".join(f"  {problem}" for problem in problems).lstrip())
    found = []
    if nginx is not None and (version := server.run(nginx, "-v", query=True)) is not None:
        found.append(version.stderr.strip().removeprefix("nginx version: "))
    found.append(f"Python {sys.version.split()[0]}")
    here = this_platform()
    note = "" if here in (None, layout.PLATFORM) else f" (but this machine is {here})"
    return f"root, {', '.join(found)}, {layout.PLATFORM}{note}"


def certificate_pending(server: Server) -> bool:
    """Let's Encrypt without a certificate yet: the challenge site first, then certbot, then the site.
    A staged tree has no certificate: its first staging records that sequence for the target."""
    if layout.TLS_MODE != "letsencrypt" or layout.NGINX_ACME_SITE is None:
        return False
    if server.staged:
        return not server.installed_before
    return not Path(layout.TLS_CERTIFICATE).exists()


def selinux_enabled(server: Server) -> bool:
    """SELinux on a RHEL server: asked with selinuxenabled; a staged RHEL tree assumes it (the default)."""
    if layout.PLATFORM != "rhel-9":
        return False
    if server.staged:
        return True
    if not shutil.which("selinuxenabled"):
        return False
    result = server.run("selinuxenabled", query=True, check=False)
    return result is not None and result.returncode == 0


def nginx_command(server: Server) -> str:
    """nginx as the target finds it: by name in a staged tree, else where this machine has it."""
    return "nginx" if server.staged else find_nginx() or "nginx"


def fcontext_spec(folder: str) -> str:
    """semanage's regular expression for a folder and everything in it."""
    return folder.replace(".", r"\.") + "(/.*)?"


class Install:
    """deploy/install: the steps, in order, and the way back when one fails."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.code_changed = self.requirements_changed = self.units_changed = False
        self.site_changed = self.public_changed = self.venv_updated = False
        # What activation did, so that a failure can undo it.
        self.daemon_reloaded = False
        self.enabled: list[str] = []
        self.started: list[str] = []
        self.refreshed: list[str] = []
        self.refresh = ""
        self.nginx_reloaded = False
        self.acme_first = certificate_pending(server)

    def steps(self) -> list[tuple[str, Callable[[], str | None]]]:
        return [
            ("user", self.user),
            ("dirs", self.dirs),
            ("env", self.env_file),
            ("app", self.app),
            ("venv", self.venv),
            ("static", self.static),
            ("errors", self.errors),
            ("systemd", self.units),
            ("nginx", self.site),
            ("selinux", self.selinux),
            ("validate", self.validate),
            ("activate", self.activate),
            ("https", self.certificate),
            ("health", self.health),
        ]

    def run(self) -> int:
        server = self.server
        try:
            server.step(preflight(server, installing=True))
        except InstallError as error:
            print(f"preflight: FAILED: {error}\ninstall: nothing changed", flush=True)
            return 1
        try:
            for name, step in self.steps():
                server.step_name = name
                result = step()
                if result is not None:
                    server.step(result)
        except (Exception, KeyboardInterrupt) as error:
            server.flush()
            reason = str(error) if isinstance(error, InstallError) else f"{type(error).__name__}: {error}"
            failed = server.step_name
            print(f"{failed}: FAILED: {reason}", flush=True)
            self.roll_back()
            first_line = reason.splitlines()[0].rstrip(":") if reason else type(error).__name__
            back = "the previous version is back in place" if server.installed_before else "nothing installed"
            print(f"install: failed at {failed}: {first_line}; rolled back, {back}", flush=True)
            return 1
        self.finish()
        return 0

    # Steps --------------------------------------------------------------------------------------
    def user(self) -> str:
        server = self.server
        name = layout.SERVICE_USER
        if server.user_exists():
            return f"{name} exists"
        group_exists = not server.staged and self.group_exists(name)
        server.run(
            "useradd",
            "--system",
            *(["--gid", name] if group_exists else ["--user-group"]),
            "--no-create-home",
            "--home-dir",
            layout.INSTALL_DIR,
            "--shell",
            NOLOGIN,
            name,
        )
        what = f"{name} (system user and group, no login shell, home {layout.INSTALL_DIR})"
        if server.staged or server.dry_run:
            return f"useradd {server.outcome()} for {what}"
        return f"created {what}"

    @staticmethod
    def group_exists(name: str) -> bool:
        try:
            grp.getgrnam(name)
        except KeyError:
            return False
        return True

    def dirs(self) -> str:
        server = self.server
        since = server.mark()
        # nginx passes through the install folder to static/ and errors/; it cannot list app/.
        server.ensure_dir(layout.INSTALL_DIR, 0o755, ROOT)
        server.ensure_dir(layout.APP_DIR, 0o750, SERVICE_READS)
        server.ensure_dir(layout.STATIC_ROOT, 0o755, ROOT)
        server.ensure_dir(layout.ERRORS_ROOT, 0o755, ROOT)
        if layout.TLS_MODE == "letsencrypt":
            server.ensure_dir(layout.ACME_ROOT, 0o755, ROOT)
        # systemd reads the env file as root; the service itself never opens it.
        server.ensure_dir(ENV_DIR, 0o750, ROOT)
        return server.summary(since)

    def env_file(self) -> str:
        server = self.server
        disk = server.disk(layout.ENV_FILE)
        if disk.exists():
            mode = stat.S_IMODE(disk.stat().st_mode)
            warning = "" if mode == 0o600 else f"; WARNING: mode {mode:04o}, it holds secrets: chmod 0600 {disk}"
            return f"{layout.ENV_FILE} kept (never overwritten){warning}"
        from_project = layout.ENV_SOURCE.exists()
        content = layout.ENV_SOURCE.read_bytes() if from_project else ENV_TEMPLATE.encode()
        server.ensure_file(layout.ENV_FILE, content, 0o600, ROOT, create_only=True)
        origin = f"from {layout.ENV_SOURCE.name}" if from_project else "settings commented out"
        return f"{layout.ENV_FILE} {'to create' if server.dry_run else 'created'} (0600, {origin})"

    def app(self) -> str:
        server = self.server
        since = server.mark()
        skip = app_skips(layout.PROJECT_DIR)
        server.mirror(
            layout.APP_DIR,
            tree(layout.PROJECT_DIR, skip),
            dir_mode=0o750,
            file_mode=0o640,
            exec_mode=0o750,
            owner=SERVICE_READS,
            skip=skip,
        )
        written = [(verb, path) for verb, path in server.changes[since:] if verb != "fixed"]
        deploy_dir = f"{layout.APP_DIR}/deploy/"
        self.code_changed = any(
            path.startswith(layout.APP_DIR + "/") and not path.startswith(deploy_dir) for _, path in written
        )
        self.requirements_changed = any(path == REQUIREMENTS for _, path in written)
        if server.staged and server.changes[since:]:
            # A staged tree cannot hold the target's accounts: the ownership is one more command.
            server.run("chown", "-R", f"root:{layout.SERVICE_USER}", layout.APP_DIR)
        return server.summary(since, layout.APP_DIR)

    def venv(self) -> str:
        server = self.server
        has_gunicorn = server.disk(f"{layout.VENV_DIR}/bin/gunicorn").exists()
        if not self.requirements_changed and (server.staged or has_gunicorn):
            return f"{layout.VENV_DIR} up to date (requirements.txt unchanged)"
        python = PLATFORM.venv_python if server.staged else sys.executable
        result = server.run("env", f"PYTHON={python}", SETUP_VENV, layout.VENV_DIR)
        if result is None:
            return f"{layout.VENV_DIR}: deploy/setup-venv {server.outcome()}"
        self.venv_updated = True
        said = result.stdout.strip().splitlines()
        return f"{layout.VENV_DIR}: {said[-1] if said else 'ready'}"

    def static(self) -> str:
        server = self.server
        since = server.mark()
        if layout.STATIC_SOURCE is not None:
            server.mirror(layout.STATIC_ROOT, tree(layout.STATIC_SOURCE), dir_mode=0o755, file_mode=0o644, owner=ROOT)
        elif layout.FRAMEWORK == "django":
            return self.collectstatic()
        self.public_changed |= server.mark() > since
        return server.summary(since, layout.STATIC_ROOT)

    def collectstatic(self) -> str:
        """Django gathers its static files; they reach STATIC_ROOT through the same mirror (backed up,
        compared) from a scratch folder."""
        server = self.server
        command = [VENV_PYTHON, f"{layout.APP_DIR}/manage.py", "collectstatic", "--noinput"]
        if server.staged or server.dry_run:
            if server.staged and not (self.code_changed or self.requirements_changed):
                return "unchanged (no code change)"
            # On the target, with the env file's settings and straight into STATIC_ROOT.
            server.run("sh", "-c", f"set -a && . {shlex.quote(layout.ENV_FILE)} && exec {shlex.join(command)}")
            return f"manage.py collectstatic {server.outcome()}"
        since = server.mark()
        with tempfile.TemporaryDirectory(prefix=f"{layout.SLUG}-static-") as scratch:
            os.chmod(scratch, 0o755)
            env = {
                **read_env_file(server.disk(layout.ENV_FILE)),
                "DJANGO_STATIC_ROOT": scratch,
                "PYTHONDONTWRITEBYTECODE": "1",
            }
            server.run(*command, query=True, env=env)  # writes to the scratch folder only
            server.mirror(layout.STATIC_ROOT, tree(Path(scratch)), dir_mode=0o755, file_mode=0o644, owner=ROOT)
        self.public_changed |= server.mark() > since
        return f"collectstatic: {server.summary(since, layout.STATIC_ROOT)}"

    def errors(self) -> str:
        server = self.server
        since = server.mark()
        server.mirror(layout.ERRORS_ROOT, tree(layout.ERROR_PAGES), dir_mode=0o755, file_mode=0o644, owner=ROOT)
        self.public_changed |= server.mark() > since
        return server.summary(since, layout.ERRORS_ROOT)

    def units(self) -> str:
        server = self.server
        since = server.mark()
        for name in UNIT_FILES:
            content = (layout.SYSTEMD_DIR / name).read_bytes()
            server.ensure_file(f"{layout.SYSTEMD_UNIT_DIR}/{name}", content, 0o644, ROOT)
        self.units_changed = server.mark() > since
        return server.summary(since, layout.SYSTEMD_UNIT_DIR)

    def site(self) -> str:
        server = self.server
        since = server.mark()
        # Until its first certificate exists, an HTTPS site cannot pass nginx -t: the challenge site
        # stands in for it (a staged tree gets the real site; its record swaps them on the target).
        first = layout.NGINX_ACME_SITE if self.acme_first and not server.staged else None
        server.ensure_file(layout.NGINX_SITE_PATH, (first or layout.NGINX_SITE).read_bytes(), 0o644, ROOT)
        server.mirror(
            layout.NGINX_SNIPPETS_DIR, tree(layout.NGINX_SNIPPETS), dir_mode=0o755, file_mode=0o644, owner=ROOT
        )
        if layout.NGINX_SITE_LINK:
            link_dir = str(PurePosixPath(layout.NGINX_SITE_LINK).parent)
            server.ensure_link(layout.NGINX_SITE_LINK, os.path.relpath(layout.NGINX_SITE_PATH, link_dir))
        if layout.TLS_MODE == "letsencrypt" and CERTBOT_HOOK_SOURCE.exists():
            server.ensure_file(CERTBOT_HOOK, CERTBOT_HOOK_SOURCE.read_bytes(), 0o755, ROOT)
        self.site_changed = server.mark() > since
        result = server.summary(since)
        return result + (f" (challenge site until the certificate exists: {first.name})" if first else "")

    def selinux(self) -> str | None:
        """RHEL: nginx may read the static and error pages (httpd_sys_content_t) and, over TCP, connect
        to gunicorn (httpd_can_network_connect)."""
        server = self.server
        if layout.PLATFORM != "rhel-9":
            return None
        if not selinux_enabled(server):
            return "not enabled: nothing to label"
        done = []
        listed = server.run("semanage", "fcontext", "--list", "--locallist", query=True)
        added = False
        for folder in NGINX_READS:
            spec = fcontext_spec(folder)
            known = spec in listed.stdout if listed is not None else server.installed_before
            if not known:
                server.run("semanage", "fcontext", "--add", "--type", "httpd_sys_content_t", spec)
                added = True
        if added:
            done.append(f"labelled {', '.join(NGINX_READS)} httpd_sys_content_t")
        if added or self.public_changed:
            server.run("restorecon", "-R", *NGINX_READS)
            done.append("restorecon")
        if layout.BIND == "tcp":
            boolean = server.run("getsebool", "httpd_can_network_connect", query=True)
            on = boolean.stdout.strip().endswith("on") if boolean is not None else server.installed_before
            if not on:
                server.run("setsebool", "-P", "httpd_can_network_connect", "1")
                done.append("httpd_can_network_connect on (nginx connects to gunicorn over TCP)")
        return f"{'; '.join(done)} ({server.outcome()})" if done else "labels in place"

    def files_changed(self) -> bool:
        return bool(self.server.changes)

    def validate(self) -> str:
        server = self.server
        if not self.files_changed():
            return "nothing changed, nothing to validate"
        if server.dry_run:
            return "skipped (dry run: nothing was placed to validate)"
        if server.staged:
            return self.validate_staged()
        return self.validate_live()

    def validate_staged(self) -> str:
        """The staged files, by the staged copy of deploy/check (nginx -t on the site in a scratch
        prefix, systemd-analyze on the units, ...); the target's own nginx -t is recorded."""
        check = self.server.disk(f"{layout.APP_DIR}/deploy/check")
        # Runs here, on the staged files: nothing of the target's system is involved.
        result = subprocess.run(
            [sys.executable, "-B", str(check)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        lines = result.stdout.splitlines()
        if result.returncode:
            failed = [line for line in lines if not line.startswith(("ok ", "skip ", "all checks"))]
            summaries = [line.split(maxsplit=2)[-1] for line in failed if line.startswith("FAIL ")]
            raise InstallError(
                f"deploy/check rejects the staged files: {'; '.join(summaries) or 'see below'}\n"
                + indent("\n".join(failed))
            )
        verdicts = ", ".join(f"{m[2]} {m[1]}" for m in map(CHECK_LINE.match, lines) if m)
        self.record_live_checks()
        return f"deploy/check passed on the staged files ({verdicts}); nginx -t and systemd-analyze verify recorded"

    def record_live_checks(self) -> None:
        if self.acme_first and layout.NGINX_ACME_SITE is not None:
            # The target has no certificate yet: its nginx -t and first reload use the challenge site.
            self.server.run("install", "-m", "0644", self.app_copy(layout.NGINX_ACME_SITE), layout.NGINX_SITE_PATH)
        self.server.run(nginx_command(self.server), "-t")
        self.server.run("systemd-analyze", "verify", "--man=no", *self.units_to_verify())

    @staticmethod
    def units_to_verify() -> list[str]:
        """The active units (instances of templates), then any other unit the project has."""
        return list(dict.fromkeys([*layout.ACTIVE_UNITS, *(u for u in UNIT_FILES if "@." not in u)]))

    def validate_live(self) -> str:
        """The new files in place, before anything is reloaded: nginx -t with every site of this
        nginx, systemd-analyze verify on the units, gunicorn --check-config as the service's user."""
        server = self.server
        result = server.run(nginx_command(server), "-t", check=False)
        assert result is not None
        ours = (layout.NGINX_SITE_PATH, layout.NGINX_SNIPPETS_DIR, layout.DOMAIN)
        warnings = [line for line in result.stderr.splitlines() if "[warn]" in line and any(s in line for s in ours)]
        if result.returncode or warnings:
            raise InstallError("nginx -t rejects the configuration with the new site:\n" + indent(result.stderr))
        units = self.units_to_verify()
        result = server.run("systemd-analyze", "verify", "--man=no", *units, check=False)
        assert result is not None
        names = {unit_file(unit) for unit in units} | set(units)
        findings = [line for line in (result.stdout + result.stderr).splitlines() if any(n in line for n in names)]
        if result.returncode or findings:
            said = "\n".join(findings) or result.stdout + result.stderr
            raise InstallError("systemd-analyze verify rejects the units:\n" + indent(said))
        env = {**read_env_file(Path(layout.ENV_FILE)), "PYTHONDONTWRITEBYTECODE": "1"}
        result = server.run(
            "setpriv",
            f"--reuid={layout.SERVICE_USER}",
            f"--regid={layout.SERVICE_USER}",
            "--init-groups",
            f"{layout.VENV_DIR}/bin/gunicorn",
            "--check-config",
            "--chdir",
            layout.APP_DIR,
            "--config",
            f"{layout.APP_DIR}/{layout.GUNICORN_CONF.name}",
            env=env,
            check=False,
        )
        assert result is not None
        if result.returncode:
            raise InstallError(
                f"gunicorn --check-config cannot load {layout.APP} as {layout.SERVICE_USER}:\n"
                + indent(result.stdout + result.stderr)
            )
        return f"nginx -t, systemd-analyze verify ({', '.join(units)}) and gunicorn --check-config passed"

    def activate(self) -> str:
        server = self.server
        done = []
        if self.units_changed:
            server.run("systemctl", "daemon-reload")
            self.daemon_reloaded = True
            done.append("daemon-reload")
        units = dict.fromkeys([*layout.ACTIVE_UNITS, *layout.APP_SERVICES])
        was_active = {unit: server.unit_is("active", unit) for unit in units}
        self.enabled = [unit for unit in layout.ACTIVE_UNITS if not server.unit_is("enabled", unit)]
        if self.enabled:
            server.run("systemctl", "enable", *self.enabled)
            done.append(f"enable {' '.join(self.enabled)}")
        self.started = [unit for unit in layout.ACTIVE_UNITS if not was_active[unit]]
        if self.started:
            server.run("systemctl", "start", *self.started)
            done.append(f"start {' '.join(self.started)}")
        # Units that changed need a restart to apply; new code alone, a graceful reload (HUP: new
        # workers start, the old ones finish their requests). One service at a time, each healthy
        # again before the next.
        self.refresh = "restart" if self.units_changed else "reload" if self.code_changed or self.venv_updated else ""
        if self.refresh:
            for service, upstream in zip(layout.APP_SERVICES, layout.UPSTREAM_SERVERS, strict=False):
                if not was_active[service]:
                    continue
                server.run("systemctl", self.refresh, service)
                self.refreshed.append(service)
                if not (server.staged or server.dry_run) and not wait_healthy(upstream):
                    raise InstallError(
                        f"{service} did not answer {layout.HEALTH_PATH} on {upstream} after {self.refresh}"
                    )
            if self.refreshed:
                how = "graceful" if self.refresh == "reload" else "unit changed"
                order = ", one at a time" if len(self.refreshed) > 1 else ""
                done.append(f"{self.refresh} {' '.join(self.refreshed)} ({how}{order})")
        if not server.unit_is("enabled", NGINX_SERVICE):
            server.run("systemctl", "enable", NGINX_SERVICE)
            done.append(f"enable {NGINX_SERVICE}")
        if self.site_changed or not server.unit_is("active", NGINX_SERVICE):
            # Validated above with nginx -t; a running nginx reloads gracefully, a stopped one starts.
            server.run("systemctl", "reload-or-restart", NGINX_SERVICE)
            self.nginx_reloaded = True
            done.append("reload nginx")
        if not done:
            return "nothing to do (units enabled and running, nginx up to date)"
        return f"{'; '.join(done)} ({server.outcome()})"

    @staticmethod
    def app_copy(path: Path) -> str:
        """Where a file of the project is on the server, once copied into APP_DIR."""
        return f"{layout.APP_DIR}/{path.relative_to(layout.PROJECT_DIR).as_posix()}"

    def certificate(self) -> str | None:
        """Let's Encrypt's first certificate, through the challenge site nginx now serves; then the
        HTTPS site replaces it, checked by nginx -t before nginx reloads."""
        if not self.acme_first:
            return None
        server = self.server
        server.run(
            "certbot", "certonly", "--webroot", "--webroot-path", layout.ACME_ROOT, "--domain", layout.DOMAIN,
            "--email", layout.TLS_EMAIL, "--agree-tos", "--non-interactive",
        )  # fmt: skip
        if server.staged:
            server.run("install", "-m", "0644", self.app_copy(layout.NGINX_SITE), layout.NGINX_SITE_PATH)
        else:
            server.ensure_file(layout.NGINX_SITE_PATH, layout.NGINX_SITE.read_bytes(), 0o644, ROOT)
        result = server.run(nginx_command(server), "-t", check=False)
        if result is not None and result.returncode:
            raise InstallError("nginx -t rejects the HTTPS site with the new certificate:\n" + indent(result.stderr))
        server.run("systemctl", "reload", NGINX_SERVICE)
        self.nginx_reloaded = True
        if server.staged or server.dry_run:
            return f"certbot certonly, then the HTTPS site in place of the challenge site ({server.outcome()})"
        return f"certificate for {layout.DOMAIN} from Let's Encrypt; HTTPS site in place, nginx reloaded"

    def health(self) -> str:
        server = self.server
        if server.staged:
            return "skipped (--root: nothing runs in a staged tree)"
        if server.dry_run:
            return "skipped (dry run)"
        seconds = wait_for_health()
        return f"{health_url()} answered 200 in {seconds:.1f}s"

    # The way back -------------------------------------------------------------------------------
    def roll_back(self) -> None:
        server = self.server
        if server.dry_run:
            return
        undone = Counter(undo.kind for undo in server.journal)
        # Units started by this run had no previous version to fall back to.
        if self.started or self.enabled:
            units = list(dict.fromkeys([*reversed(self.started), *reversed(self.enabled)]))
            server.run("systemctl", "disable", "--now", *units, check=False)
        problems = server.restore()
        if self.daemon_reloaded:
            server.run("systemctl", "daemon-reload", check=False)
        if self.venv_updated and server.disk(REQUIREMENTS).exists():
            # The previous requirements.txt pins the previous packages.
            server.run("env", f"PYTHON={sys.executable}", SETUP_VENV, layout.VENV_DIR, check=False)
        for service in self.refreshed:
            server.run("systemctl", self.refresh, service, check=False)
        if self.nginx_reloaded:
            server.run("systemctl", "reload-or-restart", NGINX_SERVICE, check=False)
        server.step_name = "rollback"
        restored = undone["replaced"] + undone["meta"] + undone["removed-dir"]
        result = f"{restored} restored from backup, {undone['created']} created by this run removed"
        if problems:
            result += "; NOT restored (copies kept in the backup folder):\n" + indent("\n".join(problems))
        elif not server.staged and (self.refreshed or self.started or self.nginx_reloaded):
            status = health_status()
            result += f"; {layout.HEALTH_PATH} now answers {status or 'nothing'}"
        server.step(result)

    def finish(self) -> None:
        server = self.server
        server.prune_backups()
        record = server.write_record("deploy/install")
        files, commands = len(server.changes), len(server.commands)
        if not files and not commands:
            print("install: nothing changed" if not server.dry_run else "install: nothing would change", flush=True)
            return
        counts = f"{files} file change(s), {commands} command(s)"
        if server.dry_run:
            print(f"install: dry run, nothing changed; a real run would make {counts}", flush=True)
        elif server.staged:
            print(f"install: staged under {server.root}: {counts} recorded in {record}", flush=True)
        else:
            backup = f"; replaced files backed up in {server.backup_dir}" if server.backup_dir else ""
            print(f"install: done: {counts}{backup}", flush=True)


class Uninstall:
    """deploy/install --uninstall [--purge]: the site, then the units; with --purge, everything."""

    def __init__(self, server: Server) -> None:
        self.server = server
        server.keep_backups = not server.options.purge

    def run(self) -> int:
        server = self.server
        try:
            server.step(preflight(server, installing=False))
        except InstallError as error:
            print(f"preflight: FAILED: {error}\nuninstall: nothing changed", flush=True)
            return 1
        steps = [("nginx", self.site), ("systemd", self.units), ("purge", self.purge)]
        try:
            for name, step in steps:
                server.step_name = name
                server.step(step())
        except (Exception, KeyboardInterrupt) as error:
            server.flush()
            reason = str(error) if isinstance(error, InstallError) else f"{type(error).__name__}: {error}"
            print(f"{server.step_name}: FAILED: {reason}", flush=True)
            problems = server.restore()
            print(
                f"uninstall: stopped at {server.step_name}; files restored{' except: ' if problems else ''}"
                + "; ".join(problems),
                flush=True,
            )
            return 1
        server.prune_backups()
        record = server.write_record("deploy/install --uninstall" + (" --purge" if server.options.purge else ""))
        if not server.changes and not server.commands:
            print("uninstall: nothing to remove", flush=True)
        elif server.dry_run:
            print("uninstall: dry run, nothing changed", flush=True)
        else:
            where = f"; commands recorded in {record}" if record else ""
            print(f"uninstall: done: {len(server.changes)} file change(s), {len(server.commands)} command(s){where}")
        return 0

    def site(self) -> str:
        """Out of nginx first, so that no request reaches a service that is going away."""
        server = self.server
        since = server.mark()
        if layout.NGINX_SITE_LINK:
            server.remove_file(layout.NGINX_SITE_LINK)
        server.remove_file(layout.NGINX_SITE_PATH)
        snippets = server.disk(layout.NGINX_SNIPPETS_DIR)
        if snippets.is_dir():
            server.mirror(layout.NGINX_SNIPPETS_DIR, {}, dir_mode=0o755, file_mode=0o644, owner=ROOT)
            server.remove_dir(layout.NGINX_SNIPPETS_DIR)
        # The renewal hook only reloads nginx; the certificate itself stays with certbot.
        server.remove_file(CERTBOT_HOOK)
        if server.mark() == since:
            return "site not installed"
        result = server.run(nginx_command(server), "-t", check=False)
        if result is not None and result.returncode:
            raise InstallError("nginx -t fails without the site:\n" + indent(result.stderr))
        if server.unit_is("active", NGINX_SERVICE):
            server.run("systemctl", "reload", NGINX_SERVICE)
        return f"{server.summary(since)}; nginx -t and reload without the site {server.outcome()}"

    def units(self) -> str:
        server = self.server
        placed = [name for name in UNIT_FILES if server.disk(f"{layout.SYSTEMD_UNIT_DIR}/{name}").exists()]
        running = [
            unit
            for unit in reversed(layout.ACTIVE_UNITS)
            if unit_file(unit) in placed and (server.unit_is("enabled", unit) or server.unit_is("active", unit))
        ]
        if running:
            server.run("systemctl", "disable", "--now", *running)
        since = server.mark()
        for name in placed:
            server.remove_file(f"{layout.SYSTEMD_UNIT_DIR}/{name}")
        if placed:
            server.run("systemctl", "daemon-reload")
        if not placed and not running:
            return "units not installed"
        stopped = f"stop and disable {' '.join(running)} {server.outcome()}" if running else "no unit running"
        return f"{stopped}; unit files {server.summary(since)}"

    def purge(self) -> str:
        server = self.server
        kept = f"{layout.INSTALL_DIR} (app, venv, static, backups), {layout.ENV_FILE} and user {layout.SERVICE_USER}"
        if not server.options.purge:
            return f"kept {kept}; --purge removes them"
        since = server.mark()
        server.remove_tree(layout.INSTALL_DIR)
        server.remove_tree(ENV_DIR)
        if selinux_enabled(server):
            listed = server.run("semanage", "fcontext", "--list", "--locallist", query=True)
            for folder in NGINX_READS:
                spec = fcontext_spec(folder)
                if (spec in listed.stdout) if listed is not None else server.installed_before:
                    server.run("semanage", "fcontext", "--delete", spec)
        if server.user_exists():
            server.run("userdel", layout.SERVICE_USER)
        if server.mark() == since and not server.commands:
            return "nothing left to purge"
        return f"{'would remove' if server.dry_run else 'removed'} {kept}"


def install(options: Options) -> int:
    os.umask(0o022)
    return Install(Server(options)).run()


def uninstall(options: Options) -> int:
    os.umask(0o022)
    return Uninstall(Server(options)).run()
