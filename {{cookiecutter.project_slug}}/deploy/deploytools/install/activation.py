"""The second half of an install: validate what was placed, activate it, check its health, and the
way back when any of that fails."""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import checks, layout
from ..envfile import read_env_file
from ..probe import probe
from .common import (
    AS_SERVICE,
    NGINX_SERVICE,
    ROOT,
    InstallError,
    app_copy,
    indent,
    unit_file,
    units_to_verify,
)
from .files import Files
from .report import Report
from .roles import FIREWALL_UNIT, Role
from .target import REPLACED_SECONDS, Target, running, shutting_down
from .undo import Undo

HEALTH_SECONDS = 60
# How long nginx may take to start the workers of a reloaded configuration.
NGINX_RELOAD_SECONDS = 10
# How long the new workers may answer /healthz with an error before the release counts as failed.
SETTLE_SECONDS = 10
# How long a started exporter may take to answer its first scrape (metrics on).
EXPORTER_SECONDS = 15
# What nginx answers while the gunicorn behind it does not (yet): refused (502) or silent (504).
GATEWAY_ERRORS = (502, 504)


@dataclass
class Changes:
    """What the file steps changed, which decides what activation does."""

    code: bool = False  # another release than the running one
    units: bool = False
    site: bool = False
    public: bool = False
    venv: bool = False  # the release runs from another venv than the running one
    # The release's folder on the server, and what the current link gets once the new release
    # passed its own health check ("": it holds it already).
    release: str = layout.APP_DIR
    switch: str = ""
    canary: bool = True  # the new release answers /healthz on a socket of its own before the switch
    restart: bool = False  # the running release's venv link was pointed elsewhere: its gunicorn must start anew
    # Socket units whose listening address changed (an app host's drop-in came or went).
    relisten: list[str] = field(default_factory=list)
    # An app host's firewall unit (--firewall) was written anew: its table is replaced.
    firewall: bool = False
    # An exporter's unit or mtail's program was written anew (metrics on): they restart.
    metrics: bool = False


def health_address() -> tuple[str, str | None]:
    """Where nginx answers for the site on this machine, and the TLS server name to send."""
    if layout.TLS_MODE == "none":
        return "127.0.0.1:80", None
    return "127.0.0.1:443", layout.DOMAIN


def health_status(role: Role) -> int | None:
    """The status nginx answers for /healthz with the site's Host (an app host: its first gunicorn,
    directly), or None when nothing answers."""
    if not role.runs_nginx:
        answer = probe(role.app_servers()[0], layout.DOMAIN, layout.HEALTH_PATH)
    else:
        address, server_name = health_address()
        answer = probe(address, layout.DOMAIN, layout.HEALTH_PATH, tls_server_name=server_name)
    return answer.status if answer is not None else None


def health_url() -> str:
    scheme = "http" if layout.TLS_MODE == "none" else "https"
    return f"{scheme}://127.0.0.1{layout.HEALTH_PATH} (Host: {layout.DOMAIN})"


def wait_for_health(ask: Callable[[], int | None], where: str) -> None:
    """Ask until the answer is 200. No answer, or nginx's 502 and 504 (its gunicorn is not up yet),
    is waited on for HEALTH_SECONDS; the app's own error status, for SETTLE_SECONDS in a row: an
    app that keeps failing is not waited on for a minute."""
    start = time.monotonic()
    failing_since = None
    while True:
        status = ask()
        now = time.monotonic()
        if status == 200:
            return
        if status in (None, *GATEWAY_ERRORS):
            failing_since = None
        elif failing_since is None:
            failing_since = now
        elif now - failing_since >= SETTLE_SECONDS:
            raise InstallError(f"{where}: status {status} for {SETTLE_SECONDS}s")
        if now - start >= HEALTH_SECONDS:
            said = f"status {status}" if status else "no answer"
            raise InstallError(f"{where}: {said} within {HEALTH_SECONDS}s")
        time.sleep(0.25)


class Activation:
    def __init__(self, target: Target, files: Files, report: Report, changes: Changes, acme_first: bool) -> None:
        self.target = target
        self.files = files
        self.report = report
        self.changes = changes
        self.acme_first = acme_first
        # What activation did, so that a failure can undo it.
        self.daemon_reloaded = False
        self.enabled: list[str] = []
        self.started: list[str] = []
        self.refreshed: list[str] = []
        self.refresh = ""
        self.relistened: list[list[str]] = []  # [socket, service]: bound anew (roles.py)
        self.nginx_reloaded = False
        # nginx -t's warnings before this run's files were placed (None: not asked).
        self.nginx_warnings_before: set[str] | None = None
        self.stopped: list[str] = []  # units of the installed version that this one no longer has
        self.problems: list[str] = []  # what a rollback could not put back
        # Made by this run's command rather than file by file: a rollback removes it too.
        self.created_user = False

    def done(self, result: object, action: str, **details: object) -> None:
        """Note in the journal a command that ran here, for a later run to undo if this one dies."""
        if result is not None:
            self.files.journal.add({"action": action, **details})

    def stop(self, units: list[str]) -> None:
        self.stopped = units
        self.done(self.target.run("systemctl", "disable", "--now", *units), "stopped", units=units)

    # Validation ---------------------------------------------------------------------------------
    def nginx_warnings(self) -> set[str] | None:
        """What nginx -t warns about in the configuration as it is now; None where it cannot run."""
        if self.target.no_run_reason:
            return None
        result = self.target.query(self.target.nginx_command(), "-t", check=False)
        if result is None:
            return None
        return {line.strip() for line in result.stderr.splitlines() if "[warn]" in line}

    def validate(self) -> str:
        """deploy/check's checks on a staged tree; the system's own on this machine; none in a dry
        run, which placed nothing."""
        if not self.target.done.changes:
            return "nothing changed, nothing to validate"
        if not self.target.writes:
            return "skipped (dry run: nothing was placed to validate)"
        return self.validate_staged() if self.target.defers else self.validate_live()

    def validate_staged(self) -> str:
        """The checks of deploy/check on the files just staged (nginx -t on the site in a scratch
        prefix, systemd-analyze on the units, ...: they are byte for byte the project's); the
        target's own nginx -t and systemd-analyze are recorded."""
        results: list[checks.Result] = []
        for check in self.staged_checks():
            outcome = check()
            results += outcome if isinstance(outcome, list) else [outcome]
        failed = [result for result in results if result.status == "FAIL"]
        if failed:
            said = "\n".join(f"FAIL {r.name}: {r.summary}\n{indent(r.details)}" for r in failed)
            raise InstallError(
                f"deploy/check rejects the staged files: {'; '.join(r.summary for r in failed)}\n" + indent(said)
            )
        verdicts = ", ".join(f"{result.name} {result.status}" for result in results)
        recorded = " and ".join(self.record_live_checks())
        return f"deploy/check passed on the staged files ({verdicts}); {recorded} recorded"

    def staged_checks(self) -> list[Callable[[], checks.Result | list[checks.Result]]]:
        """deploy/check's checks for what this role installs: the site as installed (a load
        balancer's names the app hosts), the units with an app host's drop-ins."""
        role = self.target.role
        if role.name == "server":
            return list(checks.CHECKS)
        chosen: list[Callable[[], checks.Result | list[checks.Result]]] = [checks.check_python]
        if role.runs_app:
            drop_ins = {
                path.removeprefix(layout.SYSTEMD_UNIT_DIR + "/"): text for path, text in role.drop_ins().items()
            }
            chosen += [checks.check_gunicorn, lambda: checks.check_units(drop_ins, list(layout.ACTIVE_UNITS))]
        if role.runs_nginx:
            chosen.append(lambda: checks.check_nginx(role.site().decode()))
        return chosen

    def checks_nginx(self) -> bool:
        """nginx -t where nginx serves this project, or where this run took the site away."""
        return self.target.role.runs_nginx or self.changes.site

    def record_live_checks(self) -> list[str]:
        target = self.target
        recorded = []
        if self.checks_nginx():
            if self.acme_first and layout.NGINX_ACME_SITE is not None:
                # The target has no certificate yet: its nginx -t and first reload use the challenge site.
                target.run("install", "-m", "0644", app_copy(layout.NGINX_ACME_SITE), layout.NGINX_SITE_PATH)
            target.run(target.nginx_command(), "-t")
            recorded.append("nginx -t")
        if target.role.runs_app:
            target.run("systemd-analyze", "verify", "--man=no", *units_to_verify())
            recorded.append("systemd-analyze verify")
        return recorded

    def validate_live(self) -> str:
        """The new files in place, before anything is reloaded: nginx -t with every site of this
        nginx, systemd-analyze verify on the units, gunicorn --check-config as the service's user."""
        target = self.target
        passed = []
        if self.checks_nginx():
            self.validate_nginx()
            passed.append("nginx -t")
        if target.role.runs_app:
            passed += self.validate_app()
        return f"{' and '.join(filter(None, [', '.join(passed[:-1]), passed[-1]]))} passed"

    def validate_nginx(self) -> None:
        target = self.target
        result = target.run(target.nginx_command(), "-t", check=False)
        assert result is not None
        # A warning is a setting nginx ignores (a server name taken twice, a deprecated form):
        # any that this run brings in fails the run; the server's own earlier ones do not.
        before = self.nginx_warnings_before or set()
        warnings = [line for line in result.stderr.splitlines() if "[warn]" in line and line.strip() not in before]
        if result.returncode or warnings:
            what = "rejects" if result.returncode else "warns about"
            site = "the new site" if target.role.runs_nginx else "the site taken away"
            raise InstallError(f"nginx -t {what} the configuration with {site}:\n" + indent(result.stderr))

    def validate_app(self) -> list[str]:
        """systemd-analyze verify on the units (with an app host's drop-ins, read from their
        folders), gunicorn --check-config as the service's user."""
        target = self.target
        units = units_to_verify()
        result = target.run("systemd-analyze", "verify", "--man=no", *units, check=False)
        assert result is not None
        names = {unit_file(unit) for unit in units} | set(units)
        findings = [line for line in (result.stdout + result.stderr).splitlines() if any(n in line for n in names)]
        if result.returncode or findings:
            said = "\n".join(findings) or result.stdout + result.stderr
            raise InstallError("systemd-analyze verify rejects the units:\n" + indent(said))
        env = {
            **read_env_file(Path(layout.ENV_FILE)),
            "PYTHONDONTWRITEBYTECODE": "1",
            "SHARED_DIRECTORY": layout.SHARED_DIR,
        }
        result = target.run(
            *AS_SERVICE,
            f"{self.changes.release}/venv/bin/gunicorn",
            "--check-config",
            "--chdir",
            self.changes.release,
            "--config",
            f"{self.changes.release}/{layout.GUNICORN_CONF.name}",
            env=env,
            check=False,
        )
        assert result is not None
        if result.returncode:
            raise InstallError(
                f"gunicorn --check-config cannot load {layout.APP} as {layout.SERVICE_USER}:\n"
                + indent(result.stdout + result.stderr)
            )
        passed = [f"systemd-analyze verify ({', '.join(units)})", "gunicorn --check-config"]
        if layout.FRAMEWORK == "django":
            passed.append(self.django_check(env))
        return passed

    def django_check(self, env: dict[str, str]) -> str:
        """Django's own deployment checks on the new release, as the service runs it: an error stops
        the run; warnings (a site without HTTPS has the secure-cookie ones) are named."""
        release = self.changes.release
        result = self.target.run(
            *AS_SERVICE, f"{release}/venv/bin/python", f"{release}/manage.py", "check", "--deploy",
            env={**env, "STATE_DIRECTORY": layout.STATE_DIR}, check=False,
        )  # fmt: skip
        assert result is not None
        said = result.stdout + result.stderr
        if result.returncode:
            raise InstallError("manage.py check --deploy finds errors in the new release:\n" + indent(said))
        warnings = sorted(set(re.findall(r"^\?: \((\S+)\)", said, re.MULTILINE)))
        return f"manage.py check --deploy ({', '.join(warnings)} warned)" if warnings else "manage.py check --deploy"

    # Activation ---------------------------------------------------------------------------------
    def activate(self) -> str:
        target, changes, role = self.target, self.changes, self.target.role
        done = []
        if changes.units or changes.metrics:
            self.done(target.run("systemctl", "daemon-reload"), "daemon-reload")
            self.daemon_reloaded = True
            done.append("daemon-reload")
        if role.runs_app:
            done += self.activate_app()
        if role.runs_nginx:
            if not target.unit_is("enabled", NGINX_SERVICE):
                target.run("systemctl", "enable", NGINX_SERVICE)
                done.append(f"enable {NGINX_SERVICE}")
            if changes.site or not target.unit_is("active", NGINX_SERVICE):
                # Validated above with nginx -t; a running nginx reloads gracefully, a stopped one starts.
                self.reload_nginx("reload-or-restart")
                done.append("reload nginx")
        elif changes.site and target.unit_is("active", NGINX_SERVICE):
            # The site of an earlier role went: nginx stops serving it.
            self.reload_nginx()
            done.append("reload nginx (without the site)")
        if role.runs_nginx and layout.METRICS_UNITS:
            done += self.activate_metrics()
        if not done:
            if not role.runs_app:
                return "nothing to do (nginx up to date)"
            if not role.runs_nginx:
                return "nothing to do (units enabled and running)"
            return "nothing to do (units enabled and running, nginx up to date)"
        return f"{'; '.join(done)} ({target.outcome()})"

    def activate_metrics(self) -> list[str]:
        """The exporters, once nginx serves the site: enabled and started, or restarted when their
        unit or mtail's program changed (mtail then counts from the end of the logs again)."""
        target, units = self.target, layout.METRICS_UNITS
        done = []
        enable = [unit for unit in units if not target.unit_is("enabled", unit)]
        if enable:
            self.done(target.run("systemctl", "enable", *enable), "enabled", units=enable)
            self.enabled += enable
            done.append(f"enable {' '.join(enable)}")
        start = [unit for unit in units if not target.unit_is("active", unit)]
        if start:
            self.done(target.run("systemctl", "start", *start), "started", units=start)
            self.started += start
            done.append(f"start {' '.join(start)}")
        restart = [unit for unit in units if unit not in start] if self.changes.metrics else []
        if restart:
            target.run("systemctl", "restart", *restart)
            done.append(f"restart {' '.join(restart)} (unit or program changed)")
        if (start or restart) and not target.no_run_reason:
            self.wait_for_exporters()
            done.append(f"/metrics answers on {' and '.join(layout.METRICS_TARGETS)}")
        return done

    def wait_for_exporters(self) -> None:
        """Each exporter answers /metrics. mtail opens its logs before it listens: once it answers,
        it counts every line written after, the deploy's own marker among them."""
        deadline = time.monotonic() + EXPORTER_SECONDS
        for address in layout.METRICS_TARGETS:
            while (answer := probe(address, "localhost", "/metrics")) is None or answer.status != 200:
                if time.monotonic() > deadline:
                    said = f"status {answer.status}" if answer else "no answer"
                    units = " ".join(layout.METRICS_UNITS)
                    raise InstallError(
                        f"http://{address}/metrics: {said} within {EXPORTER_SECONDS}s (journalctl -u {units})"
                    )
                time.sleep(0.1)

    def reload_nginx(self, how: str = "reload") -> None:
        """`systemctl <how> nginx`, returning once the new configuration alone takes connections.

        A reload only signals nginx: for a moment its previous workers still accept, and answer
        with the previous sites. Waiting for them means that what deploy/install reports is in
        force when it returns: the HTTPS site that replaced the challenge site, or a load
        balancer's drain, before the host it drains goes down for its update.
        """
        old_workers = self.target.workers(NGINX_SERVICE)
        self.done(self.target.run("systemctl", how, NGINX_SERVICE), "nginx-reloaded")
        self.nginx_reloaded = True
        if not self.nginx_took_over(old_workers):
            raise InstallError(f"nginx started no workers with the new configuration within {NGINX_RELOAD_SECONDS}s")

    def nginx_took_over(self, old_workers: set[int]) -> bool:
        """Whether nginx runs workers with the new configuration, and every previous worker has
        left or says "is shutting down" (it has closed its listening sockets)."""
        if not old_workers:
            return True  # nginx was not running, or this target cannot tell
        deadline = time.monotonic() + NGINX_RELOAD_SECONDS
        while time.monotonic() < deadline:
            started = self.target.workers(NGINX_SERVICE) - old_workers
            if started and all(not running(pid) or shutting_down(pid) for pid in old_workers):
                return True
            time.sleep(0.02)
        return False

    def activate_app(self) -> list[str]:
        target, changes = self.target, self.changes
        done = []
        if changes.firewall and target.unit_is("active", FIREWALL_UNIT):
            # New addresses: the table is replaced in one transaction (a first start comes with the sockets).
            target.run("systemctl", "reload", FIREWALL_UNIT)
            done.append(f"reload {FIREWALL_UNIT}")
        units = dict.fromkeys([*layout.ACTIVE_UNITS, *layout.APP_SERVICES])
        was_active = {unit: target.unit_is("active", unit) for unit in units}
        self.enabled = [unit for unit in layout.ACTIVE_UNITS if not target.unit_is("enabled", unit)]
        if self.enabled:
            self.done(target.run("systemctl", "enable", *self.enabled), "enabled", units=self.enabled)
            done.append(f"enable {' '.join(self.enabled)}")
        # The link moves before anything starts: a service that was not running starts from the
        # new release, never from the one it replaces.
        switched = 0.0
        if changes.switch:
            if changes.canary:
                done.append(self.canary())
            self.files.ensure_link(layout.APP_DIR, changes.switch)
            switched = time.monotonic()
            done.append(f"{layout.APP_DIR} -> {changes.switch}")
        self.started = [unit for unit in layout.ACTIVE_UNITS if not was_active[unit]]
        if self.started:
            self.done(target.run("systemctl", "start", *self.started), "started", units=self.started)
            done.append(f"start {' '.join(self.started)}")
        # Units that changed need a restart to apply, and so does a release on another venv (a
        # process keeps the interpreter it started with); new code alone, a graceful reload (HUP:
        # new workers start from the release the current link names now, the old ones finish their
        # requests). One service at a time, each healthy again before the next.
        restart = changes.units or changes.restart or (changes.code and changes.venv)
        self.refresh = "restart" if restart else "reload" if changes.code else ""
        if not self.refresh:
            return done
        with self.bridging(was_active) as bridge:
            if bridge:
                done.append(f"bridge on {bridge} while the app restarts")
            self.refresh_each(was_active)
        if changes.switch and self.refreshed and not self.target.no_run_reason:
            took = time.monotonic() - switched
            done.append(f"every app server answered {layout.HEALTH_PATH} from it {took:.2f}s after the switch")
        if self.refreshed:
            how = "graceful" if self.refresh == "reload" else "unit changed" if changes.units else "another venv"
            order = ", one at a time" if len(self.refreshed) > 1 else ""
            done.append(f"{self.refresh} {' '.join(self.refreshed)} ({how}{order})")
        if self.relistened:
            moved = " ".join(socket for socket, _ in self.relistened)
            done.append(f"stop, re-listen and start {moved} (listening address changed)")
        return done

    @contextlib.contextmanager
    def bridging(self, was_active: dict[str, bool]) -> Iterator[str | None]:
        """One app server on TCP refuses while it restarts: for that moment the new release, already
        healthy, answers on nginx's backup server (the bridge) until the app is back."""
        target = self.target
        wanted = self.refresh == "restart" and layout.BRIDGE_SERVER and target.role.name == "server"
        if not wanted or not any(was_active.values()):
            yield None
            return
        with target.serving(self.changes.release, layout.BRIDGE_SERVER) as served:
            if served is not None:
                wait_for_health(served.health, f"{layout.HEALTH_PATH} on the bridge {served.address}")
            yield layout.BRIDGE_SERVER

    def refresh_each(self, was_active: dict[str, bool]) -> None:
        """Reload or restart each app service in turn, each healthy again before the next."""
        target, changes = self.target, self.changes
        sockets = {socket.removesuffix(".socket") + ".service": socket for socket in changes.relisten}
        for service, upstream in zip(layout.APP_SERVICES, target.role.app_servers(), strict=False):
            socket = sockets.get(service)
            if not was_active[service]:
                if socket and was_active[socket]:
                    self.relisten(socket, service, start=False)
                continue
            # The old workers answer until they are gone: only then does /healthz speak for
            # the new release, and a failing one is caught here instead of after they leave.
            old_workers = target.workers(service)
            if socket:
                self.relisten(socket, service, start=True)
            else:
                self.done(
                    target.run("systemctl", self.refresh, service), "refreshed", how=self.refresh, units=[service]
                )
                self.refreshed.append(service)
            if not target.wait_gone(old_workers, REPLACED_SECONDS):
                raise InstallError(
                    f"{service}: the previous workers still run {REPLACED_SECONDS}s after {self.refresh}"
                )
            # Only new workers are left: what they answer is the new release's. An app still
            # warming up may say 503 for a moment; one that keeps failing is not waited on.
            status = target.health_of(upstream)
            settled = time.monotonic() + SETTLE_SECONDS
            while status not in (None, 200) and time.monotonic() < settled:
                time.sleep(0.5)
                status = target.health_of(upstream)
            if status is not None and status != 200:
                raise InstallError(
                    f"{service} answers {layout.HEALTH_PATH} on {upstream} with {status} after {self.refresh}"
                )
            if not target.wait_healthy(upstream):
                raise InstallError(f"{service} did not answer {layout.HEALTH_PATH} on {upstream} after {self.refresh}")

    def canary(self) -> str:
        """The new release on a socket of its own, before any user request reaches it: as the
        service's user with its settings, it must answer /healthz with 200, or it never becomes
        current."""
        start = time.monotonic()
        with self.target.serving(self.changes.release, workers=1) as served:
            if served is None:
                return f"check the new release's {layout.HEALTH_PATH} on a socket of its own ({self.target.outcome()})"
            wait_for_health(served.health, f"the new release's {layout.HEALTH_PATH}")
        return f"the new release answered {layout.HEALTH_PATH} on its own socket in {time.monotonic() - start:.1f}s"

    def relisten(self, socket: str, service: str, *, start: bool) -> None:
        """A socket binds its new address only when restarted, and systemd refuses to start a socket
        whose service runs: the service stops meanwhile (its connections are refused for a moment)."""
        target = self.target
        self.files.journal.add({"action": "relistened", "units": [socket, service]})
        self.relistened.append([socket, service])
        target.run("systemctl", "stop", service)
        target.run("systemctl", "restart", socket)
        if start:
            target.run("systemctl", "start", service)

    def certificate(self) -> str | None:
        """Let's Encrypt's first certificate, through the challenge site nginx now serves; then the
        HTTPS site replaces it, checked by nginx -t before nginx reloads."""
        if not self.acme_first:
            return None
        target = self.target
        target.run(
            "certbot", "certonly", "--webroot", "--webroot-path", layout.ACME_ROOT, "--domain", layout.DOMAIN,
            "--email", layout.TLS_EMAIL, "--agree-tos", "--non-interactive",
        )  # fmt: skip
        if target.defers:
            # The staged tree holds the HTTPS site already; the server swaps it in after certbot.
            target.run("install", "-m", "0644", app_copy(layout.NGINX_SITE), layout.NGINX_SITE_PATH)
        else:
            self.files.ensure_file(layout.NGINX_SITE_PATH, target.role.site(), 0o644, ROOT)
        result = target.run(target.nginx_command(), "-t", check=False)
        if result is not None and result.returncode:
            raise InstallError("nginx -t rejects the HTTPS site with the new certificate:\n" + indent(result.stderr))
        self.reload_nginx()
        if target.no_run_reason:
            return f"certbot certonly, then the HTTPS site in place of the challenge site ({target.outcome()})"
        return f"certificate for {layout.DOMAIN} from Let's Encrypt; HTTPS site in place, nginx reloaded"

    def health(self) -> str:
        role = self.target.role
        if self.target.no_run_reason:
            return f"skipped ({self.target.no_run_reason})"
        if role.all_drained:
            return "every app host is drained (--drain): nginx sends them nothing, so nothing to probe"
        if not role.runs_nginx:
            return self.app_health()
        start = time.monotonic()
        wait_for_health(lambda: health_status(role), health_url())
        return f"{health_url()} answered 200 in {time.monotonic() - start:.1f}s"

    def app_health(self) -> str:
        """An app host: each gunicorn on its private address, asked directly with the site's Host;
        with --firewall, its table loaded first (the app's units only want it: a firewall that
        failed would leave the ports open to everyone, so the install fails instead)."""
        start = time.monotonic()
        if (
            self.target.role.firewall
            and not self.target.no_run_reason
            and not self.target.unit_is("active", FIREWALL_UNIT)
        ):
            journal = ["journalctl", "--unit", FIREWALL_UNIT, "--lines", "4", "--output", "cat"]
            said = self.target.query(*journal, check=False)
            why = indent(said.stdout) if said and said.stdout.strip() else f"    (see journalctl -u {FIREWALL_UNIT})"
            raise InstallError(f"{FIREWALL_UNIT} is not active; the app's ports would be open to everyone:\n{why}")
        for server in self.target.role.app_servers():
            where = f"http://{server}{layout.HEALTH_PATH} (Host: {layout.DOMAIN})"
            wait_for_health(lambda server=server: self.target.health_of(server), where)
        servers = ", ".join(self.target.role.app_servers())
        took = time.monotonic() - start
        return f"{layout.HEALTH_PATH} on {servers} (Host: {layout.DOMAIN}) answered 200 in {took:.1f}s"

    # The way back -------------------------------------------------------------------------------
    def recover(self, records: list[dict]) -> str:
        """Undo a run that was interrupted, from its journal: what it changed on disk and the
        commands it ran (units it started, reloads), as its own rollback would have."""
        files = self.files
        files.undo_list = [Undo.from_record(record) for record in records if "undo" in record]
        for record in records:
            action, units = record.get("action"), list(record.get("units", []))
            if record.get("backup_dir"):
                files.backup_dir = record["backup_dir"]
            files.backups_created |= bool(record.get("backups_created"))
            if action == "daemon-reload":
                self.daemon_reloaded = True
            elif action == "enabled":
                self.enabled += units
            elif action == "started":
                self.started += units
            elif action == "refreshed":
                self.refresh = record.get("how", "restart")
                self.refreshed += units
            elif action == "stopped":
                self.stopped += units
            elif action == "relistened":
                self.relistened.append(units)
            elif action == "nginx-reloaded":
                self.nginx_reloaded = True
            elif action == "useradd":
                self.created_user = True
        if self.refreshed or self.relistened or self.nginx_reloaded or self.daemon_reloaded:
            # Files come back first, then systemd and nginx reload them.
            self.daemon_reloaded = True
        return self.roll_back()

    def roll_back(self) -> str:
        """Undo this run: files back, units it started stopped, the previous version reloaded."""
        target = self.target
        undone = Counter(undo.kind for undo in self.files.undo_list)
        # Units started by this run had no previous version to fall back to.
        if self.started or self.enabled:
            units = list(dict.fromkeys([*reversed(self.started), *reversed(self.enabled)]))
            target.run("systemctl", "disable", "--now", *units, check=False)
        problems = self.files.restore()
        self.problems = problems
        if self.created_user:
            target.run("userdel", layout.SERVICE_USER, check=False)
        if self.daemon_reloaded:
            target.run("systemctl", "daemon-reload", check=False)
        for service in self.refreshed:
            # Done when the failed release's workers are gone: then only the previous one answers.
            failed_workers = target.workers(service)
            target.run("systemctl", self.refresh, service, check=False)
            target.wait_gone(failed_workers, REPLACED_SECONDS)
        for socket, service in self.relistened:
            # Back on the previous address: the socket binds it again, then its service starts.
            target.run("systemctl", "stop", service, check=False)
            target.run("systemctl", "restart", socket, check=False)
            target.run("systemctl", "start", service, check=False)
        if self.stopped:
            # The previous version's units, back as they were: enabled and running.
            target.run("systemctl", "enable", "--now", *self.stopped, check=False)
        if self.nginx_reloaded:
            target.run("systemctl", "reload-or-restart", NGINX_SERVICE, check=False)
        # Nothing runs from this run's release any more: its folder (and a venv it built) goes.
        problems += self.files.remove_trees()
        self.problems = problems
        restored = undone["replaced"] + undone["meta"] + undone["removed-dir"]
        created = undone["created"] + undone["created-tree"]
        result = f"{restored} restored from backup, {created} created by this run removed"
        if problems:
            result += "; NOT restored (copies kept in the backup folder):\n" + indent("\n".join(problems))
        elif not target.no_run_reason and (self.refreshed or self.started or self.nginx_reloaded):
            status = health_status(target.role)
            result += f"; {layout.HEALTH_PATH} now answers {status or 'nothing'}"
        return result
