"""The target of a run: this machine (live), a staged tree (--root DIR), or either one in a dry run.

The steps of deploy/install and of --uninstall are the same for every target; what differs is
where their effects go, and that is decided here and nowhere else:

| | files | commands that change the system | queries | the project's code |
| --- | --- | --- | --- | --- |
| Live | written | run | run | runs (gunicorn --check-config, health) |
| Staged | written under DIR | recorded in DIR for the server | not answered | does not run |
| dry run of either | not written | shown | as the target | does not run |
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import layout
from ..envfile import read_env_file
from ..nginx import find_nginx
from ..probe import probe
from ..rolling import wait_healthy
from .common import (
    AS_SERVICE,
    NGINX_SERVICE,
    ROOT,
    STAGED_RECORD,
    UNIT_FILES,
    Account,
    InstallError,
    Owner,
    describe,
    indent,
    unit_file,
)
from .ledger import Manifest
from .options import Options
from .platform import RHEL
from .releases import VENV_STAMP
from .report import Done, Report
from .roles import Role

Result = subprocess.CompletedProcess[str]
# A worker that has just started may still be importing the app: its first answer can take this long.
HEALTH_ANSWER_SECONDS = 30
# Longer than gunicorn's graceful_timeout: an old worker finishing a slow request leaves by then.
REPLACED_SECONDS = 60
# A release's files: readable by the service's group, never writable by it.
RELEASE_DIR_MODE, RELEASE_FILE_MODE, RELEASE_EXEC_MODE = 0o750, 0o640, 0o750


class Target:
    """Effects common to every target; subclasses say where they go."""

    writes = True  # files are written (not in a dry run)
    # Commands are recorded for the server to run later, in order (--root): the tree shows the
    # final state and the record holds the steps in between.
    defers = False
    # Why the project's own code (and the services) cannot run here, or None when they can.
    no_run_reason: str | None = None
    run_verb = "run:"

    def __init__(self, options: Options, report: Report) -> None:
        self.options = options
        self.report = report
        self.root = options.root or Path("/")
        self.done = Done()  # what this run changed and ran: what its steps decide from
        self.manifest = Manifest()  # what an earlier run installed, once read
        self.role = Role()  # what this machine is for, once the manifest is read (roles.py)
        self.observe()

    def observe(self) -> None:
        """Whether an install was there before this run, and which of its units (once an
        interrupted run is undone, again)."""
        # (os.path: a tree this user cannot read counts as empty; preflight says why it is refused.)
        # A load balancer has no app folder (unless Django's): its manifest tells.
        self.installed_before = os.path.isdir(self.disk(layout.APP_DIR)) or bool(self.manifest.paths)
        self.units_before = {
            name
            for name in [*UNIT_FILES, *layout.METRICS_UNITS]
            if os.path.exists(self.disk(f"{layout.SYSTEMD_UNIT_DIR}/{name}"))
        }

    def disk(self, path: str) -> Path:
        """Where a server path is on this machine's disk (under the staged tree with --root)."""
        return self.root / path.lstrip("/")

    def run(self, *command: str, env: dict[str, str] | None = None, check: bool = True) -> Result | None:
        """A command that changes the system: the one place where one starts. None: it did not run
        here (recorded or shown). `env` adds variables without showing them (secrets)."""
        line = shlex.join(command)
        self.done.commands.append(line)
        self.report.action(self.run_verb, line)
        return self.execute(command, env, check)

    def changed(self, verb: str, path: str, detail: str = "") -> None:
        """A path this run created, updated, fixed or removed (or would): recorded, and shown."""
        self.done.changes.append((verb, path))
        self.report.changed(verb, path, detail)

    def query(self, *command: str, env: dict[str, str] | None = None, check: bool = True) -> Result | None:
        """A command that only reads (also in a dry run); None where the target cannot answer."""
        return self.execute(command, env, check)

    def execute(self, command: tuple[str, ...], env: dict[str, str] | None, check: bool) -> Result | None:
        # From /, like a unit: the operator's folder (a home the service cannot enter) must not matter.
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, env={**os.environ, **env} if env else None, cwd="/"
        )
        if check and result.returncode:
            said = indent(result.stdout + result.stderr) or "    (no output)"
            raise InstallError(f"{shlex.join(command)} failed with status {result.returncode}:\n{said}")
        return result

    def outcome(self) -> str:
        """What became of this run's commands, for a step's line."""
        return "done"

    def wait_healthy(self, upstream: str) -> bool:
        return wait_healthy(upstream)

    def workers(self, service: str) -> set[int]:
        """The processes gunicorn's master of `service` has started (its workers) right now."""
        return set()

    def health_of(self, upstream: str) -> int | None:
        """The status one gunicorn answers for /healthz (waiting for a booting worker), or None."""
        return None

    def wait_gone(self, pids: set[int], seconds: float) -> bool:
        """Whether every process of `pids` has ended within `seconds`."""
        return True

    def record(self, title: str) -> Path | None:
        """Keep this run's commands for later (a staged tree's record); where, or None."""
        return None

    def journal(self, fields: list[tuple[str, str]]) -> None:
        """An entry in the system's journal, with fields of its own (`logger --journald`); a field
        may come more than once. Only where the services run: a staged tree has no journal."""
        if self.no_run_reason:
            return
        text = "".join(f"{name}={value.replace(chr(10), ' ')}\n" for name, value in fields)
        # The deploy goes on without it: a record of the deploy is not the deploy.
        subprocess.run(["logger", "--journald"], input=text, text=True, check=False, capture_output=True)

    def append_log(self, path: str, line: str) -> None:
        """One line at the end of a log of the installer's (metrics: the deploys mtail counts), if
        the file is there (the nginx step made it, with its owner and mode; a failed first run
        removed it again). Only where the services run, like the journal; a deploy goes on
        without it."""
        if self.no_run_reason:
            return
        with contextlib.suppress(OSError):
            log = os.open(self.disk(path), os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
            try:
                os.write(log, (line + "\n").encode())
            finally:
                os.close(log)

    def write_release(self, path: str, files: dict[str, Path], venv_link: str, owner: Owner) -> int:
        """Write a release folder whole: into a hidden folder beside it, renamed into place once
        complete. What an interrupted run left half-written is removed first. The number of files."""
        disk = self.disk(path)
        partial = disk.with_name(f".{disk.name}.partial")
        if partial.is_dir() and not partial.is_symlink():
            shutil.rmtree(partial)
        ids = self.ids(owner)
        partial.mkdir(RELEASE_DIR_MODE)
        count = 0
        for relative, source in files.items():
            placed = partial / relative
            if source.is_dir():
                placed.mkdir(RELEASE_DIR_MODE)
                placed.chmod(RELEASE_DIR_MODE)
            else:
                mode = RELEASE_EXEC_MODE if os.access(source, os.X_OK) else RELEASE_FILE_MODE
                descriptor = os.open(placed, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with open(descriptor, "wb") as file:
                    file.write(source.read_bytes())
                    os.fchmod(descriptor, mode)
                count += 1
            if ids:
                os.chown(placed, *ids)
        (partial / "venv").symlink_to(venv_link)
        partial.chmod(RELEASE_DIR_MODE)
        if ids:
            os.chown(partial, *ids)
            os.chown(partial / "venv", *ids, follow_symlinks=False)
        os.rename(partial, disk)
        self.changed("created", path, f"(the release: {count} files, {describe(owner, RELEASE_DIR_MODE)})")
        return count

    def repoint(self, disk: Path, target: str) -> None:
        """Replace the link `disk` with one to `target`, in one rename."""
        self.changed("updated", str(disk), f"-> {target}")
        temporary = disk.with_name(f".{disk.name}.installing")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target)
        os.replace(temporary, disk)

    @contextlib.contextmanager
    def serving(self, release: str, address: str | None = None, workers: int | None = None) -> Iterator[Serving | None]:
        """`release` served by a gunicorn of its own for the length of a block, as the service's
        user with its settings, outside its units: on `address`, or on a socket in a private folder.
        `workers`: that many instead of the configured number. None where the project's code does not
        run (staged, dry run)."""
        yield None

    # What each target answers in its own way ----------------------------------------------------
    venv_python: str  # the interpreter setup-venv builds the venv with

    def accounts(self) -> dict[str, Account]:
        raise NotImplementedError

    def groups(self) -> dict[str, tuple[int, list[str]]]:
        """Group name -> gid and members."""
        raise NotImplementedError

    def user_exists(self, name: str) -> bool:
        return name in self.accounts()

    def group_exists(self, name: str) -> bool:
        return name in self.groups()

    def unit_is(self, state: str, unit: str) -> bool:
        raise NotImplementedError

    def ids(self, owner: Owner) -> tuple[int, int] | None:
        raise NotImplementedError

    def selinux_enabled(self) -> bool:
        raise NotImplementedError

    def nginx_command(self) -> str:
        raise NotImplementedError

    def certificate_missing(self) -> bool:
        raise NotImplementedError

    def venv_ready(self, path: str, known: bool) -> bool:
        """Whether the venv at `path` is built (`known`: a release in the log uses it)."""
        raise NotImplementedError

    def python_version(self) -> str:
        """The Python the venvs are built with, as their key names it."""
        raise NotImplementedError

    def own_tree(self, path: str, owner: Owner) -> None:
        raise NotImplementedError

    def finished(self, counts: str, backup_dir: str | None, record: Path | None) -> str:
        raise NotImplementedError


@dataclass
class Serving:
    """A gunicorn that deploy/install started itself (Target.serving)."""

    address: str
    process: subprocess.Popen[bytes]
    log: Path

    def health(self) -> int | None:
        """Its /healthz status (None: no answer yet); InstallError once it has exited."""
        if self.process.poll() is not None:
            said = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise InstallError(
                f"the new release's gunicorn exited with status {self.process.returncode} before it answered"
                f" {layout.HEALTH_PATH}:\n{indent(said) or '    (no output)'}"
            )
        answer = probe(self.address, layout.DOMAIN, layout.HEALTH_PATH, timeout=HEALTH_ANSWER_SECONDS)
        return answer.status if answer is not None else None

    def stop(self) -> None:
        """SIGTERM: gunicorn lets its workers finish their requests."""
        self.process.terminate()
        try:
            self.process.wait(timeout=REPLACED_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Live(Target):
    """This machine: files written in place, commands run, the system asked."""

    venv_python = sys.executable

    def accounts(self) -> dict[str, Account]:
        return {e.pw_name: Account(e.pw_name, e.pw_uid, e.pw_gid, e.pw_dir, e.pw_shell) for e in pwd.getpwall()}

    def groups(self) -> dict[str, tuple[int, list[str]]]:
        return {e.gr_name: (e.gr_gid, list(e.gr_mem)) for e in grp.getgrall()}

    def unit_is(self, state: str, unit: str) -> bool:
        """systemctl is-enabled / is-active."""
        result = self.query("systemctl", f"is-{state}", "--quiet", unit, check=False)
        return result is not None and result.returncode == 0

    def ids(self, owner: Owner) -> tuple[int, int] | None:
        """uid and gid for `owner`, or None before the service's user exists (a dry run)."""
        try:
            return pwd.getpwnam(owner[0]).pw_uid, grp.getgrnam(owner[1]).gr_gid
        except KeyError:
            return None

    def selinux_enabled(self) -> bool:
        if not RHEL or not shutil.which("selinuxenabled"):
            return False
        result = self.query("selinuxenabled", check=False)
        return result is not None and result.returncode == 0

    def nginx_command(self) -> str:
        return find_nginx() or "nginx"

    def certificate_missing(self) -> bool:
        return not Path(layout.TLS_CERTIFICATE).exists()

    def venv_ready(self, path: str, known: bool) -> bool:
        return (self.disk(path) / VENV_STAMP).is_file() and (self.disk(path) / "bin" / "gunicorn").exists()

    def python_version(self) -> str:
        return f"{sys.version_info[0]}.{sys.version_info[1]}"

    @contextlib.contextmanager
    def serving(self, release: str, address: str | None = None, workers: int | None = None) -> Iterator[Serving | None]:
        service = (layout.SERVICE_USER, layout.SERVICE_USER)
        ids = self.ids(service)
        env = {**os.environ, **read_env_file(Path(layout.ENV_FILE)), "PYTHONDONTWRITEBYTECODE": "1"}
        # As the unit gives them: where the app's data lives.
        env["SHARED_DIRECTORY"] = layout.SHARED_DIR
        if layout.FRAMEWORK == "django":
            env["STATE_DIRECTORY"] = layout.STATE_DIR
        with tempfile.TemporaryDirectory(prefix=f"{layout.SLUG}-release-") as scratch:
            os.chmod(scratch, 0o700)
            if ids:
                os.chown(scratch, *ids)
            where = address or f"unix:{scratch}/release.sock"
            log = Path(scratch, "gunicorn.log")
            command = [
                *AS_SERVICE,
                # Gone with this run, whatever stops it.
                "--pdeathsig", "TERM",
                f"{release}/venv/bin/gunicorn", "--config", f"{release}/{layout.GUNICORN_CONF.name}",
                "--bind", where, "--error-logfile", str(log), *(["--workers", str(workers)] if workers else []),
            ]  # fmt: skip
            self.report.action("start:", shlex.join(command))
            served = Serving(where, subprocess.Popen(command, cwd=release, env=env, stdin=subprocess.DEVNULL), log)
            try:
                yield served
            finally:
                served.stop()

    def own_tree(self, path: str, owner: Owner) -> None:
        """Ownership is applied file by file here: nothing more to do."""

    def workers(self, service: str) -> set[int]:
        result = self.query("systemctl", "show", "--property=MainPID", "--value", service, check=False)
        main = result.stdout.strip() if result is not None else ""
        if not main.isdigit() or main == "0":
            return set()
        found: set[int] = set()
        for task in Path(f"/proc/{main}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                found |= {int(pid) for pid in task.read_text().split()}
        return found

    def health_of(self, upstream: str) -> int | None:
        answer = probe(upstream, layout.DOMAIN, layout.HEALTH_PATH, timeout=HEALTH_ANSWER_SECONDS)
        return answer.status if answer is not None else None

    def wait_gone(self, pids: set[int], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not any(running(pid) for pid in pids):
                return True
            time.sleep(0.1)
        return False

    def finished(self, counts: str, backup_dir: str | None, record: Path | None) -> str:
        backup = f"; replaced files backed up in {backup_dir}" if backup_dir else ""
        return f"done: {counts}{backup}"


class Staged(Target):
    """A tree under --root that stands for the server: nothing of this machine is touched, and the
    commands the server still has to run are recorded in the tree."""

    defers = True
    no_run_reason = "--root: nothing runs in a staged tree"
    run_verb = "record:"
    venv_python = layout.SYSTEM_PYTHON

    def execute(self, command: tuple[str, ...], env: dict[str, str] | None, check: bool) -> Result | None:
        return None

    def outcome(self) -> str:
        return "recorded"

    def accounts(self) -> dict[str, Account]:
        """The tree's /etc/passwd (a full system image has one; an empty tree has none)."""
        found = {}
        for fields in self.table("/etc/passwd", 7):
            if fields[2].isdigit() and fields[3].isdigit():
                found[fields[0]] = Account(fields[0], int(fields[2]), int(fields[3]), fields[5], fields[6])
        return found

    def groups(self) -> dict[str, tuple[int, list[str]]]:
        return {
            f[0]: (int(f[2]), [m for m in f[3].split(",") if m]) for f in self.table("/etc/group", 4) if f[2].isdigit()
        }

    def table(self, path: str, width: int) -> list[list[str]]:
        disk = self.disk(path)
        if disk.is_symlink() or not disk.is_file():
            return []
        rows = (line.split(":") for line in disk.read_text(errors="replace").splitlines())
        return [row for row in rows if len(row) == width]

    def user_exists(self, name: str) -> bool:
        """In the tree, or created by the record of an earlier staging."""
        return self.manifest.user_created or name in self.accounts()

    def unit_is(self, state: str, unit: str) -> bool:
        """A unit counts as enabled and running once an earlier run installed it."""
        if unit == NGINX_SERVICE:
            return self.installed_before
        return unit_file(unit) in self.units_before

    def ids(self, owner: Owner) -> tuple[int, int] | None:
        """The target's accounts do not exist here: files belong to whoever stages them, and the
        record hands them over (own_tree)."""
        return (0, 0) if owner == ROOT and os.geteuid() == 0 else None

    def selinux_enabled(self) -> bool:
        """A staged RHEL tree assumes SELinux on (the default)."""
        return RHEL

    def nginx_command(self) -> str:
        return "nginx"

    def certificate_missing(self) -> bool:
        """Its first staging records the whole Let's Encrypt sequence for the target."""
        return not self.installed_before

    def venv_ready(self, path: str, known: bool) -> bool:
        """The record builds a venv on the server the first time a release needs it."""
        return known

    def python_version(self) -> str:
        return layout.SYSTEM_PYTHON

    def write_release(self, path: str, files: dict[str, Path], venv_link: str, owner: Owner) -> int:
        count = super().write_release(path, files, venv_link, owner)
        self.own_tree(path, owner)
        return count

    def own_tree(self, path: str, owner: Owner) -> None:
        self.run("chown", "-R", f"{owner[0]}:{owner[1]}", path)

    def wait_healthy(self, upstream: str) -> bool:
        return True

    def record(self, title: str) -> Path | None:
        """Append this run's commands to the staged tree's record, for the target to run in order."""
        if not self.done.commands:
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
            file.write(f"\n# {stamp}: {title}\n" + "".join(f"{line}\n" for line in self.done.commands))
        return record

    def finished(self, counts: str, backup_dir: str | None, record: Path | None) -> str:
        return f"staged under {self.root}: {counts} recorded in {record}"


def running(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie waiting for its parent has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def shutting_down(pid: int) -> bool:
    """Whether nginx's worker `pid` is finishing its last requests after a reload (its title says so)."""
    try:
        return b"is shutting down" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class DryRun(Target):
    """Mixed in before Live or Staged: the same steps, and nothing is written, run or recorded."""

    writes = False
    no_run_reason = "dry run"

    def run(self, *command: str, env: dict[str, str] | None = None, check: bool = True) -> Result | None:
        line = shlex.join(command)
        self.done.commands.append(line)
        self.report.action(self.run_verb, line)
        return None

    def outcome(self) -> str:
        return f"would be {'recorded' if self.defers else 'run'}"

    def wait_healthy(self, upstream: str) -> bool:
        return True

    # Nothing was reloaded or restarted: no new workers to wait for, no old ones to see leave.
    def workers(self, service: str) -> set[int]:
        return set()

    def wait_gone(self, pids: set[int], seconds: float) -> bool:
        return True

    def health_of(self, upstream: str) -> int | None:
        return None

    def journal(self, fields: list[tuple[str, str]]) -> None:
        message = next((value for name, value in fields if name == "MESSAGE"), "")
        self.report.action("log:", f"{message} (in the journal)")

    def append_log(self, path: str, line: str) -> None:
        self.report.action("log:", f"{line} (appended to {path})")

    def write_release(self, path: str, files: dict[str, Path], venv_link: str, owner: Owner) -> int:
        count = sum(1 for source in files.values() if not source.is_dir())
        self.changed("created", path, f"(the release: {count} files, {describe(owner, RELEASE_DIR_MODE)})")
        return count

    def repoint(self, disk: Path, target: str) -> None:
        self.changed("updated", str(disk), f"-> {target}")

    @contextlib.contextmanager
    def serving(self, release: str, address: str | None = None, workers: int | None = None) -> Iterator[Serving | None]:
        yield None

    def record(self, title: str) -> Path | None:
        return None

    def finished(self, counts: str, backup_dir: str | None, record: Path | None) -> str:
        return f"dry run, nothing changed; a real run would make {counts}"


class DryRunLive(DryRun, Live):
    pass


class DryRunStaged(DryRun, Staged):
    pass


def make_target(options: Options, report: Report) -> Target:
    if options.root is None:
        return DryRunLive(options, report) if options.dry_run else Live(options, report)
    return DryRunStaged(options, report) if options.dry_run else Staged(options, report)
