"""deploy/install --rollback [ID] and --releases: back to a release the server still has, and the list.

A rollback builds nothing and copies nothing: the release and its venv are on the server as the
deploy that made them left them. Its steps: release (choose it), static and errors (the release's
own, as nginx serves them), label (metrics on: the release nginx's access log names), activate
(move the current link, reload or restart the app one service at a time), health, cache, finish
(the release rolled back from is marked: a second rollback goes one further back). Files in /etc
stay as the last deploy placed them, but for that release snippet.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from .. import layout
from .common import AS_SERVICE, InstallError, indent
from .releases import LOG, Log, now_utc, release_dir, running_release, venv_dir
from .roles import Role
from .steps import Install, with_env


class Rollback(Install):
    command = "rollback"
    announced = ("rolled back to", "rollback")

    def steps(self) -> list[tuple[str, Callable[[], str | None]]]:
        nginx = self.target.role.runs_nginx
        chosen: list[tuple[str, Callable[[], str | None], bool]] = [
            ("release", self.choose, True),
            ("static", self.static, nginx),
            ("errors", self.errors, nginx),
            ("label", self.relabel, nginx),
            ("activate", self.activation.activate, True),
            ("health", self.activation.health, True),
            ("cache", self.empty_cache, nginx),
            ("finish", self.left_behind, True),
        ]
        return [(name, step) for name, step, wanted in chosen if wanted]

    def relabel(self) -> str | None:
        """Metrics on: nginx's release snippet names the release rolled back to, from the moment
        nginx reloads in the activate step (the request metrics' release label)."""
        if layout.RELEASE_SNIPPET is None:
            return None
        if not self.write_release_snippet():
            return f"{layout.RELEASE_SNIPPET} names {self.release} already"
        self.changes.site = True
        return f"{layout.RELEASE_SNIPPET} names {self.release} (nginx reloads with it)"

    def choose_role(self) -> Role:
        """Whatever this machine is: a rollback changes no role."""
        return Role.recorded(self.target.manifest.role)

    def choose(self) -> str:
        """The release to go back to: the one named, or the newest before the running one that
        neither failed nor was rolled back from; it must be whole, with its venv built."""
        files, log = self.files, self.log
        if not self.target.role.installs_code:
            raise InstallError("this load balancer runs no release of the app: roll back the app hosts")
        running = running_release(files.disk(layout.APP_DIR))
        if running is None:
            raise InstallError(f"no release runs here ({layout.APP_DIR} is not a link): nothing to roll back from")
        wanted = self.target.options.rollback
        entry = log.find(wanted) if wanted else log.previous(running)
        if entry is None:
            said = f"release {wanted} is not in {LOG}" if wanted else "no earlier release to go back to"
            raise InstallError(f"{said}: deploy/install --releases lists them")
        if entry.id == running:
            raise InstallError(f"release {entry.id} is the one running")
        path = release_dir(entry.id)
        disk = files.disk(path)
        if not disk.is_dir():
            raise InstallError(f"release {entry.id} is no longer on this server ({path} is gone)")
        venv = Path(os.readlink(disk / "venv")).name if (disk / "venv").is_symlink() else ""
        if not venv or not self.target.venv_ready(venv_dir(venv), known=True):
            raise InstallError(f"release {entry.id}: its venv {venv_dir(venv)} is gone or unfinished; deploy it again")
        checked = self.check_migrations(running, path)
        self.release, self.release_path, self.venv_key, self.source = entry.id, path, venv, disk
        self.rolled_back_from = self.previous = running
        running_entry = log.find(running)
        changes = self.changes
        changes.release, changes.switch, changes.code = path, self.link_target(), True
        changes.venv = running_entry is None or running_entry.venv != venv
        # It served before: its health is checked once it runs, not on a socket of its own first.
        changes.canary = False
        self.keep_current_link()
        note = f" (named; {entry.skipped})" if entry.skipped else ""
        when = f"deployed {entry.deployed}" + (f", {entry.describe}" if entry.describe else "")
        return f"{running} -> {entry.id} ({when}){note}{checked}"

    def check_migrations(self, running: str, path: str) -> str:
        """Django: the database must hold no migration that the release rolled back to does not know
        (its code would meet tables it cannot read). Refused, with the command that unapplies them,
        unless --force; what was checked, for the step's line."""
        if layout.FRAMEWORK != "django" or not self.target.role.runs_app:
            return ""
        if self.target.options.force:
            return "; migrations not checked (--force)"
        applied = self.showmigrations(release_dir(running))
        known = self.showmigrations(path)
        if applied is None or known is None:
            return f"; migrations not checked ({self.target.no_run_reason})"
        unknown = [
            (app, name)
            for app, names in applied.items()
            for name, done in names
            if done and name not in {known_name for known_name, _ in known.get(app, [])}
        ]
        if not unknown:
            return "; it knows every migration the database has"
        commands = []
        for app in dict.fromkeys(app for app, _ in unknown):
            kept = [name for name, _ in known.get(app, [])]
            commands.append(f"sudo {layout.APP_DIR}/deploy/manage migrate {app} {kept[-1] if kept else 'zero'}")
        names = ", ".join(f"{app}.{name}" for app, name in unknown)
        release = path.rsplit("/", 1)[1]
        # The snapshots taken before the releases since the target applied their migrations.
        ids = [entry.id for entry in self.log.entries]
        since = self.log.entries[ids.index(release) + 1 :] if release in ids else []
        snapshots = [entry.backup for entry in since if entry.backup and entry.migrations]
        data = (
            f"\nor put back the data as it was before those migrations (what was written since is kept as a"
            f" snapshot of its own), then roll back:\n    sudo {layout.APP_DIR}/deploy/restore {snapshots[0]}"
            if snapshots
            else ""
        )
        raise InstallError(
            f"the database has {len(unknown)} migration(s) that release {release} does not know: {names}."
            " Unapply them with the running release's code (it knows how), then roll back again:\n"
            + indent("\n".join(commands))
            + data
            + "\nor give --force to roll back anyway (the old code then runs on the newer schema)"
        )

    def showmigrations(self, release: str) -> dict[str, list[tuple[str, bool]]] | None:
        """`manage.py showmigrations --list` of a release, as the service runs it: each app's
        migrations that its code knows, in order, and whether the database has them. None where the
        project's code does not run."""
        if self.target.no_run_reason:
            return None
        state = ["env", f"STATE_DIRECTORY={layout.STATE_DIR}", "PYTHONDONTWRITEBYTECODE=1"]
        command = [*AS_SERVICE, f"{release}/venv/bin/python", f"{release}/manage.py", "showmigrations", "--list"]
        result = self.target.query(*with_env(release), *state, *command)
        if result is None:
            return None
        found: dict[str, list[tuple[str, bool]]] = {}
        app = ""
        for line in result.stdout.splitlines():
            if line and not line.startswith(" "):
                app = line.strip()
                found[app] = []
            elif marked := re.match(r"\s+\[([ X])\] (\S+)", line):
                found.setdefault(app, []).append((marked[2], marked[1] == "X"))
        return found

    def left_behind(self) -> str:
        """The release rolled back from is marked, so that a second rollback goes one further back;
        the one rolled back to is no longer marked (it runs again)."""
        entry = self.log.find(self.release)
        if entry is not None:
            entry.failed = entry.rolled_back = ""
        left = self.log.find(self.rolled_back_from)
        if left is not None:
            left.rolled_back = now_utc()
        return f"{self.rolled_back_from} marked as rolled back from in {LOG}"

    def log_failure(self, step: str, reason: str) -> None:
        """A release that served before is not marked for a failed rollback to it."""


def list_releases(log: Log, running: str | None) -> str:
    """--releases: newest first, with the running one, and why a plain rollback skips others."""
    if not log.entries:
        return "no releases recorded on this server (deployed before releases, or not yet)"
    rows = [("release", "deployed", "venv", "git", "state")]
    for entry in reversed(log.entries):
        state = "current" if entry.id == running else entry.skipped or "kept"
        rows.append((entry.id, entry.deployed, entry.venv, entry.describe or "-", state))
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row[:4], widths, strict=True)) + "  " + row[4]
             for row in rows]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)
