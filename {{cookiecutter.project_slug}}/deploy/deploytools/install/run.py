"""What install and uninstall share: the manifest, the journal, recovery, failure and the end."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .. import catchall, layout
from . import preflight
from .activation import Activation, Changes
from .common import ROOT, InstallError
from .files import Files
from .ledger import JOURNAL, MANIFEST, Journal, Manifest
from .releases import LOG, Log
from .report import Report
from .roles import Role
from .target import Target


class Run:
    """What install and uninstall share: the manifest, the journal, recovery, and the end."""

    command = ""

    def __init__(self, target: Target, report: Report) -> None:
        self.target = target
        self.report = report
        self.journal = Journal(target.disk(JOURNAL))
        self.files = Files(target, report, target.manifest, self.journal)
        self.changes = Changes()
        self.acme_first = False
        self.activation = Activation(target, self.files, report, self.changes, self.acme_first)
        self.log = Log()  # the releases on this server (releases.py), once read
        # Where this run reads the release's files from (the project; a rollback: the release's
        # folder), and the release's folder on the server.
        self.source = layout.PROJECT_DIR
        self.release_path = ""

    def begin(self, installing: bool) -> bool:
        """Read the manifest, check the system, undo an interrupted run; False: stop (said why)."""
        target, report = self.target, self.report
        try:
            target.manifest = self.files.manifest = Manifest.load(self.files.disk(MANIFEST))
            self.log = Log.load(self.files.disk(LOG))
            # What an interrupted run is undone to: the role the last finished run recorded.
            target.role = Role.recorded(target.manifest.role)
            self.journal.disk = self.files.disk(JOURNAL)
            # An interrupted run first: what it left must not count as someone else's in preflight.
            self.recover()
            target.role = self.choose_role()
            target.observe()
            self.prior_paths = set(target.manifest.paths)
            report.step(preflight.check(target, installing=installing))
            if target.writes:
                self.journal.open(self.command)
        except (InstallError, OSError) as error:
            report.say(f"{report.step_name}: FAILED: {explain(error, target)}\n{self.command}: nothing changed")
            return False
        return True

    def choose_role(self) -> Role:
        """The role this run works for: the one the manifest records."""
        return Role.recorded(self.target.manifest.role)

    def recover(self) -> None:
        """A journal left by a run that never finished: undo that run before anything else."""
        target, report, journal = self.target, self.report, self.journal
        if not journal.exists():
            return
        if journal.busy():
            raise InstallError(f"another deploy/install is running on this server (it holds {JOURNAL})")
        header, records = journal.read()
        report.step_name = "recover"
        report.flush()
        when = f"{header.get('command', 'deploy/install')} (pid {header.get('pid', '?')}, {header.get('started', '?')})"
        if not target.writes:
            report.step(f"{when} was interrupted; a real run first undoes its {len(records)} change(s)")
            report.step_name = "preflight"
            return
        undoing = Activation(target, self.files, report, Changes(), False)
        result = undoing.recover(records)
        if undoing.problems:
            # The journal stays: the operator puts these back by hand, then the next run goes on.
            raise InstallError(f"{when} was interrupted and could not be undone completely: {result}")
        # The folders that run made for its journal go too, when nothing else is in them.
        journal.made = [Path(folder) for folder in header.get("made", [])]
        journal.close()
        report.step(f"{when} was interrupted: undone ({result})")
        report.step_name = "preflight"

    def leave_catch_all(self) -> None:
        """This project off the shared default server's list; the last one removes it and enables
        the package's default site again if the catch-all had replaced it."""
        target, files = self.target, self.files
        disk = target.disk(catchall.path())
        if not disk.exists():
            return
        state = catchall.CatchAll.parse(disk.read_text())
        if state.users.pop(layout.SLUG, None) is None:
            return
        if state.users:
            files.ensure_file(catchall.path(), state.render().encode(), 0o644, ROOT, listed=False)
            return
        if link := catchall.link():
            files.remove_file(link, listed_only=False)
        files.remove_file(catchall.path(), listed_only=False)
        if state.replaces:
            stock, points_to = state.replaces
            # Only where the package's site is still there: a link to nothing would fail nginx -t.
            if target.disk(os.path.join(PurePosixPath(stock).parent, points_to)).exists():
                files.ensure_link(stock, points_to)
                files.forget(stock)

    def end(self, title: str) -> Path | None:
        """Save the manifest, keep the backups in bounds, record the commands, close the journal."""
        if self.target.writes:
            self.files.ensure_file(MANIFEST, self.files.manifest.content(), 0o600, ROOT, listed=False)
        self.files.prune_backups()
        record = self.target.record(title)
        self.journal.close()
        return record

    def fail(self, error: BaseException) -> str:
        """Say why the run stopped, undo it, and return the first line of the reason."""
        report = self.report
        report.flush()
        reason = explain(error, self.target)
        failed = report.step_name
        report.say(f"{failed}: FAILED: {reason}")
        report.step_name = "rollback"
        report.step(self.activation.roll_back())
        self.journal.close()
        return reason.splitlines()[0].rstrip(":") if reason else type(error).__name__


def explain(error: BaseException, target: Target) -> str:
    """An error as an operator reads it: no traceback, the file and what to do."""
    if isinstance(error, InstallError):
        return str(error)
    if isinstance(error, PermissionError):
        hint = (
            "a dry run without root sees only what this user may read; run it with sudo for the whole picture"
            if not target.writes
            else "run as root (sudo), or stage into a folder you can write"
        )
        return f"permission denied: {error.filename}: {hint}"
    if isinstance(error, OSError):
        return f"{error.strerror or error}: {error.filename}" if error.filename else str(error)
    return f"{type(error).__name__}: {error}"
