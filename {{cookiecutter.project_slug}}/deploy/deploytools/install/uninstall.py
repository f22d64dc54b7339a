"""deploy/install --uninstall [--purge]: the site, then the units; with --purge, everything."""

from __future__ import annotations

from .. import layout
from .common import CERTBOT_HOOK, ENV_DIR, NGINX_SERVICE, ROOT, UNIT_FILES, InstallError, indent, unit_file
from .files import Files
from .platform import NGINX_READS, fcontext_spec
from .report import Report
from .target import Target


class Uninstall:
    def __init__(self, target: Target, report: Report) -> None:
        self.target = target
        self.report = report
        self.files = Files(target, report)
        self.files.keep_backups = not target.options.purge

    def run(self) -> int:
        target, report = self.target, self.report
        try:
            report.step(target.preflight(installing=False))
        except InstallError as error:
            report.say(f"preflight: FAILED: {error}\nuninstall: nothing changed")
            return 1
        steps = [("nginx", self.site), ("systemd", self.units), ("purge", self.purge)]
        try:
            for name, step in steps:
                report.step_name = name
                report.step(step())
        except (Exception, KeyboardInterrupt) as error:
            report.flush()
            reason = str(error) if isinstance(error, InstallError) else f"{type(error).__name__}: {error}"
            report.say(f"{report.step_name}: FAILED: {reason}")
            problems = self.files.restore()
            report.say(
                f"uninstall: stopped at {report.step_name}; files restored{' except: ' if problems else ''}"
                + "; ".join(problems)
            )
            return 1
        self.files.prune_backups()
        record = target.record("deploy/install --uninstall" + (" --purge" if target.options.purge else ""))
        if not report.changes and not report.commands:
            report.say("uninstall: nothing to remove")
        elif report.dry_run:
            report.say("uninstall: dry run, nothing changed")
        else:
            where = f"; commands recorded in {record}" if record else ""
            counts = f"{len(report.changes)} file change(s), {len(report.commands)} command(s)"
            report.say(f"uninstall: done: {counts}{where}")
        return 0

    def site(self) -> str:
        """Out of nginx first, so that no request reaches a service that is going away."""
        target, files = self.target, self.files
        since = self.report.mark()
        if layout.NGINX_SITE_LINK:
            files.remove_file(layout.NGINX_SITE_LINK)
        files.remove_file(layout.NGINX_SITE_PATH)
        if target.disk(layout.NGINX_SNIPPETS_DIR).is_dir():
            files.mirror(layout.NGINX_SNIPPETS_DIR, {}, dir_mode=0o755, file_mode=0o644, owner=ROOT)
            files.remove_dir(layout.NGINX_SNIPPETS_DIR)
        # The renewal hook only reloads nginx; the certificate itself stays with certbot.
        files.remove_file(CERTBOT_HOOK)
        if self.report.mark() == since:
            return "site not installed"
        result = target.run(target.nginx_command(), "-t", check=False)
        if result is not None and result.returncode:
            raise InstallError("nginx -t fails without the site:\n" + indent(result.stderr))
        if target.unit_is("active", NGINX_SERVICE):
            target.run("systemctl", "reload", NGINX_SERVICE)
        return f"{self.report.summary(since)}; nginx -t and reload without the site {target.outcome()}"

    def units(self) -> str:
        target = self.target
        placed = [name for name in UNIT_FILES if target.disk(f"{layout.SYSTEMD_UNIT_DIR}/{name}").exists()]
        running = [
            unit
            for unit in reversed(layout.ACTIVE_UNITS)
            if unit_file(unit) in placed and (target.unit_is("enabled", unit) or target.unit_is("active", unit))
        ]
        if running:
            target.run("systemctl", "disable", "--now", *running)
        since = self.report.mark()
        for name in placed:
            self.files.remove_file(f"{layout.SYSTEMD_UNIT_DIR}/{name}")
        if placed:
            target.run("systemctl", "daemon-reload")
        if not placed and not running:
            return "units not installed"
        stopped = f"stop and disable {' '.join(running)} {target.outcome()}" if running else "no unit running"
        return f"{stopped}; unit files {self.report.summary(since)}"

    def purge(self) -> str:
        target = self.target
        kept = f"{layout.INSTALL_DIR} (app, venv, static, backups), {layout.ENV_FILE} and user {layout.SERVICE_USER}"
        if not target.options.purge:
            return f"kept {kept}; --purge removes them"
        since = self.report.mark()
        self.files.remove_tree(layout.INSTALL_DIR)
        self.files.remove_tree(ENV_DIR)
        if target.selinux_enabled():
            listed = target.query("semanage", "fcontext", "--list", "--locallist")
            for folder in NGINX_READS:
                spec = fcontext_spec(folder)
                if (spec in listed.stdout) if listed is not None else target.installed_before:
                    target.run("semanage", "fcontext", "--delete", spec)
        if target.user_exists(layout.SERVICE_USER):
            target.run("userdel", layout.SERVICE_USER)
        if self.report.mark() == since and not self.report.commands:
            return "nothing left to purge"
        return f"{'would remove' if self.report.dry_run else 'removed'} {kept}"
