"""The database pages: a Django view that waits on a real PostgreSQL or SQLite, per worker class.

Three projects are baked with framework=django, database=postgresql and worker_class sync, gthread
and gevent; each gets the page's app (bench/benchkit/benchdb: GET /db, three SELECTs by primary key
and an UPDATE) and a few lines at the end of its settings that install it. Every case runs a copy
of one of them under its own deploy/run-local, with what differs in the environment, as on a
server: PG* for PostgreSQL (without PGDATABASE the settings use SQLite in the state folder),
GUNICORN_THREADS, DJANGO_CONN_MAX_AGE, and BENCH_DB_POOL for psycopg's pool.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .procs import Project, Server, bake, children_of, load_layout

BENCH_DIR = Path(__file__).resolve().parents[1]
PAGE = "/db"
APP = "benchdb"
# gunicorn.conf.py's worker_connections for gevent: requests a worker has in progress at most.
GEVENT_CONNECTIONS = 1000
# psycopg-pool, for the pool cases (Django 5.2's OPTIONS["pool"]); gevent projects pin it themselves.
POOL_REQUIREMENT = "psycopg-pool==3.3.3"
# Pool size per gevent worker: wrk's 50 connections spread over 5 workers.
GEVENT_POOL = 10
# Connections the throwaway server admits: every case's server runs for the whole benchmark, and the
# pools (and the persistent connections) of the idle ones stay open meanwhile.
MAX_CONNECTIONS = 500

# Appended to each baked project's settings.py (in the benchmark's copy only).
SETTINGS_TAIL = f"""

# bench/run: the database page's app and URL; BENCH_DB_POOL=N gives each worker a psycopg pool of
# N connections (Django's OPTIONS["pool"], which needs CONN_MAX_AGE = 0).
INSTALLED_APPS += ["{APP}"]
BENCH_PROJECT_URLCONF = ROOT_URLCONF
ROOT_URLCONF = "{APP}.urls"
if os.environ.get("BENCH_DB_POOL") and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    _size = int(os.environ["BENCH_DB_POOL"])
    DATABASES["default"]["OPTIONS"] = {{"pool": {{"min_size": _size, "max_size": _size, "timeout": 10}}}}
"""

CONNECTION_LABELS = {
    "age0": "CONN_MAX_AGE=0 (a connection per request)",
    "age60": "CONN_MAX_AGE=60 (persistent)",
    "pool": "psycopg pool",
    "default": "Django's default (a connection per request)",
}


@dataclass(frozen=True)
class DbCase:
    worker_class: str  # sync, gthread or gevent
    database: str  # postgresql or sqlite
    connections: str  # age0, age60, pool (PostgreSQL); default (SQLite)
    threads: int = 1  # gthread's threads per worker
    in_smoke: bool = False

    @property
    def id(self) -> str:
        workers = f"gthread{self.threads}" if self.worker_class == "gthread" else self.worker_class
        return f"db-{self.database}-{workers}" + (f"-{self.connections}" if self.connections != "default" else "")

    @property
    def per_worker(self) -> int:
        """Requests one worker has in progress at most."""
        return {"sync": 1, "gthread": self.threads}.get(self.worker_class, GEVENT_CONNECTIONS)

    @property
    def pool_size(self) -> int:
        return min(self.per_worker, GEVENT_POOL)

    @property
    def label(self) -> str:
        workers = f"gthread x {self.threads} threads" if self.worker_class == "gthread" else self.worker_class
        name = "PostgreSQL" if self.database == "postgresql" else "SQLite"
        connections = CONNECTION_LABELS[self.connections]
        if self.connections == "pool":
            connections += f" of {self.pool_size} per worker"
        return f"{name}, {workers}, {connections}"

    def env(self, postgres: dict[str, str] | None) -> dict[str, str]:
        """The environment of this case's run-local: the benchmark's, less any PG* of its own."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        if self.worker_class == "gthread":
            env["GUNICORN_THREADS"] = str(self.threads)
        if self.database == "postgresql":
            assert postgres is not None
            env |= postgres
            env["DJANGO_CONN_MAX_AGE"] = "60" if self.connections == "age60" else "0"
            # A gevent project has a pool of its own (DJANGO_DB_POOL_SIZE, settings.py): the pool case
            # measures it as it ships, the others turn it off; sync and gthread get the benchmark's.
            pooled = self.connections == "pool"
            env["DJANGO_DB_POOL_SIZE"] = str(self.pool_size) if pooled and self.worker_class == "gevent" else "0"
            if pooled and self.worker_class != "gevent":
                env["BENCH_DB_POOL"] = str(self.pool_size)
        return env


WORKERS = [("sync", 1), ("gthread", 2), ("gthread", 4), ("gthread", 8), ("gevent", 1)]
# The smoke run's cases: each worker class, each connection setting and both databases once.
SMOKE = {"db-postgresql-sync-age60", "db-postgresql-gthread4-age0", "db-postgresql-gevent-pool", "db-sqlite-gthread4"}


def catalogue(smoke: bool) -> list[DbCase]:
    cases = [
        DbCase(worker_class, "postgresql", connections, threads)
        for worker_class, threads in WORKERS
        for connections in ("age0", "age60", "pool")
    ]
    cases += [DbCase(worker_class, "sqlite", "default", threads) for worker_class, threads in WORKERS]
    return [case for case in cases if not smoke or case.id in SMOKE]


def bake_bases(template: Path, work: Path, answers: dict[str, str], worker_classes: set[str]) -> dict[str, Project]:
    """One Django project per worker class, with the page's app installed: worker class -> project.

    Their requirements.txt also names psycopg-pool; the gevent project's virtualenv serves every
    case (sync and gthread need a subset of what it has).
    """
    bases = {}
    for number, worker_class in enumerate(sorted(worker_classes)):
        baked = {**answers, "framework": "django", "database": "postgresql", "worker_class": worker_class}
        path, _ = bake(template, work / f"base-{number}", baked)
        shutil.copytree(BENCH_DIR / "benchkit" / APP, path / APP, ignore=shutil.ignore_patterns("__pycache__"))
        layout = load_layout(path, 1000 + number)
        settings = path / layout.SLUG / "settings.py"
        settings.write_text(settings.read_text() + SETTINGS_TAIL)
        requirements = path / "requirements.txt"
        pinned = requirements.read_text()
        if POOL_REQUIREMENT not in pinned:  # a gevent project pins it already
            requirements.write_text(pinned + f"# bench/run: the pool cases.\n{POOL_REQUIREMENT}\n")
        bases[worker_class] = Project(f"db-{worker_class}", path, baked, layout)
    return bases


def copy_for(case: DbCase, base: Project, work: Path, number: int) -> Project:
    """A copy of the worker class's project for this case: run-local runs one stack per folder."""
    path = work / case.id / base.path.name
    shutil.copytree(base.path, path, symlinks=True)
    return Project(case.id, path, base.answers, load_layout(path, 2000 + number))


def sqlite_connections(server: Server) -> int:
    """SQLite connections the workers hold open: their open files of the project's database."""
    held = 0
    for worker in (child for master in server.pids["gunicorn"] for child in children_of(master)):
        try:
            fds = list(Path(f"/proc/{worker}/fd").iterdir())
        except OSError:
            continue  # the worker exited meanwhile
        for fd in fds:
            try:
                held += os.readlink(fd).endswith("db.sqlite3")
            except OSError:
                continue
    return held
