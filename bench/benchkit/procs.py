"""What the benchmark starts and stops: baked projects, run-local, gunicorn alone, scratch nginx.

Every server listens on 127.0.0.1 only, every wait is bounded in time, and every process started
here is stopped (gracefully, then killed) when its `with` block ends, also on Ctrl-C.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.metadata
import importlib.util
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

LOOPBACK = "127.0.0.1"
START_SECONDS = 60
STOP_SECONDS = 30
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """Something the benchmark needs did not work; the message says what and where to look."""


@dataclass
class Project:
    """A project baked from the template: its folder, the answers given, and its own layout.py.

    deploy/deploytools/layout.py holds every name derived from the answers (domain, static folder,
    environment file); the benchmark reads them there instead of deriving them again.
    """

    name: str  # "default" or the answers, as in "bind=tcp,workers=3"
    path: Path
    answers: dict[str, str]
    layout: ModuleType

    @property
    def slug(self) -> str:
        return self.layout.SLUG

    @property
    def domain(self) -> str:
        return self.layout.DOMAIN

    @property
    def static_dir(self) -> Path | None:
        """The folder nginx serves /static/ from under run-local (None: made at start-up)."""
        return getattr(self.layout, "STATIC_SOURCE", None)

    def app_env(self) -> dict[str, str]:
        """The variables run-local gives gunicorn besides the bind: the project's environment file."""
        env_file = getattr(self.layout, "ENV_SOURCE", None)
        if env_file is None or not env_file.exists():
            return {}
        lines = (line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line)
        return {key.strip(): value.strip().strip('"') for key, value in lines if not key.startswith("#")}


def load_layout(project: Path, number: int) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"baked_layout_{number}", project / "deploy/deploytools/layout.py")
    if spec is None or spec.loader is None:
        raise BenchError(f"{project}: no deploy/deploytools/layout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Server:
    """Something listening on 127.0.0.1: its port, and the pids whose CPU time counts for it."""

    name: str
    port: int
    pids: dict[str, list[int]]  # component ("nginx", "gunicorn") -> its master processes
    log: Path
    # Under run-local: its HTTPS port (TLS projects) and gunicorn's addresses ("unix:/path").
    https_port: int | None = None
    app_servers: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def find_nginx() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")
    if not found:
        raise BenchError("nginx is not installed: apt-get install nginx")
    return found


def status_of(port: int, path: str, host: str, timeout: float = 2) -> int | None:
    """The HTTP status for GET `path` on 127.0.0.1:`port`, or None if nothing answers."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Host": host})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def wait_answering(server: Server, path: str, host: str, seconds: float, process: subprocess.Popen | None) -> None:
    """Wait until `path` answers 200, or fail with the end of the server's log."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise BenchError(f"{server.name} exited with status {process.returncode}:\n{tail(server.log)}")
        if status_of(server.port, path, host) == 200:
            return
        time.sleep(0.05)
    raise BenchError(f"{server.name}: no 200 for {path} within {seconds:.0f}s:\n{tail(server.log)}")


def tail(path: Path, lines: int = 20) -> str:
    if not path.exists():
        return f"    ({path} was not written)"
    return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])


def stop(process: subprocess.Popen, graceful: signal.Signals, seconds: float = STOP_SECONDS) -> None:
    """`graceful` first, then SIGKILL to its process group (its own session) after `seconds`."""
    if process.poll() is None:
        process.send_signal(graceful)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# Baking ------------------------------------------------------------------------------------------


def bake(template: Path, out: Path, answers: dict[str, str]) -> tuple[Path, float]:
    """`cookiecutter --no-input` with these answers, post-gen validation included: (project, seconds)."""
    out.mkdir(parents=True)
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "--output-dir", str(out), str(template)]
    command += [f"{key}={value}" for key, value in answers.items()]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"cookiecutter {' '.join(command[5:])} failed:\n{done.stdout}{done.stderr}")
    (project,) = [path for path in out.iterdir() if path.is_dir()]
    return project, seconds


# The virtualenv the servers run from ------------------------------------------------------------


def pinned(requirements: Path) -> dict[str, str]:
    found = {}
    for line in requirements.read_text().splitlines():
        name, equals, version = line.split("#", 1)[0].strip().partition("==")
        if equals:
            found[name.strip()] = version.strip()
    return found


def has_pins(pins: dict[str, str]) -> bool:
    """Whether this Python has every pinned package at its pinned version."""
    try:
        return all(importlib.metadata.version(name) == version for name, version in pins.items())
    except importlib.metadata.PackageNotFoundError:
        return False


def venv_for(project: Project, venvs: Path) -> Path:
    """This Python's environment if it has the project's pinned requirements and gunicorn, else a venv
    made by the project's own deploy/setup-venv under `venvs`, one per set of requirements."""
    requirements = project.path / "requirements.txt"
    if (Path(sys.prefix) / "bin" / "gunicorn").exists() and has_pins(pinned(requirements)):
        return Path(sys.prefix)
    venv = venvs / hashlib.sha256(requirements.read_bytes()).hexdigest()[:12]
    if not (venv / "bin" / "gunicorn").exists():
        print(f"venv: {venv} for {project.name}, with deploy/setup-venv", flush=True)
    done = subprocess.run(
        [str(project.path / "deploy" / "setup-venv"), str(venv)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"deploy/setup-venv {venv} failed:\n{done.stdout}{done.stderr}")
    return venv


# The generated stack, under its own deploy/run-local ---------------------------------------------


@contextmanager
def run_local(project: Project, venv: Path, env: dict[str, str] | None = None) -> Iterator[Server]:
    """deploy/run-local of `project`: the generated nginx site in front of gunicorn.conf.py.

    `env`: run-local's whole environment (default: the benchmark's), which gunicorn inherits.
    """
    port = free_port()
    command = [str(project.path / "deploy" / "run-local"), "--venv", str(venv), "--port", str(port)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env
    )
    output: list[str] = []
    prefix: Path | None = None
    try:
        read_until_ready(process, output)
        state = json.loads((project.path / ".run-local.json").read_text())
        prefix = Path(state["prefix"])
        # One or more gunicorn instances, each its own master.
        pids = {"nginx": [state["nginx_pid"]], "gunicorn": state["gunicorn_pids"]}
        yield Server(
            f"run-local ({project.name})",
            state["port"],
            pids,
            Path(state["gunicorn_log"]),
            https_port=state.get("https_port"),
            app_servers=state.get("app_servers", []),
        )
    finally:
        # run-local stops its own nginx and gunicorn (gracefully, up to its own time limit) and
        # removes its scratch folder: give it the time, so that nothing it started is left behind.
        stop(process, signal.SIGTERM, seconds=3 * STOP_SECONDS)
        # It keeps the logs there, in the temporary folder: they move beside the project, in WORK.
        if prefix is not None and (prefix / "logs").is_dir():
            kept = project.path.parent / "run-local-logs"
            shutil.rmtree(kept, ignore_errors=True)
            shutil.move(prefix / "logs", kept)
            shutil.rmtree(prefix, ignore_errors=True)


def read_until_ready(process: subprocess.Popen[str], output: list[str]) -> None:
    """Read run-local's output up to its "ready:" line, or fail with what it said."""
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
            break
        line = process.stdout.readline()
        if not line:
            break
        output.append(line.rstrip("\n"))
        if line.startswith("ready:"):
            return
    raise BenchError("deploy/run-local did not become ready:\n" + "\n".join(output))


# gunicorn without nginx --------------------------------------------------------------------------


@contextmanager
def gunicorn_alone(
    name: str, project: Project, venv: Path, work: Path, *, app: list[str] | None = None, env: dict | None = None
) -> Iterator[Server]:
    """The project's gunicorn.conf.py bound to TCP on 127.0.0.1 (GUNICORN_BIND), as run-local runs it.

    `app` replaces the configured application (gunicorn's positional argument wins over wsgi_app).
    """
    port = free_port()
    runtime = work / name
    runtime.mkdir(parents=True)
    log = runtime / "gunicorn.log"
    # RUNTIME_DIRECTORY: the control socket opens inside the scratch folder, as under run-local.
    environment = {
        **os.environ,
        **project.app_env(),
        "GUNICORN_BIND": f"{LOOPBACK}:{port}",
        "RUNTIME_DIRECTORY": str(runtime),
    }
    command = [str(venv / "bin" / "gunicorn"), "--config", str(project.path / "gunicorn.conf.py"), *(app or [])]
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command,
            cwd=project.path,
            env={**environment, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, port, {"gunicorn": [process.pid]}, log)
    try:
        yield server
    finally:
        stop(process, signal.SIGTERM)


# nginx with a site of the benchmark's own (the baselines) ----------------------------------------


def project_nginx(project: Path) -> ModuleType:
    """The baked project's deploytools.nginx: the scratch nginx of run-local and deploy/check."""
    deploy = str(project / "deploy")
    if deploy not in sys.path:
        sys.path.insert(0, deploy)
    import deploytools.nginx  # type: ignore[import-not-found]

    return deploytools.nginx


@contextmanager
def scratch_nginx(
    name: str, nginx: str, prefix: Path, site: str, port: int, host: str, project: Path
) -> Iterator[Server]:
    """nginx in the foreground with `site` (which listens on 127.0.0.1:`port`), in a scratch prefix
    laid out as the baked `project`'s run-local lays out its own."""
    scratch = project_nginx(project)
    scratch.make_prefix(prefix)
    site_file = prefix / "conf" / "site.conf"
    site_file.write_text(site)
    conf = prefix / "conf" / "nginx.conf"
    conf.write_text(scratch.main_conf(prefix, nginx, site_file, foreground=True))
    log = prefix / "logs" / "error.log"
    checked = subprocess.run([nginx, "-t", "-q", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
    if checked.returncode != 0:
        raise BenchError(f"{name}: nginx -t failed:\n{checked.stderr}")
    with open(prefix / "logs" / "nginx.stderr.log", "ab") as output:
        process = subprocess.Popen(
            [nginx, "-p", str(prefix), "-c", str(conf)], stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(name, port, {"nginx": [process.pid]}, log)
    try:
        wait_answering(server, "/", host, START_SECONDS, process)
        yield server
    finally:
        stop(process, signal.SIGQUIT)


# Processes and their CPU time --------------------------------------------------------------------


def stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # the process ended while we looked


def children_of(parent: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = stat_fields(int(stat.parent.name))
        if fields and int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def cpu_seconds(masters: list[int]) -> float:
    """CPU time of masters and their workers so far, including workers that already exited.

    A worker that exits (gunicorn's max_requests) hands its time to the master's cutime/cstime
    once reaped, so the difference between two readings counts every worker that ran in between.
    """
    total = 0
    for pid in [*masters, *(child for master in masters for child in children_of(master))]:
        fields = stat_fields(pid)
        if fields:
            # utime, stime, cutime, cstime: fields 14-17 of /proc/PID/stat (11-14 after the name).
            total += sum(int(value) for value in fields[11:15])
    return total / CLOCK_TICKS
