"""deploy/install --uninstall [--purge]: the site, then the units; with --purge, everything else
the installer made. Only what the manifest lists and nobody changed since is removed; the rest is
left in place and named."""

from __future__ import annotations

from pathlib import PurePosixPath

from .. import layout
from ..nginx import find_nginx
from .common import CERTBOT_HOOK, INSTALL_STATE_DIR, NGINX_SERVICE, UNIT_FILES, InstallError, indent, unit_file
from .ledger import MANIFEST
from .platform import NGINX_READS, fcontext_spec
from .releases import LOG
from .report import Report
from .run import Run
from .target import Target


class Uninstall(Run):
    command = "uninstall"

    def __init__(self, target: Target, report: Report) -> None:
        super().__init__(target, report)
        self.files.keep_backups = not target.options.purge
        self.files.purging = target.options.purge

    def run(self) -> int:
        target, report = self.target, self.report
        if not self.begin(installing=False):
            return 1
        if not self.files.manifest.paths and target.installed_before:
            self.journal.close()
            report.say(
                "uninstall: this install has no manifest (an earlier deploy/install made it), so nothing is known to"
                " be the installer's: run deploy/install --adopt once, then --uninstall again"
            )
            return 1
        steps = [("nginx", self.site), ("systemd", self.units), ("purge", self.purge)]
        try:
            for name, step in steps:
                report.step_name = name
                report.step(step())
            if not target.options.purge:
                record = self.end("deploy/install --uninstall")
            else:
                record = self.target.record("deploy/install --uninstall --purge")
                self.journal.close()
                # The installer's own folder goes last, once the journal is gone (unless it holds the
                # staged record).
                state = self.files.disk(INSTALL_STATE_DIR)
                if target.writes and state.is_dir() and not state.is_symlink() and not any(state.iterdir()):
                    state.rmdir()
        except (Exception, KeyboardInterrupt) as error:
            stopped = report.step_name
            first_line = self.fail(error)
            report.say(f"uninstall: stopped at {stopped}: {first_line}; files restored")
            return 1
        if self.files.left:
            report.say("uninstall: left in place:\n" + indent("\n".join(self.files.left)))
        changes = [change for change in target.done.changes if change[1] != MANIFEST]
        if not changes and not target.done.commands:
            report.say("uninstall: nothing to remove")
        elif report.dry_run:
            report.say("uninstall: dry run, nothing changed")
        else:
            where = f"; commands recorded in {record}" if record else ""
            counts = f"{len(changes)} file change(s), {len(target.done.commands)} command(s)"
            report.say(f"uninstall: done: {counts}{where}")
        return 0

    def site(self) -> str:
        """Out of nginx first, so that no request reaches a service that is going away."""
        target, files = self.target, self.files
        since = self.target.done.mark()
        if layout.NGINX_SITE_LINK:
            files.remove_file(layout.NGINX_SITE_LINK)
        files.remove_file(layout.NGINX_SITE_PATH)
        snippets = layout.NGINX_SNIPPETS_DIR + "/"
        for path in sorted((p for p in files.manifest.paths if p.startswith(snippets)), reverse=True):
            if files.manifest.paths[path]["type"] == "dir":
                files.remove_dir(path)
            else:
                files.remove_file(path)
        files.remove_dir(layout.NGINX_SNIPPETS_DIR)
        # Maintenance belongs to the site: a later install must not start behind the maintenance page.
        files.remove_file(layout.MAINTENANCE_FLAG, listed_only=False)
        # The renewal hook only reloads nginx; the certificate itself stays with certbot.
        files.remove_file(CERTBOT_HOOK)
        self.leave_catch_all()
        if self.target.done.mark() == since:
            return "site not installed (or not by deploy/install)"
        removed = self.report.summary(self.target.done.since(since))
        if not target.defers and find_nginx() is None:
            return f"{removed}; nginx is not installed: nothing to test or reload"
        result = target.run(target.nginx_command(), "-t", check=False)
        if result is not None and result.returncode:
            raise InstallError("nginx -t fails without the site:\n" + indent(result.stderr))
        if target.unit_is("active", NGINX_SERVICE):
            target.run("systemctl", "reload", NGINX_SERVICE)
        return f"{removed}; nginx -t and reload without the site {target.outcome()}"

    def units(self) -> str:
        target, files = self.target, self.files
        unit_dir = layout.SYSTEMD_UNIT_DIR + "/"
        # Unit files sit right in the folder; an app host's drop-ins in <unit>.d/ below it.
        drop_ins = [
            path
            for path in files.manifest.paths
            if path.startswith(unit_dir) and ("/" in path[len(unit_dir) :] or path.endswith(".d"))
        ]
        listed = {p.rsplit("/", 1)[1] for p in files.manifest.paths if p.startswith(unit_dir) and p not in drop_ins}
        placed = [
            name
            for name in sorted(listed | set(UNIT_FILES))
            if files.manifest.owns(f"{layout.SYSTEMD_UNIT_DIR}/{name}")
        ]
        active = dict.fromkeys([*files.manifest.active_units, *layout.ACTIVE_UNITS])
        running = [
            unit
            for unit in reversed(active)
            if unit_file(unit) in placed and (target.unit_is("enabled", unit) or target.unit_is("active", unit))
        ]
        if running:
            target.run("systemctl", "disable", "--now", *running)
        since = self.target.done.mark()
        for name in placed:
            files.remove_file(f"{layout.SYSTEMD_UNIT_DIR}/{name}")
        # Deepest first: the drop-ins, then their folders once empty.
        for path in sorted(drop_ins, reverse=True):
            if files.manifest.paths[path]["type"] == "dir":
                files.remove_dir(path)
            else:
                files.remove_file(path)
        if self.target.done.mark() > since:
            target.run("systemctl", "daemon-reload")
        if not placed and not running and self.target.done.mark() == since:
            return "units not installed (or not by deploy/install)"
        stopped = f"stop and disable {' '.join(running)} {target.outcome()}" if running else "no unit running"
        return f"{stopped}; unit files {self.report.summary(self.target.done.since(since))}"

    def purge(self) -> str:
        target, files = self.target, self.files
        kept = (
            f"{layout.INSTALL_DIR} (releases, venvs, shared, static, backups), {layout.ENV_FILE} and user"
            f" {layout.SERVICE_USER}"
        )
        if not target.options.purge:
            return f"kept {kept}; --purge removes them"
        since = self.target.done.mark()
        manifest = files.manifest
        # Deepest first: a folder's turn comes after everything in it.
        for path in sorted(manifest.paths, reverse=True):
            kind = manifest.paths[path]["type"]
            if kind == "tree":
                files.remove_tree(path)
            elif kind == "state":
                disk = files.disk(path)
                if disk.is_dir() and not disk.is_symlink() and any(disk.iterdir()):
                    files.left.append(f"{path} (the app's data; remove it yourself once it is not needed)")
                else:
                    files.remove_dir(path)
            elif kind == "dir":
                files.remove_dir(path)
            else:
                files.remove_file(path)
        # What nginx made for this site alone: its shared cache, and its access log with the ones
        # logrotate turned (access.log.1, access.log.2.gz, ...). Nothing else of nginx's.
        made_by_nginx = [layout.CACHE_DIR] if layout.CACHE_DIR else []
        log = files.disk(layout.ACCESS_LOG)
        made_by_nginx += [
            str(PurePosixPath(layout.ACCESS_LOG).parent / found.name) for found in log.parent.glob(log.name + "*")
        ]
        # The log of deploys mtail reads (metrics on), with its rotated copies, if any.
        if layout.DEPLOYS_LOG:
            deploys = files.disk(layout.DEPLOYS_LOG)
            made_by_nginx += [
                str(PurePosixPath(layout.DEPLOYS_LOG).parent / found.name)
                for found in deploys.parent.glob(deploys.name + "*")
            ]
        for path in made_by_nginx:
            if files.disk(path).is_dir():
                files.remove_tree(path)
            else:
                files.remove_file(path, listed_only=False)
        # What systemd made for the app's unix socket: its folder in /run, empty once the socket
        # unit stopped (RemoveOnStop=).
        files.remove_dir(layout.RUNTIME_DIR, listed_only=False)
        # And for the backup timer's Persistent=: when it last ran.
        if layout.BACKUP_TIMER:
            files.remove_file(f"/var/lib/systemd/timers/stamp-{layout.BACKUP_TIMER}", listed_only=False)
        if target.selinux_enabled():
            listed = target.query("semanage", "fcontext", "--list", "--locallist")
            for folder in NGINX_READS:
                spec = fcontext_spec(folder)
                if (spec in listed.stdout) if listed is not None else target.installed_before:
                    target.run("semanage", "fcontext", "--delete", spec)
        name = layout.SERVICE_USER
        if manifest.user_created and target.user_exists(name):
            target.run("userdel", name)
        elif target.user_exists(name):
            files.left.append(f"user {name} (not created by deploy/install)")
        # PostgreSQL's database: the users' data too, never dropped by a purge.
        if made := manifest.database:
            drop = " && ".join(
                f"sudo -u postgres {command} {made[kind]}"
                for kind, command in (("database", "dropdb"), ("role", "dropuser"))
                if kind in made
            )
            names = " and ".join(f"{kind} {made[kind]}" for kind in ("role", "database") if kind in made)
            files.left.append(f"PostgreSQL's {names} (the app's data; once not needed: {drop})")
        # deploy/backup's snapshots: the users' data, never removed by a purge.
        backups = files.disk(layout.BACKUP_DIR)
        if backups.is_dir() and any(backups.iterdir()):
            files.left.append(f"{layout.BACKUP_DIR} (snapshots of the app's data; rm -r it yourself once not needed)")
        files.remove_file(LOG, listed_only=False)
        files.remove_file(MANIFEST, listed_only=False)
        if self.target.done.mark() == since and not self.target.done.commands:
            return "nothing left to purge"
        removed = [path for verb, path in self.target.done.since(since) if verb == "removed" and path != MANIFEST]
        verb = "would remove" if self.report.dry_run else "removed"
        return f"{verb} {len(removed)} path(s) the installer made" + (
            f"; kept {len(files.left)} (listed below)" if files.left else ""
        )
