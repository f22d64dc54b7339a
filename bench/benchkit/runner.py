"""The cases, run in interleaved rounds against servers started once, and the targets they meet.

Round r runs every case once, in the same order (A B C ... A B C ...), so a slow spell of the
machine lands on all setups alike; each figure reported is the median over the rounds.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from . import database, load, postgres, whatif
from .procs import (
    START_SECONDS,
    BenchError,
    Project,
    Server,
    bake,
    children_of,
    find_nginx,
    free_port,
    gunicorn_alone,
    load_layout,
    run_local,
    scratch_nginx,
    venv_for,
    wait_answering,
)

BENCH_DIR = Path(__file__).resolve().parents[1]
STATIC_FILE = "bench-100k.bin"
STATIC_BYTES = 100 * 1024
# After a database page's load, what its workers still hold is counted this long after wrk stopped.
AFTER_SECONDS = 0.5


@dataclass
class Settings:
    rounds: int
    duration: int  # seconds of load per case
    connections: int = 50  # wrk's connections for the throughput cases, over `threads` threads
    threads: int = 2
    slow_clients: int = 100
    # The "normal requests" measured while the slow clients are open: a few steady clients, each
    # pausing between its requests, so that the machine is not saturated and p99 shows waiting.
    normal_connections: int = 4
    normal_pause_ms: int = 10
    smoke: bool = False
    only: str | None = None  # "database": the database pages alone

    @property
    def databases(self) -> bool:
        """Whether the database pages are measured: in a full run, and alone (a smoke run has its own)."""
        return self.only == "database" or not self.smoke


@dataclass
class Case:
    id: str
    group: str
    label: str
    run: Callable[[], dict] | None  # None in results read back from results.json
    line: Callable[[dict], str] | None


@dataclass
class Target:
    id: str
    label: str
    measured: float | None
    limit: float
    kind: str  # "min" (measured >= limit), "above" (measured > limit), "max" (<=), "below" (<)
    unit: str  # "x" for a ratio, "s", "failed"
    detail: str
    per_round: list[float | None] = field(default_factory=list)  # the same ratio (or value), round by round

    @property
    def met(self) -> bool:
        if self.measured is None:
            return False
        return {
            "min": self.measured >= self.limit,
            "above": self.measured > self.limit,
            "max": self.measured <= self.limit,
            "below": self.measured < self.limit,
        }[self.kind]

    @property
    def verdict(self) -> str:
        if self.met:
            return "met"
        if self.measured is None:
            return "missed (no answer to measure)"
        if self.unit == "failed":
            return f"missed by {self.measured:.0f} failed requests"
        if self.kind in ("min", "above"):
            return f"missed by {(self.limit - self.measured) / self.limit:.1%}"
        return f"missed by {(self.measured - self.limit) / self.limit:.1%}"


@dataclass
class Results:
    settings: Settings
    meta: dict
    cases: list[Case] = field(default_factory=list)
    rounds: dict[str, list[dict]] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    what_ifs: list[dict] = field(default_factory=list)  # what each extra case changes, and why

    def median(self, case_id: str, key: str) -> float | None:
        values = [r[key] for r in self.rounds.get(case_id, []) if r.get(key) is not None]
        return statistics.median(values) if values else None


def fmt_ms(metrics: dict, prefix: str = "") -> str:
    if metrics[prefix + "timed_out"] and not metrics[prefix + "requests"]:
        return "no answer"
    return f"p50 {metrics[prefix + 'p50_ms']:.2f} ms  p99 {metrics[prefix + 'p99_ms']:.2f} ms"


def throughput_line(metrics: dict) -> str:
    cpu = metrics["cpu_us_per_request"]
    parts = " + ".join(f"{name} {value:.0f}" for name, value in cpu.items() if value is not None)
    return (
        f"{metrics['rps']:>9,.0f} req/s  {fmt_ms(metrics)}  {metrics['failed']} failed  (CPU us/req: {parts}; "
        f"other load {metrics['other_cores']:.2f} cores)"
    )


class Benchmark:
    def __init__(
        self,
        settings: Settings,
        template: Path,
        variants: list[dict[str, str]],
        work: Path,
        venvs: Path,
        venv: Path | None = None,
    ):
        self.settings = settings
        self.template = template
        self.variants = variants
        self.work = work
        self.venvs = venvs  # where virtualenvs made for the projects are kept between runs
        self.venv_override = venv
        self.what_ifs: list[tuple[whatif.WhatIf, Project]] = []
        self.venv: dict[str, Path] = {}  # project name -> the virtualenv its servers run from
        self.wrk = load.find_wrk()
        self.nginx = find_nginx()
        self.projects: list[Project] = []
        self.servers: dict[str, Server] = {}
        self.hosts: dict[str, str] = {}  # server name -> the Host its project answers (its domain_name)
        # Projects of the cache, TLS and I/O-bound cases, by the key of EXTRAS.
        self.extras: dict[str, Project] = {}
        # The database pages: each case with its copy of a project, and the throwaway PostgreSQL.
        self.db_cases: list[tuple[database.DbCase, Project]] = []
        self.cluster: postgres.Cluster | None = None
        self.psql: postgres.Session | None = None
        self.results = Results(settings, {})

    # Set-up -------------------------------------------------------------------------------------

    def describe_machine(self) -> dict:
        def version(command: list[str], pattern: str) -> str:
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
            except OSError:
                return "?"
            found = re.search(pattern, done.stdout + done.stderr)
            return found.group(1) if found else "?"

        gunicorn = r"\(version ([^)]+)\)"
        cpu_model = "?"
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
        return {
            "date": time.strftime("%Y-%m-%d"),
            "load_average_before": round(os.getloadavg()[0], 2),
            "cores": os.cpu_count(),
            "cpu": cpu_model,
            "kernel": platform.release(),
            "python": platform.python_version(),
            "nginx": version([self.nginx, "-v"], r"nginx/(\S+)"),
            "gunicorn": version([str(next(iter(self.venv.values())) / "bin" / "gunicorn"), "--version"], gunicorn),
            "wrk": version([self.wrk, "--version"], r"wrk (\S+)"),
        }

    def bake_projects(self) -> None:
        if self.settings.only != "database":
            self.bake_main_projects()
        if self.settings.databases:
            self.bake_database_projects()

    def bake_database_projects(self) -> None:
        cases = database.catalogue(self.settings.smoke)
        work = self.work / "projects" / "database"
        bases = database.bake_bases(self.template, work, {}, {case.worker_class for case in cases})
        venv = self.venv_override or venv_for(bases["gevent"], self.venvs)
        for number, case in enumerate(cases):
            copy = database.copy_for(case, bases[case.worker_class], work, number)
            self.db_cases.append((case, copy))
            self.venv[case.id] = venv
        print(f"baked: {len(bases)} Django projects for {len(cases)} database cases -> {work}", flush=True)

    def bake_main_projects(self) -> None:
        for number, answers in enumerate([{}, *self.variants]):
            name = ",".join(f"{key}={value}" for key, value in answers.items()) or "default"
            path, seconds = bake(self.template, self.work / "projects" / str(number), answers)
            project = Project(name, path, answers, load_layout(path, number))
            if getattr(project.layout, "TLS_MODE", "none") != "none":
                raise BenchError(f"{name}: the benchmark speaks plain HTTP; measure a project with tls_mode=none")
            self.projects.append(project)
            self.venv[name] = self.venv_override or venv_for(project, self.venvs)
            print(f"baked: {name} -> {path} ({seconds:.2f} s; servers run from {self.venv[name]})", flush=True)
        default = self.projects[0]
        if default.static_dir is None:
            raise BenchError("the default project has no static folder for nginx to serve")
        (default.static_dir / STATIC_FILE).write_bytes(os.urandom(STATIC_BYTES))
        for number, what_if in enumerate(whatif.CATALOGUE, len(self.projects)):
            if self.settings.smoke and not what_if.in_smoke:
                continue
            made = whatif.prepare(what_if, self.template, default, self.work / "projects" / str(number), number)
            if isinstance(made, str):
                print(f"what-if {what_if.id}: skipped, {made}", flush=True)
                self.results.what_ifs.append({"id": what_if.id, "label": what_if.label, "skipped": made})
                continue
            self.what_ifs.append((what_if, made))
            entry = {"id": what_if.id, "label": what_if.label, "short": what_if.short, "why": what_if.why}
            entry["static"] = what_if.static
            self.results.what_ifs.append(entry)
            self.venv[made.name] = self.venv_override or venv_for(made, self.venvs)
            print(f"what-if {what_if.id}: {made.path}", flush=True)
        first = len(self.projects) + len(whatif.CATALOGUE)
        for number, (key, answers) in enumerate(EXTRAS.items(), first):
            path, _ = bake(self.template, self.work / "projects" / str(number), {**default.answers, **answers})
            if key.startswith("io-"):
                shutil.copy(BENCH_DIR / "benchkit" / "ioapp.py", path / "wsgi.py")
            extra = Project(key, path, {**default.answers, **answers}, load_layout(path, number))
            self.extras[key] = extra
            self.venv[key] = self.venv_override or venv_for(extra, self.venvs)
            print(f"baked: {key} -> {path}", flush=True)

    def start_servers(self, stack: ExitStack) -> None:
        if self.settings.only != "database":
            self.start_main_servers(stack)
        if self.settings.databases:
            self.start_database_servers(stack)

    def start_database_servers(self, stack: ExitStack) -> None:
        """The throwaway PostgreSQL, then one stack per database case."""
        self.cluster = stack.enter_context(postgres.throwaway_cluster(database.MAX_CONNECTIONS))
        self.psql = postgres.Session(self.cluster)
        stack.callback(self.psql.close)
        self.results.meta["postgresql"] = self.cluster.version
        self.results.meta["max_connections"] = self.cluster.max_connections
        print(f"started: PostgreSQL {self.cluster.version} on a unix socket in {self.cluster.socket_dir}", flush=True)
        for case, project in self.db_cases:
            settings = self.cluster.app_env(case.id) if case.database == "postgresql" else None
            server = stack.enter_context(run_local(project, self.venv[case.id], case.env(settings)))
            if case.database == "postgresql":
                # The server's CPU time counts for the case too (the other stacks' connections idle).
                server.pids["postgresql"] = [self.cluster.pid]
            self.servers[f"stack:{case.id}"] = server
            self.hosts[server.name] = project.domain
            print(f"started: {case.label} on 127.0.0.1:{server.port}", flush=True)

    def start_main_servers(self, stack: ExitStack) -> None:
        default = self.projects[0]
        host = default.domain
        # Each project, and each what-if, under its run-local and (but for static ones) as gunicorn alone.
        stack_only = {project.name for what_if, project in self.what_ifs if not what_if.alone}
        stack_only |= {project.name for project in self.extras.values()}
        for project in [*self.projects, *(project for _, project in self.what_ifs), *self.extras.values()]:
            server = stack.enter_context(run_local(project, self.venv[project.name]))
            self.servers[f"stack:{project.name}"] = server
            self.hosts[server.name] = project.domain
            print(f"started: generated stack ({project.name}) on 127.0.0.1:{server.port}", flush=True)
            if project.name in stack_only:
                continue
            alone = gunicorn_alone(f"gunicorn-{len(self.servers)}", project, self.venv[project.name], self.work)
            alone = stack.enter_context(alone)
            self.hosts[alone.name] = project.domain
            wait_answering(alone, "/healthz", project.domain, START_SECONDS, None)
            self.servers[f"gunicorn:{project.name}"] = alone
            print(f"started: gunicorn alone ({project.name}) on 127.0.0.1:{alone.port}", flush=True)

        files = stack.enter_context(
            gunicorn_alone(
                "gunicorn-files",
                default,
                self.venv["default"],
                self.work,
                app=["--pythonpath", str(BENCH_DIR), "benchkit.fileapp:application"],
                env={"BENCH_STATIC_DIR": str(default.static_dir)},
            )
        )
        wait_answering(files, f"/static/{STATIC_FILE}", host, START_SECONDS, None)
        self.servers["gunicorn-files"] = files
        print(f"started: gunicorn file app on 127.0.0.1:{files.port}", flush=True)

        port = free_port()
        guide_site = GUIDE_SITE.format(port=port, host=host, app=self.servers["gunicorn:default"].port)
        guide = scratch_nginx(
            "guide", self.nginx, self.work / "servers" / "nginx-guide", guide_site, port, host, default.path
        )
        guide = stack.enter_context(guide)
        # The guide's nginx shares gunicorn with "gunicorn alone": its CPU time is counted here too.
        guide.pids["gunicorn"] = self.servers["gunicorn:default"].pids["gunicorn"]
        self.servers["guide"] = guide
        print(f"started: the guide's plain nginx on 127.0.0.1:{port}", flush=True)

        port = free_port()
        generated = self.servers["stack:default"]
        bare_site = BARE_SITE.format(port=port, host=host, app=generated.app_servers[0])
        prefix = self.work / "servers" / "nginx-bare"
        bare = stack.enter_context(scratch_nginx("bare", self.nginx, prefix, bare_site, port, host, default.path))
        # The bare proxy shares gunicorn with the generated stack: its CPU time is counted here too.
        bare.pids["gunicorn"] = generated.pids["gunicorn"]
        self.servers["bare"] = bare
        print(f"started: bare nginx proxy to the stack's gunicorn on 127.0.0.1:{port}", flush=True)

        port = free_port()
        ceiling_site = CEILING_SITE.format(port=port, host=host)
        ceiling = scratch_nginx(
            "return-200", self.nginx, self.work / "servers" / "nginx-200", ceiling_site, port, host, default.path
        )
        self.servers["return-200"] = stack.enter_context(ceiling)
        print(f"started: nginx return 200 on 127.0.0.1:{port}", flush=True)

    def warm_up(self) -> None:
        """One second of load on each app server: workers import and fill their caches first."""
        for key, server in self.servers.items():
            if key == "stack:tls":
                continue  # its port 80 only redirects; the TLS cases warm themselves up
            path = f"/static/{STATIC_FILE}" if key == "gunicorn-files" else "/"
            if key.startswith("stack:db-"):
                path = database.PAGE
            self.load(server, path, seconds=1)

    # Measurements -------------------------------------------------------------------------------

    def load(self, server: Server, path: str, *, seconds: int | None = None, **kwargs) -> load.WrkResult:
        options = {"connections": self.settings.connections, "threads": self.settings.threads, **kwargs}
        host = self.hosts.get(server.name) or self.projects[0].domain
        return load.wrk(self.wrk, server, path, host, seconds=seconds or self.settings.duration, **options)

    def throughput(self, key: str, path: str = "/", headers: dict[str, str] | None = None) -> dict:
        return self.load(self.servers[key], path, headers=headers).metrics()

    def io_bound(self, key: str) -> dict:
        """The 20 ms page through the stack, and the most its workers could answer in parallel."""
        project = self.extras[key]
        workers = 2 * (os.cpu_count() or 1) + 1
        worker_class = project.layout.WORKER_CLASS
        per_worker = {"sync": 1, "gthread": int(project.answers.get("threads", 4))}.get(worker_class, 1000)
        parallel = min(workers * per_worker, self.settings.connections)
        metrics = self.throughput(f"stack:{key}")
        limit = parallel / 0.020
        return {**metrics, "parallel": parallel, "limit_rps": limit, "share_of_limit": round(metrics["rps"] / limit, 3)}

    def database_page(self, case: database.DbCase) -> dict:
        """GET /db through the stack, with the connections its workers held meanwhile, and after."""
        server = self.servers[f"stack:{case.id}"]
        if case.database == "postgresql":
            assert self.psql is not None
            count = partial(self.psql.connections, case.id)
        else:
            count = partial(database.sqlite_connections, server)
        with load.sampled(count) as held:
            metrics = self.load(server, database.PAGE).metrics()
        time.sleep(AFTER_SECONDS)  # requests wrk left unfinished end, and their connections with them
        workers = 2 * (os.cpu_count() or 1) + 1
        parallel = min(workers * case.per_worker, self.settings.connections)
        return {
            **metrics,
            "parallel": parallel,
            "connections_max": max(held, default=None),
            "connections_after": count(),
            "samples": len(held),
        }

    def tls_h2(self) -> dict:
        server = self.servers["stack:tls"]
        assert server.https_port is not None
        options = {"connections": self.settings.connections, "threads": self.settings.threads}
        return load.h2load(server, server.https_port, "/", "localhost", seconds=self.settings.duration, **options)

    def tls_handshakes(self, resume: bool) -> dict:
        server = self.servers["stack:tls"]
        assert server.https_port is not None
        path = "/static/style.css"
        return load.tls_handshakes(server.https_port, "localhost", path, seconds=self.settings.duration, resume=resume)

    def slow_clients(self, key: str) -> dict:
        """p99 of a few steady clients, first alone, then with 100 slow connections open."""
        server = self.servers[key]
        host = self.projects[0].domain
        steady = {
            "connections": self.settings.normal_connections,
            "threads": 1,
            "pause_ms": self.settings.normal_pause_ms,
        }
        idle = self.load(server, "/", **steady)
        with load.slow_clients(server.port, host, self.settings.slow_clients, self.settings.duration + 5) as opened:
            time.sleep(0.5)  # every slow connection is open and has sent its first bytes
            busy = self.load(server, "/", **steady)
        # A server whose workers were all held by slow clients must be back before the next case.
        wait_answering(server, "/healthz", host, START_SECONDS, None)
        metrics = {f"idle_{k}": v for k, v in idle.metrics().items()}
        metrics |= {f"slow_{k}": v for k, v in busy.metrics().items()}
        metrics["slow_connections"] = opened
        return metrics

    def reload(self, project: Project) -> dict:
        """HUP to gunicorn's master (each one, if several instances) a third into a load through nginx."""
        server = self.servers[f"stack:{project.name}"]
        masters = server.pids["gunicorn"]
        log = self.servers[f"stack:{project.name}"].log
        log_before = log.stat().st_size
        workers = {master: len(children_of(master)) for master in masters}

        def hup() -> None:
            for master in masters:
                os.kill(master, signal.SIGHUP)

        result = self.load(server, "/", during=(self.settings.duration / 3, hup))
        with log.open("rb") as lines:
            lines.seek(log_before)
            reloads = lines.read().lower().count(b"handling signal: hup")
        # Back to a full set of workers before anything else is measured.
        deadline = time.monotonic() + START_SECONDS
        while any(len(children_of(m)) < n for m, n in workers.items()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return {**result.metrics(), "reloaded": reloads >= len(masters)}

    def bake_time(self, project: Project) -> dict:
        out = self.work / "bakes" / f"{time.monotonic_ns()}"
        _, seconds = bake(self.template, out, project.answers)
        shutil.rmtree(out)
        return {"seconds": round(seconds, 3)}

    # The plan -----------------------------------------------------------------------------------

    def plan(self) -> list[Case]:
        """Every case of a round, in order; the baselines are measured once, for the default project."""
        cases = [] if self.settings.only == "database" else self.main_plan()
        cases += [
            Case(case.id, "database", case.label, partial(self.database_page, case), database_line)
            for case, _ in self.db_cases
        ]
        return cases

    def main_plan(self) -> list[Case]:
        static = f"/static/{STATIC_FILE}"
        cases = []
        for project in self.projects:
            tag, suffix = variant_tags(project)
            stack, alone = f"stack:{project.name}", f"gunicorn:{project.name}"
            bind = "TCP" if project.answers.get("bind") == "tcp" else "unix socket"
            cases += [
                Case(
                    f"dynamic-stack{tag}",
                    "dynamic",
                    f"generated stack: nginx -> gunicorn ({bind}){suffix}",
                    partial(self.throughput, stack),
                    throughput_line,
                ),
                Case(
                    f"dynamic-gunicorn{tag}",
                    "dynamic",
                    f"gunicorn alone, same gunicorn.conf.py, TCP{suffix}",
                    partial(self.throughput, alone),
                    throughput_line,
                ),
            ]
            if project is self.projects[0]:
                cases += [
                    Case(
                        "dynamic-bare",
                        "dynamic",
                        "bare nginx: only proxy_pass to the stack's gunicorn socket, no log, no headers",
                        partial(self.throughput, "bare"),
                        throughput_line,
                    ),
                    Case(
                        "dynamic-gzip",
                        "dynamic",
                        "generated stack, the client accepts gzip (answers compressed)",
                        partial(self.throughput, stack, "/", {"Accept-Encoding": "gzip"}),
                        throughput_line,
                    ),
                    Case(
                        "dynamic-guide",
                        "dynamic",
                        "the guide's plain nginx site -> same gunicorn, TCP",
                        partial(self.throughput, "guide"),
                        throughput_line,
                    ),
                    Case(
                        "dynamic-nginx-return",
                        "dynamic",
                        "nginx `return 200` (the proxy's ceiling)",
                        partial(self.throughput, "return-200"),
                        throughput_line,
                    ),
                ]
                for what_if, changed in self.what_ifs:
                    if what_if.static:
                        continue
                    cases.append(
                        Case(
                            f"what-if-{what_if.id}",
                            "what-if",
                            f"{what_if.label}: generated stack",
                            partial(self.throughput, f"stack:{changed.name}"),
                            throughput_line,
                        )
                    )
                    if what_if.alone:
                        cases.append(
                            Case(
                                f"what-if-{what_if.id}-gunicorn",
                                "what-if",
                                f"{what_if.label}: gunicorn alone",
                                partial(self.throughput, f"gunicorn:{changed.name}"),
                                throughput_line,
                            )
                        )
                cases += [
                    Case(
                        "cache-stack",
                        "cache",
                        "generated stack with cache=on, GET /cached (Cache-Control: public, max-age=60)",
                        partial(self.throughput, "stack:cache", "/cached"),
                        throughput_line,
                    ),
                    Case(
                        "cache-gunicorn",
                        "cache",
                        "gunicorn alone, GET /cached (the same app, no cache)",
                        partial(self.throughput, alone, "/cached"),
                        throughput_line,
                    ),
                ]
                cases += [
                    Case(
                        "static-nginx",
                        "static",
                        "via the generated nginx /static/",
                        partial(self.throughput, stack, static),
                        throughput_line,
                    ),
                    Case(
                        "static-gunicorn",
                        "static",
                        "via gunicorn (a file app with sendfile, same gunicorn.conf.py)",
                        partial(self.throughput, "gunicorn-files", static),
                        throughput_line,
                    ),
                    *(
                        Case(
                            f"what-if-{what_if.id}",
                            "what-if",
                            f"{what_if.label}: 100 KB file via nginx",
                            partial(self.throughput, f"stack:{changed.name}", static),
                            throughput_line,
                        )
                        for what_if, changed in self.what_ifs
                        if what_if.static
                    ),
                    *(
                        Case(
                            key,
                            "io-bound",
                            f"{EXTRAS[key]['worker_class']} workers: a page that waits 20 ms, through the stack",
                            partial(self.io_bound, key),
                            io_line,
                        )
                        for key in EXTRAS
                        if key.startswith("io-")
                    ),
                    Case(
                        "tls-h2",
                        "tls",
                        "HTTPS with HTTP/2 (h2load), GET / through the stack",
                        self.tls_h2,
                        lambda m: f"{m['rps']:>9,.0f} req/s over {m['protocol']}, {m['failed']} failed",
                    ),
                    Case(
                        "tls-handshakes-new",
                        "tls",
                        "new TLS connections, full handshake each",
                        partial(self.tls_handshakes, False),
                        handshake_line,
                    ),
                    Case(
                        "tls-handshakes-resumed",
                        "tls",
                        "new TLS connections, each resuming the previous session",
                        partial(self.tls_handshakes, True),
                        handshake_line,
                    ),
                    Case(
                        "slow-nginx",
                        "slow clients",
                        "behind the generated nginx",
                        partial(self.slow_clients, stack),
                        slow_line,
                    ),
                    Case(
                        "slow-gunicorn",
                        "slow clients",
                        "gunicorn exposed directly",
                        partial(self.slow_clients, alone),
                        slow_line,
                    ),
                ]
            cases += [
                Case(
                    f"reload{tag}",
                    "reload",
                    f"HUP to gunicorn under load, through nginx{suffix}",
                    partial(self.reload, project),
                    reload_line,
                ),
                Case(
                    f"bake{tag}",
                    "bake",
                    f"cookiecutter --no-input + deploy/check{suffix}",
                    partial(self.bake_time, project),
                    lambda m: f"{m['seconds']:.2f} s",
                ),
            ]
        return cases

    def run(self) -> Results:
        self.bake_projects()
        self.results.meta = self.describe_machine()
        busy_before, _ = load.machine_cpu()
        time.sleep(1)
        busy = load.machine_cpu()[0] - busy_before
        if busy > 0.2:
            print(
                f"note: other work keeps {busy:.1f} cores busy: the numbers will be noisy (each case prints its "
                "other load; an idle machine gives ratios to trust)",
                flush=True,
            )
        cases = self.plan()
        self.results.cases = cases
        with ExitStack() as stack:
            self.start_servers(stack)
            if not self.settings.smoke:  # a smoke run's numbers mean nothing anyway
                self.warm_up()
            for number in range(1, self.settings.rounds + 1):
                for case in cases:
                    metrics = case.run()
                    self.results.rounds.setdefault(case.id, []).append(metrics)
                    print(f"round {number}/{self.settings.rounds}  {case.id:<28} {case.line(metrics)}", flush=True)
        self.results.targets = targets(self.results)
        self.results.what_ifs = what_if_numbers(self.results)
        return self.results


def targets(r: Results) -> list[Target]:
    """Every target, from the rounds alone (so that results.json is enough to compute them again)."""
    # "" for the default project, then "[bind=tcp]" and so on for each variant, in the order run.
    tags = [case.removeprefix("dynamic-stack") for case in r.rounds if case.startswith("dynamic-stack")]
    found = []
    for tag in tags:
        suffix = f" {tag}" if tag else ""
        if tag:
            found.append(
                ratio_target(
                    r,
                    f"stack-vs-gunicorn{tag}",
                    f"dynamic: generated stack vs gunicorn alone{suffix}",
                    0.95,
                    "min",
                    (f"dynamic-stack{tag}", "rps"),
                    (f"dynamic-gunicorn{tag}", "rps"),
                )
            )
        else:
            found += [
                ratio_target(
                    r,
                    "stack-vs-bare",
                    "dynamic: generated stack vs a bare nginx proxy to the same gunicorn",
                    0.90,
                    "min",
                    ("dynamic-stack", "rps"),
                    ("dynamic-bare", "rps"),
                ),
                ratio_target(
                    r,
                    "stack-vs-guide",
                    "dynamic: generated stack vs the guide's plain setup",
                    1.0,
                    "min",
                    ("dynamic-stack", "rps"),
                    ("dynamic-guide", "rps"),
                ),
            ]
            if "what-if-previous-defaults" in r.rounds:
                found.append(
                    ratio_target(
                        r,
                        "stack-vs-previous-defaults",
                        "dynamic: generated stack vs the previous defaults",
                        1.2,
                        "min",
                        ("dynamic-stack", "rps"),
                        ("what-if-previous-defaults", "rps"),
                    )
                )
            found += [
                ratio_target(
                    r,
                    "cache-vs-gunicorn",
                    "cacheable page: stack with cache=on vs gunicorn alone",
                    10.0,
                    "min",
                    ("cache-stack", "rps"),
                    ("cache-gunicorn", "rps"),
                ),
                ratio_target(
                    r,
                    "static-nginx-vs-gunicorn",
                    "static 100 KB: via nginx vs via gunicorn",
                    10.0,
                    "min",
                    ("static-nginx", "rps"),
                    ("static-gunicorn", "rps"),
                ),
                ratio_target(
                    r,
                    "slow-clients-p99",
                    "slow clients: p99 behind nginx vs its idle p99",
                    2.0,
                    "max",
                    ("slow-nginx", "slow_p99_ms"),
                    ("slow-nginx", "idle_p99_ms"),
                ),
            ]
        reloads = r.rounds[f"reload{tag}"]
        found.append(
            Target(
                f"reload-failed{tag}",
                f"reload: failed requests during a HUP{suffix}",
                sum(m["failed"] for m in reloads),
                0,
                "max",
                "failed",
                "per round: " + ", ".join(str(m["failed"]) for m in reloads),
            )
        )
        bakes = r.rounds[f"bake{tag}"]
        found.append(
            Target(
                f"bake-seconds{tag}",
                f"bake + validation{suffix}",
                r.median(f"bake{tag}", "seconds"),
                3.0,
                "below",
                "s",
                "median of " + ", ".join(f"{m['seconds']:.2f}" for m in bakes) + " s",
                per_round=[m["seconds"] for m in bakes],
            )
        )
    return found


def paired_ratio(r: Results, top: tuple[str, str], bottom: tuple[str, str]) -> tuple[float | None, list]:
    """The median of the per-round ratios top / bottom (each a case and one of its metrics), and those.

    Round by round, the two cases ran seconds apart: their ratio is free of the machine's slower
    and faster spells, which a ratio of two medians taken from different rounds is not.
    """
    pairs = zip(r.rounds[top[0]], r.rounds[bottom[0]], strict=True)
    per_round = [ratio(a[top[1]], b[bottom[1]]) for a, b in pairs]
    if not per_round or None in per_round:
        return None, per_round
    return statistics.median(per_round), per_round


def ratio_target(
    r: Results, target_id: str, label: str, limit: float, kind: str, top: tuple[str, str], bottom: tuple[str, str]
) -> Target:
    """A target on a ratio of two measurements, as the median of its per-round values."""
    measured, per_round = paired_ratio(r, top, bottom)
    unit = "ms" if top[1].endswith("_ms") else "req/s"
    # A latency with requests left unanswered is no latency: no ratio to compare then.
    if unit == "ms" and any(m.get(top[1].replace("p99_ms", "timed_out")) for m in r.rounds[top[0]]):
        measured = None
    if measured is None:
        return Target(target_id, label, None, limit, kind, "x", "no answer", per_round)
    digits = ",.0f" if unit == "req/s" else ".2f"
    medians = f"medians {r.median(*top):{digits}} / {r.median(*bottom):{digits}} {unit}"
    return Target(target_id, label, measured, limit, kind, "x", medians, per_round)


def what_if_numbers(r: Results) -> list[dict]:
    """The what-if entries with their figures: against the same case as generated, and (dynamic ones)
    against gunicorn alone with the same change, the first target's ratio had the change been made."""
    found = []
    for entry in r.what_ifs:
        case = f"what-if-{entry['id']}"
        if "skipped" not in entry:
            alone = f"{case}-gunicorn"
            baseline = "static-nginx" if entry.get("static") else "dynamic-stack"
            vs_baseline, per_round = paired_ratio(r, (case, "rps"), (baseline, "rps"))
            entry = {**entry, "case": case, "baseline": baseline, "vs_baseline": vs_baseline}
            entry["vs_baseline_per_round"] = per_round
            for key in ("rps", "p99_ms"):
                entry[key], entry[f"baseline_{key}"] = r.median(case, key), r.median(baseline, key)
            # CPU time per request of nginx and gunicorn together: steadier than req/s on a busy machine.
            entry["cpu_us"], entry["baseline_cpu_us"] = server_cpu_us(r, case), server_cpu_us(r, baseline)
            if alone in r.rounds:
                ratio_alone, per_round = paired_ratio(r, (case, "rps"), (alone, "rps"))
                entry |= {
                    "gunicorn_rps": r.median(alone, "rps"),
                    "stack_vs_gunicorn": ratio_alone,
                    "stack_vs_gunicorn_per_round": per_round,
                }
        found.append(entry)
    return found


def server_cpu_us(r: Results, case_id: str) -> float | None:
    """The median over the rounds of nginx's plus gunicorn's CPU time per request, in microseconds."""
    sums = []
    for measured in r.rounds.get(case_id, []):
        cpu = measured.get("cpu_us_per_request", {})
        values = [cpu.get(name) for name in ("nginx", "gunicorn")]
        if None not in values:
            sums.append(sum(values))
    return round(statistics.median(sums), 1) if sums else None


def prepare_work(work: Path) -> Path:
    """An empty WORK/run for this run's projects and servers; WORK/venvs, made earlier, stays."""
    run = work / "run"
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    run.chmod(0o755)  # nginx's workers read the static files in it
    return run


def variant_tags(project: Project) -> tuple[str, str]:
    """What a variant adds to case ids ("[bind=tcp]") and to labels (" [bind=tcp]")."""
    if project.name == "default":
        return "", ""
    return f"[{project.name}]", f" [{project.name}]"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def slow_line(metrics: dict) -> str:
    idle, busy = fmt_ms(metrics, "idle_"), fmt_ms(metrics, "slow_")
    return (
        f"idle: {metrics['idle_requests']:,} answered, {idle}  |  with {metrics['slow_connections']} slow clients: "
        f"{metrics['slow_requests']:,} answered, {busy}"
    )


def io_line(metrics: dict) -> str:
    return (
        f"{throughput_line(metrics)}; {metrics['parallel']} at once: at most {metrics['limit_rps']:,.0f} req/s, "
        f"{metrics['share_of_limit']:.0%} of it"
    )


def database_line(metrics: dict) -> str:
    return (
        f"{throughput_line(metrics)}; {metrics['parallel']} at once, {metrics['connections_max']} connections "
        f"held at most ({metrics['connections_after']} after)"
    )


def handshake_line(metrics: dict) -> str:
    return (
        f"{metrics['per_second']:>9,.0f} connections/s, {metrics['resumed']:,} of {metrics['connections']:,} resumed, "
        f"{metrics['errors']} errors"
    )


def reload_line(metrics: dict) -> str:
    seen = "reloaded" if metrics["reloaded"] else "no reload seen in the log"
    return f"{metrics['requests']:,} requests, {metrics['failed']} failed ({seen})"


# The guide's site: nginx proxies to gunicorn on TCP with Debian's proxy_params, nothing else.
GUIDE_SITE = """\
server {{
    listen 127.0.0.1:{port};
    server_name {host};

    location / {{
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_pass http://127.0.0.1:{app};
    }}
}}
"""

# The floor of any proxy: nginx hands the request to the stack's own gunicorn socket and nothing else
# (no access log, no headers added or cleared, no gzip).
BARE_SITE = """\
server {{
    listen 127.0.0.1:{port};
    server_name {host};
    access_log off;

    location / {{
        proxy_pass http://{app}:;
    }}
}}
"""

# The projects of the cache, TLS and I/O-bound cases: the default answers and these.
EXTRAS: dict[str, dict[str, str]] = {
    "cache": {"cache": "on"},
    "tls": {"tls_mode": "existing"},
    "io-sync": {"worker_class": "sync"},
    "io-gthread": {"worker_class": "gthread"},
    "io-gevent": {"worker_class": "gevent"},
}

# What nginx alone answers on this machine: no upstream, no file.
CEILING_SITE = """\
server {{
    listen 127.0.0.1:{port};
    server_name {host};

    location / {{
        return 200 "ok\\n";
    }}
}}
"""
