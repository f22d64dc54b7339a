"""deploy/install: the steps, in order, and the way back when one fails.

Steps, one line of output each: recover (only after an interrupted run), preflight, user, dirs,
env, release, venv, database (PostgreSQL), static, errors, systemd, nginx, selinux (RHEL), validate, migrate (Django),
activate, https (Let's Encrypt's first certificate), health, watch (a whole server), cache, finish.
The release is a folder of its own (releases.py), written once; what runs moves to it in the
activate step, when the current link is switched, and back when a later step fails.
Every step is the same whatever the target (target.py): a live run, a staged tree or a dry run.
The role (roles.py) leaves out what this machine does not run: an app host has no static, errors,
https or cache step, a load balancer no user, units or migrations (nor app, env and venv, except
Django's app and venv, for collectstatic); their env, systemd and nginx steps still remove what
another role left: a load balancer holds no secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from .. import catchall, database, layout, maintenance, traffic
from ..envfile import read_env_file
from .common import (
    AS_SERVICE,
    CERTBOT_HOOK,
    CERTBOT_HOOK_SOURCE,
    ENV_DIR,
    ENV_TEMPLATE,
    LEGACY_APP_DIR,
    LEGACY_VENV_DIR,
    NOLOGIN,
    ROOT,
    SERVICE_READS,
    UNIT_FILES,
    InstallError,
    Owner,
    app_files,
    indent,
    tree,
    unpublished,
)
from .ledger import MANIFEST
from .platform import NGINX_READS, RHEL, fcontext_spec
from .preflight import certificate_pending
from .releases import (
    LOG,
    RELEASE_NAME,
    VENV_NAME,
    VENV_STAMP,
    Entry,
    current_target,
    now_utc,
    release_dir,
    release_id,
    running_release,
    venv_dir,
    venv_key,
    venv_target,
)
from .roles import FIREWALL_UNIT, Role
from .run import Run

SERVICE_OWNS = (layout.SERVICE_USER, layout.SERVICE_USER)
# Logs for the adm group, as Debian keeps nginx's: mtail reads the log of deploys through it.
LOGS_READ = ("root", "adm")

# Django's settings need a secret key, and collectstatic never uses it: on a load balancer, which
# has no env file (the secret key stays on the app hosts), collectstatic gets this one.
# The answers the watch takes for the previous release's: those of the minutes before a run.
WATCH_BASELINE_SECONDS = 900

COLLECTSTATIC_ONLY_KEY = "collectstatic-only: this host serves no Django request"


def with_env(release: str) -> list[str]:
    """A command prefix that runs what follows with the env file's settings, read by systemd's rules
    (as the service gets them) by the release's own reader, never by a shell: it runs as root, and
    a value is data."""
    return [f"{release}/venv/bin/python", f"{release}/deploy/deploytools/envfile.py", layout.ENV_FILE]


class Install(Run):
    command = "install"
    release = ""  # release_id() of the project this run installs from
    venv_key = ""  # venv_key() of its requirements and this server's Python
    migrations: tuple[str, ...] = ()  # Django's migrations this run applied, as app.name
    backup = ""  # the snapshot deploy/backup took before them (its name in BACKUP_DIR), if any
    previous: str | None = None  # the release that ran before this run, if any
    started = 0.0  # when this run began (Unix time): the watch compares with the answers before it
    running_since = 0.0  # when the running release was switched to (deploy or rollback)
    # What the journal says of the release once it runs, and the action's name in its fields.
    announced = ("deployed", "deploy")

    def steps(self) -> list[tuple[str, Callable[[], str | None]]]:
        role = self.target.role
        app, nginx, code = role.runs_app, role.runs_nginx, role.installs_code
        chosen: list[tuple[str, Callable[[], str | None], bool]] = [
            ("user", self.user, app),
            ("dirs", self.dirs, True),
            ("env", self.env_file, True),
            ("release", self.unpack, code),
            ("venv", self.venv, code),
            ("database", self.database, app and layout.DATABASE is not None),
            ("static", self.static, nginx),
            ("errors", self.errors, nginx),
            ("systemd", self.units, True),
            ("nginx", self.site, True),
            ("selinux", self.selinux, nginx),
            ("validate", self.activation.validate, True),
            ("migrate", self.migrate, app),
            ("activate", self.activation.activate, True),
            ("https", self.activation.certificate, nginx),
            ("health", self.activation.health, True),
            ("watch", self.watch, nginx and app),
            ("cache", self.empty_cache, nginx),
            ("finish", self.tidy, code),
        ]
        return [(name, step) for name, step, wanted in chosen if wanted]

    def choose_role(self) -> Role:
        """--role as given; without it, the recorded one, unless that would turn an app host or a
        load balancer into a whole server."""
        recorded = super().choose_role()
        given = self.target.options.role
        if given is not None:
            return given
        if recorded.name != "server":
            raise InstallError(
                f"this machine is installed as {recorded.describe} (--role {recorded.name}, recorded in {MANIFEST}):"
                f" without --role, deploy/install would make it a whole server. Give the role again:\n"
                f"    {recorded.command()}\nor --role server to turn it into a whole server"
            )
        return recorded

    @property
    def code_owner(self) -> Owner:
        """The app's code is readable by the service's group; a load balancer (Django's, for
        collectstatic) has no service account: root's alone."""
        return SERVICE_READS if self.target.role.runs_app else ROOT

    def empty_cache(self) -> str | None:
        """Answers of the previous release must not outlive it: the new one is up, so the cache goes.

        The release is the app's files (release_id()), also on a load balancer, where the app
        runs on other hosts: a new release empties its cache once it is installed there, and a
        drain, which changes only the site, keeps it. nginx takes a missing cache file for a miss,
        so emptying the folder under a running nginx is safe; it refills from the new release.
        """
        if layout.CACHE_DIR is None:
            return None
        if self.release == self.files.manifest.release:
            return "same release, cache kept"
        self.target.run("find", layout.CACHE_DIR, "-mindepth", "1", "-delete", check=False)
        return f"emptied {layout.CACHE_DIR} (a new release)"

    def watch(self) -> str:
        """The site's real answers after the switch, for --watch seconds: when their share of 5xx is
        more than --watch-threshold points above the previous release's (its answers in the 15
        minutes before this run, or since it was switched to if that is later), the run fails here
        and goes back to the previous release. A page that answers /healthz but fails its users is
        caught so."""
        options, target = self.target.options, self.target
        if target.no_run_reason:
            return f"skipped ({target.no_run_reason})"
        if not options.watch:
            return "off (--watch 0)"
        if not self.changes.switch or not target.installed_before:
            return "nothing to compare with (no release ran before this one)" if self.changes.switch else "same release"
        log, baseline_since = Path(layout.ACCESS_LOG), max(self.started - WATCH_BASELINE_SECONDS, self.running_since)
        verdict = traffic.watch(log, baseline_since, time.time(), options.watch, options.watch_threshold)
        if verdict.worse:
            raise InstallError(verdict.describe())
        return verdict.describe()

    def run(self) -> int:
        target, report = self.target, self.report
        if not self.begin(installing=True):
            return 1
        self.acme_first = self.activation.acme_first = certificate_pending(target)
        try:
            self.started = time.time()
            with contextlib.suppress(OSError):  # the current link is made anew at each switch
                self.running_since = os.lstat(self.files.disk(layout.APP_DIR)).st_mtime
            # Reads every file the app is copied from: a link there stops the run here.
            self.release = release_id()
            for name, step in self.steps():
                report.step_name = name
                result = step()
                if result is not None:
                    report.step(result)
            self.finish()
        except (Exception, KeyboardInterrupt) as error:
            failed = report.step_name
            first_line = self.fail(error)
            self.log_failure(failed, first_line)
            back = "the previous version is back in place" if target.installed_before else "nothing installed"
            report.say(f"install: failed at {failed}: {first_line}; rolled back, {back}")
            return 1
        return 0

    def tidy(self) -> str:
        """The release is in place and healthy: it goes into the log, and what nothing needs any more
        goes: the app folder and venv of the layout before releases, releases older than the KEEP
        newest, and the venvs that no release kept uses."""
        files, log = self.files, self.log
        since = self.target.done.mark()
        entry = log.find(self.release) or Entry(self.release, self.venv_key, now_utc(), self.describe())
        entry.venv, entry.failed, entry.rolled_back = self.venv_key, "", ""
        entry.migrations = [*entry.migrations, *(name for name in self.migrations if name not in entry.migrations)]
        entry.backup = self.backup or entry.backup
        log.deployed(entry)
        legacy = [p for p in files.manifest.paths if p == LEGACY_APP_DIR or p.startswith(LEGACY_APP_DIR + "/")]
        for path in sorted(legacy, reverse=True):
            if files.manifest.paths[path]["type"] == "dir":
                files.remove_dir(path)
            else:
                files.remove_file(path)
        if files.manifest.owns(LEGACY_VENV_DIR):
            files.remove_tree(LEGACY_VENV_DIR)
        kept = log.kept(self.release, self.target.options.keep, self.previous)
        log.entries = kept
        wanted = {entry.id for entry in kept} | {self.release}
        used = {entry.venv for entry in kept if not entry.failed} | {self.venv_key}
        for folder, names, keeping in (
            (layout.RELEASES_DIR, RELEASE_NAME, wanted),
            (layout.VENVS_DIR, VENV_NAME, used),
        ):
            disk = files.disk(folder)
            for found in sorted(disk.iterdir()) if disk.is_dir() else []:
                # Only what deploy/install names so: anything else there is someone's, and stays.
                ours = names.fullmatch(found.name) and found.is_dir() and not found.is_symlink()
                if ours and found.name not in keeping:
                    files.remove_tree(f"{folder}/{found.name}")
        pruned = self.report.summary(self.target.done.since(since))
        return f"{self.release} recorded in {LOG} ({len(kept)} release(s) kept); {pruned}"

    def describe(self) -> str:
        """`git describe` of the project this run installs from, when it is a git checkout and the
        server has git (nothing else of the release needs it)."""
        if not (layout.PROJECT_DIR / ".git").exists() or shutil.which("git") is None:
            return ""
        # Read-only: root must not rewrite the index of a checkout it does not own (describe --dirty
        # would refresh it, whatever --no-optional-locks says; status with it does not).
        git = ["git", "--no-optional-locks", "-c", "safe.directory=*", "-C", str(layout.PROJECT_DIR)]
        said = self.target.query(*git, "describe", "--always", "--tags", check=False)
        if said is None or said.returncode:
            return ""
        changed = self.target.query(*git, "status", "--porcelain", "--untracked-files=no", check=False)
        dirty = changed is not None and not changed.returncode and changed.stdout.strip()
        return said.stdout.strip() + ("-dirty" if dirty else "")

    def announce(self, what: str, action: str, priority: int = 5) -> None:
        """The journal's line of this deploy: `journalctl -u <service>` shows it among the app's own
        lines, `journalctl RELEASE=<id>` (or DEPLOY_ACTION=..., -t <slug>-deploy) finds it."""
        before = self.previous or "none"
        fields = [
            ("MESSAGE", f"{layout.SLUG}: release {self.release} {what} (before: {before})"),
            ("PRIORITY", str(priority)),
            ("SYSLOG_IDENTIFIER", f"{layout.SLUG}-deploy"),
            ("RELEASE", self.release),
            ("PREVIOUS_RELEASE", before),
            ("DEPLOY_ACTION", action),
        ]
        # journalctl -u matches OBJECT_SYSTEMD_UNIT= in entries from root: each service of the app.
        fields += [("OBJECT_SYSTEMD_UNIT", unit) for unit in layout.APP_SERVICES if self.target.role.runs_app]
        self.target.journal(fields)
        if layout.DEPLOYS_LOG and self.target.role.runs_nginx:
            # mtail's deploy markers: <app>_deploys_total and <app>_last_deploy_timestamp_seconds.
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            line = f"{when} action={action} release={self.release} previous={before}"
            self.target.append_log(layout.DEPLOYS_LOG, line)

    def log_failure(self, step: str, reason: str) -> None:
        """A release that failed on its way in is marked in the log: --rollback skips it, --releases
        says why. The running release is never marked by a run that only tried to change /etc."""
        if not self.release_path or not self.changes.code or self.target.no_run_reason:
            return
        # Priority 3 (error): journalctl -p err lists the failed deploys.
        self.announce(f"failed at {step}: {reason}; {self.previous or 'nothing'} still runs", "failed", 3)
        # A release that served before stays what it was (a rollback may need it); a new one is
        # recorded as failed.
        if self.log.find(self.release) is None:
            failed = Entry(self.release, self.venv_key, now_utc(), self.describe(), failed=f"{step}: {reason}")
            self.log.deployed(failed)
            with contextlib.suppress(OSError):
                self.log.save(self.files.disk(LOG))

    def finish(self) -> None:
        target, report = self.target, self.report
        manifest = self.files.manifest
        manifest.active_units = target.role.active_units()
        manifest.role = target.role.record()
        manifest.release = self.release
        if target.writes and target.role.installs_code:
            self.files.ensure_file(LOG, self.log.content(), 0o600, ROOT, listed=False)
        files, commands = len(target.done.changes), len(target.done.commands)
        if self.changes.code and self.release_path:
            self.announce(*self.announced)
        if target.role.runs_nginx and maintenance.state(self.files.disk(layout.MAINTENANCE_FLAG)) is not None:
            report.say("install: maintenance is on: nginx answers 503 for the site until deploy/maintenance off")
        record = self.end("deploy/install")
        if self.files.left:
            report.say(
                "install: left in place (the new version no longer has them):\n" + indent("\n".join(self.files.left))
            )
        if not files and not commands:
            report.say("install: nothing would change" if report.dry_run else "install: nothing changed")
            return
        counts = f"{files} file change(s), {commands} command(s)"
        report.say(f"install: {target.finished(counts, self.files.backup_dir, record)}")

    # Steps --------------------------------------------------------------------------------------
    def user(self) -> str:
        target = self.target
        name = layout.SERVICE_USER
        if target.user_exists(name):
            made = "made by this installer" if target.manifest.user_created else "taken over with --adopt"
            return f"{name} exists ({made})"
        done = target.run(
            "useradd",
            "--system",
            *(["--gid", name] if target.group_exists(name) else ["--user-group"]),
            "--no-create-home",
            "--home-dir",
            layout.INSTALL_DIR,
            "--shell",
            NOLOGIN,
            name,
        )
        self.files.manifest.user_created = True
        self.activation.done(done, "useradd")
        self.activation.created_user = done is not None
        what = f"{name} (system user and group, no login shell, home {layout.INSTALL_DIR})"
        return f"created {what}" if done else f"useradd {target.outcome()} for {what}"

    def dirs(self) -> str:
        files, role = self.files, self.target.role
        since = self.target.done.mark()
        # nginx passes through the install folder to static/ and errors/; it cannot enter releases/.
        files.ensure_dir(layout.INSTALL_DIR, 0o755, ROOT)
        if role.installs_code:
            # The service passes through to its release; every release and venv is the installer's
            # alone (made by its commands, not file by file): purge removes them whole.
            new = not files.disk(layout.RELEASES_DIR).is_dir()
            files.ensure_dir(layout.RELEASES_DIR, 0o750, self.code_owner)
            files.touch(layout.RELEASES_DIR, {"type": "tree"})
            if new:
                # A staged tree cannot give it the service's group: the record does.
                self.target.own_tree(layout.RELEASES_DIR, self.code_owner)
            files.ensure_dir(layout.VENVS_DIR, 0o755, ROOT)
            files.touch(layout.VENVS_DIR, {"type": "tree"})
        if role.runs_nginx:
            files.ensure_dir(layout.STATIC_ROOT, 0o755, ROOT)
            files.ensure_dir(layout.ERRORS_ROOT, 0o755, ROOT)
            if layout.TLS_MODE == "letsencrypt":
                files.ensure_dir(layout.ACME_ROOT, 0o755, ROOT)
        if role.runs_app:
            # systemd reads the env file as root; the service itself never opens it.
            files.ensure_dir(ENV_DIR, 0o750, ROOT)
            self.data_dir(layout.SHARED_DIR, 0o750)
        if layout.FRAMEWORK == "django" and role.runs_app:
            # 0700, as the unit's StateDirectoryMode= makes it at every start.
            self.data_dir(layout.STATE_DIR, 0o700)
        return self.report.summary(self.target.done.since(since))

    def data_dir(self, path: str, mode: int) -> None:
        """A folder of the app's data (Django's SQLite database in STATE_DIR, uploads in
        SHARED_DIR), the service's own: created once, never emptied; purge keeps it unless empty."""
        files = self.files
        files.touch(path, {"type": "state"})
        if files.disk(path).exists() or path in files.planned:
            return
        files.make_parents(path)
        files.create_dir(path, mode, SERVICE_OWNS)
        files.touch(path, {"type": "state"})
        self.target.own_tree(path, SERVICE_OWNS)

    def env_file(self) -> str | None:
        if not self.target.role.runs_app:
            return self.no_env_file()
        disk = self.files.disk(layout.ENV_FILE)
        from_project = layout.ENV_SOURCE.exists()
        if disk.exists():
            mode = stat.S_IMODE(disk.stat().st_mode)
            warning = "" if mode == 0o600 else f"; WARNING: mode {mode:04o}, it holds secrets: chmod 0600 {disk}"
            self.files.touch(layout.ENV_FILE)
            added = self.add_missing_settings(disk) if from_project else []
            if added:
                verb = "to add" if self.report.dry_run else "added"
                return f"{layout.ENV_FILE} kept, {verb} {', '.join(added)} (this version needs them){warning}"
            return f"{layout.ENV_FILE} kept (never overwritten){warning}"
        content = layout.ENV_SOURCE.read_bytes() if from_project else ENV_TEMPLATE.encode()
        self.files.ensure_file(layout.ENV_FILE, content, 0o600, ROOT, create_only=True, conffile=True)
        origin = f"from {layout.ENV_SOURCE.name}" if from_project else "settings commented out"
        restic = (
            "; backup=restic: until RESTIC_REPOSITORY and RESTIC_PASSWORD_FILE are set there, snapshots stay on"
            " this server"
            if layout.BACKUP == "restic"
            else ""
        )
        return f"{layout.ENV_FILE} {'to create' if self.report.dry_run else 'created'} (0600, {origin}){restic}"

    def no_env_file(self) -> str | None:
        """A load balancer runs no app: the env file an earlier role installed (secrets) goes, unless
        edited since; nothing to say when there was none."""
        if not self.files.manifest.owns(layout.ENV_FILE):
            return None
        since = self.target.done.mark()
        self.files.remove_file(layout.ENV_FILE)
        if not self.files.manifest.owns(layout.ENV_FILE):
            self.files.remove_dir(ENV_DIR)
        kept = "the app does not run here: its settings and secrets stay on the app hosts"
        return f"{self.report.summary(self.target.done.since(since))} ({kept})"

    def add_missing_settings(self, disk: Path) -> list[str]:
        """Settings the project's env file has and the server's lacks (a new version's secret key)
        are appended with the project's values; every line already there stays as it is."""
        have = read_env_file(disk)
        wanted = read_env_file(layout.ENV_SOURCE)
        missing = [name for name in wanted if name not in have]
        if not missing:
            return []
        old = disk.read_bytes()
        lines = [
            line for line in layout.ENV_SOURCE.read_text().splitlines() if line.split("=", 1)[0].strip() in missing
        ]
        note = (
            f"# Added by deploy/install: settings this version of {layout.SLUG} needs, from {layout.ENV_SOURCE.name}.\n"
        )
        content = old + (b"" if old.endswith(b"\n") or not old else b"\n") + (note + "\n".join(lines) + "\n").encode()
        self.files.ensure_file(layout.ENV_FILE, content, 0o600, ROOT, conffile=True)
        return missing

    def unpack(self) -> str:
        """The project's files as release <id>: written into a hidden folder, then renamed into place
        whole, so that a release folder is always complete; one that is there already is kept as
        it is. Its venv link names the venv of its requirements (built by the next step). Before
        the first release, the current link points at it at once (nothing runs from it yet)."""
        target, files = self.target, self.files
        requirements = (layout.PROJECT_DIR / "requirements.txt").read_bytes()
        self.venv_key = venv_key(requirements, target.python_version())
        self.release_path = release_dir(self.release)
        link_to = venv_target(self.venv_key)
        running = self.previous = running_release(files.disk(layout.APP_DIR))
        self.changes.code = running != self.release
        disk = files.disk(self.release_path)
        if disk.is_dir() and not disk.is_symlink():
            said = "running" if running == self.release else "on this server already (deployed before)"
            if os.path.islink(disk / "venv") and os.readlink(disk / "venv") != link_to:
                # This server's Python changed since: the same files need a venv built for the new one.
                self.target.repoint(disk / "venv", link_to)
                said += f"; its venv link now names {self.venv_key} (another Python)"
                # Its gunicorn keeps the interpreter it started with: it starts anew.
                self.changes.restart = running == self.release
            result = f"{self.release} {said}"
        else:
            files.created_tree(self.release_path)
            count = target.write_release(self.release_path, app_files(), link_to, self.code_owner)
            verb = "to write" if self.report.dry_run else "written"
            result = f"{self.release}: {count} files {verb} into {self.release_path}"
        self.changes.release = self.release_path
        if running is not None:
            self.keep_current_link()
        if running is None:
            files.ensure_link(layout.APP_DIR, self.link_target())
            self.changes.code = True
        elif running != self.release:
            # Once the release has passed its own health check (activation.py).
            self.changes.switch = self.link_target()
        if not target.role.runs_app:
            return f"{result} (for collectstatic only: the app does not run here)"
        return result

    def link_target(self) -> str:
        """What the current link holds for this run's release."""
        return current_target(self.release)

    def keep_current_link(self) -> None:
        """The current link stays the installer's (listed) until activation moves it."""
        disk = self.files.disk(layout.APP_DIR)
        self.files.touch(layout.APP_DIR, {"type": "link", "target": os.readlink(disk)})

    def venv(self) -> str:
        """The release's venv: VENVS_DIR/<key>, built once by the release's deploy/setup-venv and
        then shared; a deploy that changes no requirement builds nothing. One that an interrupted
        run left unfinished (no record of its requirements) is built again from scratch."""
        target = self.target
        path = venv_dir(self.venv_key)
        disk = self.files.disk(path)
        known = any(entry.venv == self.venv_key for entry in self.log.entries)
        running = self.running_entry()
        self.changes.venv = running is None or running.venv != self.venv_key
        if target.venv_ready(path, known):
            return f"{path} (requirements.txt and Python unchanged: reused)"
        if disk.is_dir() and not (disk / VENV_STAMP).exists():
            self.files.remove_tree(path)
        # A failed run removes it: never a half venv that the next run could take for a built one.
        self.files.created_tree(path)
        result = target.run("env", f"PYTHON={target.venv_python}", f"{self.release_path}/deploy/setup-venv", path)
        if result is None:
            return f"{path}: deploy/setup-venv {target.outcome()}"
        said = result.stdout.strip().splitlines()
        return f"{path}: {said[-1] if said else 'ready'}"

    def database(self) -> str:
        """database=postgresql: on a whole server, the role and database in this machine's PostgreSQL
        (made once; never dropped by this installer) and their settings in the env file; then, from
        any host, a connection as the app makes it, and the count of connections the app may open
        against what the server admits. Before the switch: a database the app cannot use stops here."""
        target, files = self.target, self.files
        disk = files.disk(layout.ENV_FILE)
        env = read_env_file(disk) if disk.exists() else {}
        said = []
        if host := target.options.database_host:
            wanted = database.remote_settings(host, target.options.database_password or "")
            note = "# Set by deploy/install --database-host: the db host of every app host."
            if changed := self.set_env_settings(disk, env, wanted, note):
                verb = "to set" if self.report.dry_run else "set"
                said.append(f"{', '.join(changed)} {verb} in {layout.ENV_FILE} (--database-host)")
            env = {**env, **wanted}
        if database.is_local(env):
            said.append(self.local_database(disk, env))
            env = {**env, **database.local_settings()}
        else:
            said.append(f"PostgreSQL at {env['PGHOST']} (the env file's PGHOST; its db host made the database)")
        asked = target.query(
            *with_env(self.release_path), *AS_SERVICE, f"{self.release_path}/venv/bin/python",
            f"{self.release_path}/deploy/deploytools/pgsettings.py", check=False,
        )  # fmt: skip
        if asked is None or (asked.returncode and not target.writes):
            return "; ".join([*said, f"connection not tried ({target.no_run_reason})"])
        if asked.returncode:
            problem = indent(asked.stderr.strip().splitlines()[-1] if asked.stderr.strip() else "(no output)")
            raise InstallError(f"the app cannot connect to PostgreSQL with the env file's settings:\n{problem}")
        server = json.loads(asked.stdout)
        need = database.connections(env)
        hosts = target.options.database_clients
        if problem := database.capacity_problem(need, hosts, server["max_connections"], server["reserved"]):
            raise InstallError(problem)
        said.append(
            f"connected (PostgreSQL {server['version']}); up to {need.needed(hosts)} connections"
            f" ({need.explain(hosts)}) of {server['max_connections'] - server['reserved']}"
        )
        return "; ".join(said)

    def set_env_settings(self, disk: Path, env: dict[str, str], wanted: dict[str, str], note: str) -> list[str]:
        """`wanted` in the env file, after the comment `note`: a line that sets one of them is
        replaced, a missing one appended, every other line stays as it is. The names it changed."""
        changed = [name for name, value in wanted.items() if env.get(name) != value]
        if not changed:
            return []
        lines = disk.read_text().splitlines() if disk.exists() else []
        kept = [line for line in lines if line.split("=", 1)[0].strip() not in wanted and line != note]
        content = "\n".join([*kept, note, *(f"{name}={value}" for name, value in wanted.items())]) + "\n"
        self.files.ensure_file(layout.ENV_FILE, content.encode(), 0o600, ROOT, conffile=True)
        return changed

    def local_database(self, disk: Path, env: dict[str, str]) -> str:
        """The role and database in this machine's PostgreSQL, and the env file's settings for them."""
        target, files = self.target, self.files
        assert layout.DATABASE and layout.DATABASE_ROLE
        missing = {name: value for name, value in database.local_settings().items() if name not in env}
        note = "# Added by deploy/install: this server's PostgreSQL, peer authentication (no password)."
        self.set_env_settings(disk, env, missing, note)
        made = []
        for kind, name, exists, create in (
            ("role", layout.DATABASE_ROLE, database.role_exists(layout.DATABASE_ROLE),
             database.create_role(layout.DATABASE_ROLE)),
            ("database", layout.DATABASE, database.database_exists(layout.DATABASE),
             database.create_database(layout.DATABASE, layout.DATABASE_ROLE)),
        ):  # fmt: skip
            found = target.query(*database.as_postgres(exists), check=False)
            if found is not None and found.returncode and target.writes:
                raise InstallError(
                    f"PostgreSQL does not answer here (database=postgresql): {layout.PACKAGE_INSTALL}"
                    f" {layout.DATABASE_PACKAGE}, or set PGHOST in {layout.ENV_FILE} to its server\n"
                    + indent(found.stderr.strip() or "(no output)")
                )
            if found is None or found.returncode or found.stdout.strip() != "1":
                target.run(*create)
                made.append(f"{kind} {name}")
                files.manifest.database = {**files.manifest.database, kind: name}
        settings = f"; {', '.join(missing)} added to {layout.ENV_FILE}" if missing else ""
        verb = "to create" if self.report.dry_run else "created"
        state = f"{verb} {' and '.join(made)}" if made else f"role and database {layout.DATABASE} there"
        return f"this server's PostgreSQL, peer authentication: {state}{settings}"

    def running_entry(self) -> Entry | None:
        """The log's entry of the release the current link names, if any."""
        running = running_release(self.files.disk(layout.APP_DIR))
        return self.log.find(running) if running else None

    def static(self) -> str:
        since = self.target.done.mark()
        if layout.STATIC_SOURCE is not None:
            source = tree(self.source / layout.STATIC_SOURCE.relative_to(layout.PROJECT_DIR), unpublished)
            self.files.mirror(
                layout.STATIC_ROOT, source, dir_mode=0o755, file_mode=0o644, owner=ROOT, keep=self.carried(source)
            )
        elif layout.FRAMEWORK == "django":
            return self.collectstatic()
        self.changes.public |= self.target.done.mark() > since
        return self.report.summary(self.target.done.since(since), layout.STATIC_ROOT)

    def carried(self, wanted: dict[str, Path]) -> set[str]:
        """The static files of the release before that this one has not: they stay one deploy longer,
        so that a page an old worker rendered during the switch still finds its assets (hashed
        names change with every edit). Those kept for the release before that go now."""
        disk = self.files.disk(layout.STATIC_ROOT)
        manifest = self.files.manifest
        if self.release == manifest.release or not disk.is_dir():
            return set(manifest.carried) - set(wanted)
        here = {path.relative_to(disk).as_posix() for path in disk.rglob("*") if path.is_file()}
        kept = here - set(wanted) - set(manifest.carried)
        manifest.carried = sorted(kept)
        return kept

    def collectstatic(self) -> str:
        """Django gathers its static files; they reach STATIC_ROOT through the same mirror (backed up,
        compared) from a scratch folder. Where the project cannot run (staged, dry run), the command
        goes to the server as is, with the env file's settings and straight into STATIC_ROOT.
        A load balancer has no env file: collectstatic runs with a key that is no secret."""
        target = self.target
        release = self.release_path
        command = [f"{release}/venv/bin/python", f"{release}/manage.py", "collectstatic", "--noinput"]
        runs_app = target.role.runs_app
        if target.no_run_reason:
            if target.defers and not self.changes.code:
                return "unchanged (no code change)"
            if runs_app:
                target.run(*with_env(release), *command)
            else:
                target.run("env", f"DJANGO_SECRET_KEY={COLLECTSTATIC_ONLY_KEY}", *command)
            return f"manage.py collectstatic {target.outcome()}"
        since = self.target.done.mark()
        if runs_app:
            settings = read_env_file(target.disk(layout.ENV_FILE))
        else:
            settings = {"DJANGO_SECRET_KEY": COLLECTSTATIC_ONLY_KEY}
        with tempfile.TemporaryDirectory(prefix=f"{layout.SLUG}-static-") as scratch:
            os.chmod(scratch, 0o755)
            env = {
                **settings,
                "DJANGO_STATIC_ROOT": scratch,
                "PYTHONDONTWRITEBYTECODE": "1",
            }
            target.query(*command, env=env)  # writes to the scratch folder only
            collected = tree(Path(scratch))
            self.files.mirror(
                layout.STATIC_ROOT, collected, dir_mode=0o755, file_mode=0o644, owner=ROOT, keep=self.carried(collected)
            )
        self.changes.public |= self.target.done.mark() > since
        return f"collectstatic: {self.report.summary(self.target.done.since(since), layout.STATIC_ROOT)}"

    def migrate(self) -> str | None:
        """Django's migrations, once the new files passed validation: as the service's user, with
        the env file's settings and the service's state folder (where the SQLite database is).
        They are not undone by a rollback: a migration must work with the previous code too."""
        if layout.FRAMEWORK != "django" or not self.target.role.runs_app:
            return None
        if not self.changes.code:
            return "no code change: nothing to migrate"
        if self.target.options.migrations == "skip":
            return "left to the first app host's run (--migrations skip: one database for every app host)"
        release = self.release_path
        manage = [*AS_SERVICE, f"{release}/venv/bin/python", f"{release}/manage.py"]
        state = ["env", f"STATE_DIRECTORY={layout.STATE_DIR}", "PYTHONDONTWRITEBYTECODE=1"]
        # migrate --check: status 1 when migrations are unapplied; only then is a snapshot taken.
        pending = self.target.query(*with_env(release), *state, *manage, "migrate", "--check", check=False)
        snapshot = ""
        if pending is not None and pending.returncode and layout.BACKUP != "off":
            # The data as it was, kept with this release (releases.json): deploy/restore puts it back
            # should a migration fail halfway, or a rollback need the database from before it.
            taken = self.target.run(f"{release}/deploy/backup", "--before", self.release, "--json")
            snapshot = json.loads(taken.stdout)["name"] if taken is not None else ""
            self.backup = snapshot
        try:
            result = self.target.run(*with_env(release), *state, *manage, "migrate", "--noinput")
        except InstallError as error:
            if not snapshot:
                raise
            restore = f"sudo {layout.APP_DIR}/deploy/restore {snapshot}"
            raise InstallError(f"{error}\nthe database as it was before this run's migrations: {restore}") from None
        if result is None:
            return f"manage.py migrate {self.target.outcome()}"
        # "  Applying notes.0002_note_title... OK": recorded with the release (releases.json).
        self.migrations = tuple(re.findall(r"^\s*Applying (\S+?)\.\.\.", result.stdout, re.MULTILINE))
        if self.migrations:
            kept = f"; the data before them: {layout.BACKUP_DIR}/{snapshot}" if snapshot else ""
            return f"manage.py migrate: applied {', '.join(self.migrations)}{kept}"
        said = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        return f"manage.py migrate: {said[-1] if said else 'done'}"

    def errors(self) -> str:
        since = self.target.done.mark()
        pages = tree(self.source / layout.ERROR_PAGES.relative_to(layout.PROJECT_DIR), unpublished)
        self.files.mirror(layout.ERRORS_ROOT, pages, dir_mode=0o755, file_mode=0o644, owner=ROOT)
        self.changes.public |= self.target.done.mark() > since
        return self.report.summary(self.target.done.since(since), layout.ERRORS_ROOT)

    def units(self) -> str | None:
        role = self.target.role
        since = self.target.done.mark()
        if role.runs_app:
            for name in UNIT_FILES:
                content = (layout.SYSTEMD_DIR / name).read_bytes()
                self.files.ensure_file(f"{layout.SYSTEMD_UNIT_DIR}/{name}", content, 0o644, ROOT)
            # An app host's listening addresses and trusted proxies (roles.py).
            for path, text in role.drop_ins().items():
                self.files.ensure_file(path, text.encode(), 0o644, ROOT)
        exporters = [f"{layout.SYSTEMD_UNIT_DIR}/{name}" for name in layout.METRICS_UNITS]
        if role.runs_nginx:
            for path in exporters:
                content = (layout.SYSTEMD_DIR / PurePosixPath(path).name).read_bytes()
                self.files.ensure_file(path, content, 0o644, ROOT)
        # What the installed version ran and this one has no more (a socket after bind=tcp, the
        # single service after instances=3, every unit on a load balancer): stopped and disabled
        # before its file goes.
        active = role.active_units()
        stale = [unit for unit in self.target.manifest.active_units if unit not in active]
        stopped = ""
        if stale:
            self.activation.stop(stale)
            why = "not in this version" if role.runs_app else "not on a load balancer"
            stopped = f"; stop and disable {' '.join(stale)} ({why}) {self.target.outcome()}"
        self.prune(lambda path: path.startswith(layout.SYSTEMD_UNIT_DIR + "/"))
        changed = [path for _, path in self.target.done.since(since)]
        # The app restarts for its own units; the exporters restart for theirs (activation.py).
        self.changes.units = any(path not in exporters for path in changed)
        self.changes.metrics |= any(path in exporters for path in changed)
        self.changes.firewall = f"{layout.SYSTEMD_UNIT_DIR}/{FIREWALL_UNIT}" in changed
        # A socket whose drop-in came or went listens elsewhere now: it must bind anew.
        self.changes.relisten = [
            unit
            for unit in active
            if unit.endswith(".socket")
            and any(path.startswith(f"{layout.SYSTEMD_UNIT_DIR}/{unit}.d/") for path in changed)
        ]
        if not role.runs_app and not changed and not stale:
            return None
        return self.report.summary(self.target.done.since(since), layout.SYSTEMD_UNIT_DIR) + stopped

    def prune(self, chosen: Callable[[str], bool] = lambda path: True) -> None:
        """Remove what the installed version had and this one has not (listed and unchanged only;
        the env file, the venv, the backups and the service's data stay)."""
        files = self.files
        for path in sorted(self.prior_paths - files.touched, reverse=True):
            entry = files.manifest.paths.get(path)
            if entry is None or not chosen(path) or entry["type"] in {"tree", "state"} or "conffile" in entry:
                continue
            if path == LEGACY_APP_DIR or path.startswith(LEGACY_APP_DIR + "/"):
                continue  # the service runs from there until activation: finish removes it
            if entry["type"] == "dir":
                files.remove_dir(path)
            else:
                files.remove_file(path)

    def site(self) -> str | None:
        files, role = self.files, self.target.role
        since = self.target.done.mark()
        if not role.runs_nginx:
            return self.no_site()
        # What nginx -t warns about before this run: validation fails on any warning it adds.
        self.activation.nginx_warnings_before = self.activation.nginx_warnings()
        # Until its first certificate exists, an HTTPS site cannot pass nginx -t: the challenge site
        # stands in for it (a staged tree gets the real site; its record swaps them on the target).
        first = layout.NGINX_ACME_SITE if self.acme_first and not self.target.defers else None
        content = first.read_bytes() if first else role.site()
        files.ensure_file(layout.NGINX_SITE_PATH, content, 0o644, ROOT)
        snippets = tree(layout.NGINX_SNIPPETS)
        written: set[str] = set()
        if layout.RELEASE_SNIPPET:
            # The project's release snippet names no release: the one written here names this run's.
            name = PurePosixPath(layout.RELEASE_SNIPPET).name
            snippets.pop(name, None)
            self.write_release_snippet()
            written.add(name)
        files.mirror(layout.NGINX_SNIPPETS_DIR, snippets, dir_mode=0o755, file_mode=0o644, owner=ROOT, keep=written)
        self.metrics_files()
        if layout.NGINX_SITE_LINK:
            link_dir = str(PurePosixPath(layout.NGINX_SITE_LINK).parent)
            files.ensure_link(layout.NGINX_SITE_LINK, os.path.relpath(layout.NGINX_SITE_PATH, link_dir))
        if layout.TLS_MODE == "letsencrypt" and CERTBOT_HOOK_SOURCE.exists():
            files.ensure_file(CERTBOT_HOOK, CERTBOT_HOOK_SOURCE.read_bytes(), 0o755, ROOT)
        self.catch_all()
        self.prune()
        self.changes.site = self.target.done.mark() > since
        result = self.report.summary(self.target.done.since(since))
        if role.name == "lb":
            drained = f", {len(role.drain)} drained" if role.drain else ""
            result += f" (upstream: {len(role.app_hosts)} app host(s){drained})"
        return result + (f" (challenge site until the certificate exists: {first.name})" if first else "")

    # Metrics (metrics=prometheus) ------------------------------------------------------------------
    def write_release_snippet(self) -> bool:
        """nginx's release snippet naming this run's release (the project's copy, with its id in
        place of "none"); whether the file changed."""
        assert layout.RELEASE_SNIPPET is not None
        since = self.target.done.mark()
        source = (layout.NGINX_SNIPPETS / PurePosixPath(layout.RELEASE_SNIPPET).name).read_text()
        text = re.sub(r'default "[^"]*";', f'default "{self.release}";', source)
        self.files.ensure_file(layout.RELEASE_SNIPPET, text.encode(), 0o644, ROOT)
        return self.target.done.mark() > since

    def metrics_files(self) -> None:
        """mtail's program (a change restarts mtail), and the log of deploys it reads: created
        empty, then each deploy and rollback appends its line (announce)."""
        if layout.MTAIL_PROGRAM is None or layout.MTAIL_SOURCE is None or layout.DEPLOYS_LOG is None:
            return
        since = self.target.done.mark()
        self.files.ensure_file(layout.MTAIL_PROGRAM, layout.MTAIL_SOURCE.read_bytes(), 0o644, ROOT)
        self.changes.metrics |= self.target.done.mark() > since
        self.files.ensure_file(layout.DEPLOYS_LOG, b"", 0o640, LOGS_READ, create_only=True)

    def no_site(self) -> str | None:
        """An app host serves no site: what an earlier role placed goes (the site, its snippets, the
        static files, this project's name on the shared catch-all), like any file this version
        does not have."""
        if layout.NGINX_SITE_PATH in self.prior_paths:
            self.activation.nginx_warnings_before = self.activation.nginx_warnings()
        since = self.target.done.mark()
        self.leave_catch_all()
        self.prune()
        self.changes.site = self.target.done.mark() > since
        if not self.changes.site:
            return None
        removed = self.report.summary(self.target.done.since(since))
        return f"{removed} (nginx runs on the load balancers, not on an app host)"

    def catch_all(self) -> None:
        """The shared default server (catchall.py), with this project on its list; the package's
        default site, a default server of its own, is disabled with a backup (two would fail nginx -t)."""
        files, target = self.files, self.target
        disk = target.disk(catchall.path())
        state = catchall.CatchAll.parse(disk.read_text()) if disk.exists() else catchall.CatchAll()
        state.users[layout.SLUG] = catchall.this_project_https()
        stock = catchall.stock_default_link()
        if stock and target.disk(stock).is_symlink():
            state.replaces = state.replaces or (stock, os.readlink(target.disk(stock)))
            files.remove_file(stock, listed_only=False)
        # Shared with the other projects: no project's manifest lists it, the header does.
        files.ensure_file(catchall.path(), state.render().encode(), 0o644, ROOT, listed=False)
        if link := catchall.link():
            files.ensure_link(link, os.path.relpath(catchall.path(), PurePosixPath(link).parent))
            files.forget(link)

    def selinux(self) -> str | None:
        """RHEL: nginx may read the static and error pages (httpd_sys_content_t) and, over TCP, connect
        to gunicorn (httpd_can_network_connect)."""
        target = self.target
        if not RHEL:
            return None
        if not target.selinux_enabled():
            return "not enabled: nothing to label"
        done = []
        listed = target.query("semanage", "fcontext", "--list", "--locallist")
        added = False
        for folder in NGINX_READS:
            spec = fcontext_spec(folder)
            known = spec in listed.stdout if listed is not None else target.installed_before
            if not known:
                target.run("semanage", "fcontext", "--add", "--type", "httpd_sys_content_t", spec)
                added = True
        if added:
            done.append(f"labelled {', '.join(NGINX_READS)} httpd_sys_content_t")
        if added or self.changes.public:
            target.run("restorecon", "-R", *NGINX_READS)
            done.append("restorecon")
        if layout.BIND == "tcp" or self.target.role.name == "lb":
            boolean = target.query("getsebool", "httpd_can_network_connect")
            on = boolean.stdout.strip().endswith("on") if boolean is not None else target.installed_before
            if not on:
                target.run("setsebool", "-P", "httpd_can_network_connect", "1")
                done.append("httpd_can_network_connect on (nginx connects to gunicorn over TCP)")
        return f"{'; '.join(done)} ({target.outcome()})" if done else "labels in place"
