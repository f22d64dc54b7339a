"""deploy/run-local: the generated nginx site and gunicorn.conf.py, running for real on 127.0.0.1.

Everything the run creates lives in one scratch folder (nginx's prefix: pid, logs, temporary
files, gunicorn's socket); stopping removes it, all but the logs. While it runs, .run-local.json in
the project says where things are, for `deploy/run-local --stop` and `--restart` and for scripts
that drive the stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from . import layout
from .envfile import read_env_file
from .nginx import LocalPorts, find_nginx, local_static_root, local_upstreams, scratch_dir, write_main_conf
from .probe import probe
from .rolling import HEALTHY_SECONDS, rolling_restart

STATE_FILE = layout.PROJECT_DIR / ".run-local.json"
READY_SECONDS = 30
STOP_SECONDS = 40
INSTALL_NGINX = "nginx is not installed: sudo apt-get install nginx (Debian, Ubuntu) or sudo dnf install nginx (RHEL)"


class RunLocalError(Exception):
    """A reason run-local cannot start, for the user."""


@dataclass
class State:
    pid: int
    url: str
    port: int
    https_port: int | None
    prefix: str
    gunicorn_pids: list[int]
    app_servers: list[str]
    nginx_pid: int
    gunicorn_log: str
    nginx_access_log: str
    nginx_error_log: str
    # Rolling restarts asked for with --restart (SIGHUP): how many ended, and how the last one did.
    restarts: int = 0
    last_restart: str = ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ensure_venv(venv: Path) -> Path:
    """The venv's python, after deploy/setup-venv if it has no gunicorn yet.

    gunicorn runs as `python -m gunicorn`: the venv's own gunicorn script names its interpreter in
    a shell line that breaks on a project path holding `$` or quotes.
    """
    python = venv / "bin" / "python"
    if not (venv / "bin" / "gunicorn").exists():
        print(f"venv: {venv} has no gunicorn, running deploy/setup-venv", flush=True)
        subprocess.run([str(layout.DEPLOY_DIR / "setup-venv"), str(venv)], check=True)
    return python


def answers(port: int, path: str = layout.HEALTH_PATH, *, tls: bool = False) -> int | None:
    """The status nginx gives for `path` with the site's Host, or None if nothing answers yet.

    Over TLS, "localhost" goes out as the server name (SNI), which the local site answers to.
    """
    answer = probe(f"127.0.0.1:{port}", layout.DOMAIN, path, tls_server_name="localhost" if tls else None, timeout=2)
    return answer.status if answer else None


def remove_all_but_logs(prefix: Path) -> None:
    """The scratch folder goes, but for logs/: what went wrong stays readable after a stop."""
    if not prefix.is_dir():
        return
    for entry in prefix.iterdir():
        if entry.name == "logs":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return ""
    return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])


class LocalStack:
    def __init__(self, nginx: str, python: Path, port: int, https_port: int) -> None:
        self.prefix = scratch_dir("local")
        self.prefix.chmod(0o755)
        self.python = python
        self.ports = LocalPorts(
            http=port,
            https=https_port,
            app=[free_port() for server in layout.UPSTREAM_SERVERS if not server.startswith("unix:")],
        )
        self.app_servers = local_upstreams(self.prefix, self.ports)
        self.logs = self.prefix / "logs"
        self.main_conf = write_main_conf(self.prefix, nginx, self.ports, foreground=True)
        self.nginx_command = [nginx, "-p", str(self.prefix), "-c", str(self.main_conf)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts = 0
        self.last_restart = ""

    @property
    def https_port(self) -> int | None:
        return self.ports.https if layout.TLS_MODE != "none" else None

    @property
    def url(self) -> str:
        """The address to open first: with HTTPS the plain HTTP port only redirects to it."""
        if self.https_port:
            return f"https://localhost:{self.https_port}/"
        return f"http://localhost:{self.ports.http}/"

    def app_env(self) -> dict[str, str]:
        env = {**os.environ, **read_env_file(layout.ENV_SOURCE)}
        if layout.FRAMEWORK == "django":
            # nginx passes Host without the port: the browser's Origin (with it) must be trusted as
            # such, for each name the local site answers to (the domain, where it points to 127.0.0.1).
            # With HTTPS the plain port only redirects, so no form is ever sent from it.
            scheme, port = ("https", self.https_port) if self.https_port else ("http", self.ports.http)
            origins = [f"{scheme}://{host}:{port}" for host in dict.fromkeys(["localhost", "127.0.0.1", layout.DOMAIN])]
            env |= {
                "DJANGO_ALLOWED_HOSTS": "localhost,127.0.0.1",
                "DJANGO_CSRF_TRUSTED_ORIGINS": ",".join(origins),
                "DJANGO_STATIC_ROOT": str(local_static_root(self.prefix)),
            }
        return env

    def gunicorn_env(self, index: int) -> dict[str, str]:
        # RUNTIME_DIRECTORY: gunicorn's control socket goes into the scratch folder, as under systemd.
        runtime = self.prefix / f"run-{index + 1}"
        runtime.mkdir(exist_ok=True)
        return {
            **self.app_env(),
            "GUNICORN_BIND": self.app_servers[index],
            "RUNTIME_DIRECTORY": str(runtime),
            "GUNICORN_PROC_NAME": f"{layout.SLUG}-{index + 1}",
        }

    def prepare_django(self) -> None:
        """collectstatic and migrate, as the install command does on the server.

        The database stays in the project's .state/ between runs (the settings' local state
        folder), so that a superuser made with deploy/manage is there the next time.
        """
        layout.LOCAL_STATE_DIR.mkdir(mode=0o700, exist_ok=True)
        python = str(self.python)
        for command in (["collectstatic", "--noinput"], ["migrate", "--noinput"]):
            print(f"django: manage.py {' '.join(command)}", flush=True)
            subprocess.run(
                [python, "manage.py", *command],
                cwd=layout.PROJECT_DIR,
                env=self.app_env(),
                check=True,
                capture_output=True,
            )

    def start_gunicorn(self, index: int) -> None:
        with open(self.logs / "gunicorn.log", "ab") as log:
            self.processes[f"gunicorn-{index + 1}"] = subprocess.Popen(
                [str(self.python), "-m", "gunicorn", "--config", str(layout.GUNICORN_CONF)],
                cwd=layout.PROJECT_DIR,
                env=self.gunicorn_env(index),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop_gunicorn(self, index: int) -> None:
        process = self.processes[f"gunicorn-{index + 1}"]
        process.terminate()
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def rolling_restart(self) -> bool:
        print(f"restart: {len(self.app_servers)} gunicorn instance(s), one at a time", flush=True)

        def restart(index: int) -> None:
            self.stop_gunicorn(index)
            self.start_gunicorn(index)

        done = rolling_restart(self.app_servers, restart, lambda line: print(line, flush=True))
        self.restarts += 1
        self.last_restart = "ok" if done else "failed: an instance did not answer /healthz (see gunicorn.log)"
        self.write_state()
        return done

    def start(self) -> None:
        if layout.FRAMEWORK == "django":
            self.prepare_django()
        for index in range(len(self.app_servers)):
            self.start_gunicorn(index)
        with open(self.logs / "nginx.stderr.log", "ab") as log:
            self.processes["nginx"] = subprocess.Popen(
                self.nginx_command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self, interrupted: list[int]) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if interrupted:
                raise RunLocalError("interrupted before the stack was ready")
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RunLocalError(f"{name} exited with status {process.returncode}:\n{self.log_tails()}")
            if answers(self.https_port or self.ports.http, tls=self.https_port is not None) == 200:
                return
            time.sleep(0.05)
        raise RunLocalError(f"no answer from {layout.HEALTH_PATH} within {READY_SECONDS}s:\n{self.log_tails()}")

    def log_tails(self) -> str:
        names = ("gunicorn.log", "nginx.stderr.log", "error.log")
        return "\n".join(f"  {name}:\n{tail(self.logs / name)}" for name in names if (self.logs / name).exists())

    def state(self) -> State:
        gunicorn_pids = [self.processes[f"gunicorn-{i + 1}"].pid for i in range(len(self.app_servers))]
        return State(
            pid=os.getpid(),
            url=self.url,
            port=self.ports.http,
            https_port=self.https_port,
            prefix=str(self.prefix),
            gunicorn_pids=gunicorn_pids,
            app_servers=self.app_servers,
            nginx_pid=self.processes["nginx"].pid,
            gunicorn_log=str(self.logs / "gunicorn.log"),
            nginx_access_log=str(self.logs / "access.log"),
            nginx_error_log=str(self.logs / "error.log"),
            restarts=self.restarts,
            last_restart=self.last_restart,
        )

    def write_state(self) -> None:
        # Written beside and renamed over: `--restart` and `--stop` may read it at any moment, and
        # must never see it half written.
        partial = STATE_FILE.with_name(STATE_FILE.name + ".partial")
        partial.write_text(json.dumps(asdict(self.state()), indent=2) + "\n")
        partial.replace(STATE_FILE)

    def stop(self) -> None:
        """Graceful first (gunicorn TERM, nginx QUIT), then KILL; then remove all but the logs."""
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT if name == "nginx" else signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        remove_all_but_logs(Path(self.prefix))


def chosen_ports(port: int | None, https_port: int | None) -> tuple[int, int]:
    """nginx's HTTP and HTTPS ports: as given, else 8080 and 8443 when free, else any free ones."""
    if https_port is not None and layout.TLS_MODE == "none":
        raise RunLocalError(f"--https-port {https_port}: this site serves no HTTPS (tls_mode is none)")
    if port is not None and port == https_port:
        raise RunLocalError(f"--port and --https-port are both {port}: nginx needs two ports")
    for flag, value in (("--port", port), ("--https-port", https_port)):
        if value is not None and not 1024 <= value <= 65535:
            raise RunLocalError(f"{flag} {value}: not a port from 1024 to 65535 (run-local runs unprivileged)")
        if value is not None and not port_is_free(value):
            raise RunLocalError(f"{flag} {value}: the port is in use on 127.0.0.1; pick another")
    taken = {value for value in (port, https_port) if value is not None}
    defaults = []
    for default in (8080, 8443):
        defaults.append(default if default not in taken and port_is_free(default) else free_port())
    return (port or defaults[0], https_port or defaults[1])


def run(port: int | None, https_port: int | None, venv: Path) -> int:
    nginx = find_nginx()
    if nginx is None:
        raise RunLocalError(INSTALL_NGINX)
    if STATE_FILE.exists():
        raise RunLocalError(f"already running or not stopped cleanly ({STATE_FILE}): deploy/run-local --stop")
    ports = chosen_ports(port, https_port)
    python = ensure_venv(venv)
    stack = LocalStack(nginx, python, *ports)
    signals: list[int] = []
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda signum, frame: signals.append(signum))
    try:
        stack.start()
        stack.wait_ready(signals)
        stack.write_state()
        print(f"ready: {stack.url} (nginx -> gunicorn)")
        if layout.DOMAIN != "localhost":
            at_domain = stack.url.replace("localhost", layout.DOMAIN, 1)
            print(f"also: {at_domain} where {layout.DOMAIN} points to 127.0.0.1 (e.g. in /etc/hosts)")
        if stack.https_port:
            plain = f"http://localhost:{stack.ports.http}/"
            print(f"http: {plain} redirects to HTTPS (a throwaway self-signed certificate)")
        if layout.FRAMEWORK == "django":
            print(f"admin: {stack.url}admin/ (a user for it: deploy/manage createsuperuser)")
        print(f"logs: {stack.logs}/ (gunicorn.log, access.log, error.log)")
        print("stop: Ctrl-C, or deploy/run-local --stop; rolling restart: deploy/run-local --restart", flush=True)
        while not any(number != signal.SIGHUP for number in signals):
            if signals:
                signals.clear()
                stack.rolling_restart()
            if stack.processes["nginx"].poll() is not None:
                raise RunLocalError(f"nginx exited with status {stack.processes['nginx'].returncode}")
            time.sleep(0.1)
    finally:
        print("stopping: nginx and gunicorn", flush=True)
        stack.stop()
        STATE_FILE.unlink(missing_ok=True)
    print(f"stopped: logs kept in {stack.logs}/")
    return 0


def running() -> State | None:
    """What .run-local.json says of the running stack, or None (and says so) when there is none."""
    if not STATE_FILE.exists():
        print("not running (no .run-local.json)")
        return None
    return State(**json.loads(STATE_FILE.read_text()))


def restart() -> int:
    """Ask the running run-local for a rolling restart, wait until it ended, and say how it went."""
    state = running()
    if state is None:
        return 1
    os.kill(state.pid, signal.SIGHUP)
    print(f"restart: asked run-local (pid {state.pid}), one gunicorn instance at a time", flush=True)
    # Each instance gets its stop time and its health time, as in rolling_restart.
    deadline = time.monotonic() + len(state.gunicorn_pids) * (STOP_SECONDS + HEALTHY_SECONDS) + 5
    while time.monotonic() < deadline:
        now = running()
        if now is None:
            print("restart: run-local stopped meanwhile", file=sys.stderr)
            return 1
        if now.restarts > state.restarts:
            print(f"restart: {now.last_restart}; gunicorn pids {state.gunicorn_pids} -> {now.gunicorn_pids}")
            return 0 if now.last_restart == "ok" else 1
        time.sleep(0.1)
    print("restart: not finished in time; see the output of run-local", file=sys.stderr)
    return 1


def stop() -> int:
    """Stop the stack that .run-local.json describes, even if its run-local was killed."""
    state = running()
    if state is None:
        return 0
    try:
        os.kill(state.pid, signal.SIGTERM)
    except ProcessLookupError:
        # run-local itself is gone: clean up after it.
        for pid, number in [(pid, signal.SIGTERM) for pid in state.gunicorn_pids] + [(state.nginx_pid, signal.SIGQUIT)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)
        remove_all_but_logs(Path(state.prefix))
        STATE_FILE.unlink(missing_ok=True)
        print(f"stopped: left-overs of a run-local that had died; logs kept in {state.prefix}/logs/")
        return 0
    deadline = time.monotonic() + STOP_SECONDS + 5
    while STATE_FILE.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if STATE_FILE.exists():
        print(f"run-local (pid {state.pid}) did not stop in time")
    else:
        print(f"stopped; logs kept in {Path(state.prefix) / 'logs'}/")
    return 0 if not STATE_FILE.exists() else 1


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="deploy/run-local",
        description="Run the production nginx site and gunicorn.conf.py on 127.0.0.1, unprivileged.",
    )
    parser.add_argument(
        "--port", type=int, help="nginx's HTTP port on 127.0.0.1 (default: 8080 if free, else any free one)"
    )
    parser.add_argument(
        "--https-port",
        type=int,
        help="nginx's HTTPS port on 127.0.0.1, with HTTPS (default: 8443 if free, else any free one)",
    )
    parser.add_argument(
        "--venv",
        type=Path,
        default=layout.LOCAL_VENV,
        help="virtualenv with gunicorn (default: %(default)s; created if missing)",
    )
    parser.add_argument("--stop", action="store_true", help="stop the stack a run-local in this project started")
    parser.add_argument(
        "--restart", action="store_true", help="rolling restart of the running stack's gunicorn instances"
    )
    args = parser.parse_args(argv)
    try:
        if args.stop:
            return stop()
        if args.restart:
            return restart()
        return run(args.port, args.https_port, args.venv)
    except RunLocalError as error:
        print(f"run-local: {error}", file=sys.stderr)
        return 1
