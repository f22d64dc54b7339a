"""PostgreSQL for the app (database=postgresql): what deploy/install needs to know, no effects.

The app reaches its database through libpq's own variables in the env file (PGHOST, PGDATABASE,
PGUSER, and PGPASSWORD for a db host of its own); psql and pg_dump read the same ones. On a whole
server the database is local: PGHOST is PostgreSQL's socket folder, and peer authentication lets
the service's account in as the role of its own name, with no password anywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from . import layout

# Connections deploy/install and deploy/backup may hold besides the app's: a migration and a dump
# at the same time.
TOOLS_CONNECTIONS = 2
# gunicorn.conf.py's worker_connections for gevent: the requests a worker serves at once, each in a
# greenlet that Django gives a connection of its own unless the worker's pool lends them.
GEVENT_CONNECTIONS = 1000


def local_settings() -> dict[str, str]:
    """The env file's settings of a database on this machine: peer authentication over the socket."""
    assert layout.DATABASE and layout.DATABASE_ROLE and layout.DATABASE_SOCKET_DIR
    return {"PGHOST": layout.DATABASE_SOCKET_DIR, "PGDATABASE": layout.DATABASE, "PGUSER": layout.DATABASE_ROLE}


def remote_settings(host: str, password: str) -> dict[str, str]:
    """The env file's settings of the db host every app host shares (scram-sha-256 over TCP)."""
    assert layout.DATABASE and layout.DATABASE_ROLE
    return {"PGHOST": host, "PGDATABASE": layout.DATABASE, "PGUSER": layout.DATABASE_ROLE, "PGPASSWORD": password}


def is_local(env: Mapping[str, str]) -> bool:
    """Whether the env file's PGHOST is this machine's socket folder (or unset: libpq's default)."""
    return env.get("PGHOST", "").startswith("/") or not env.get("PGHOST")


def quoted(value: str) -> str:
    """`value` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


# psql as the postgres account (peer authentication), stopping at the first error, answers unaligned.
POSTGRES_PSQL = ["runuser", "-u", "postgres", "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-d", "postgres"]


def as_postgres(sql: str) -> list[str]:
    """POSTGRES_PSQL with one statement."""
    return [*POSTGRES_PSQL, "-c", sql]


def role_exists(role: str) -> str:
    return f"SELECT 1 FROM pg_roles WHERE rolname = {quoted(role)}"


def database_exists(name: str) -> str:
    return f"SELECT 1 FROM pg_database WHERE datname = {quoted(name)}"


def create_role(role: str) -> list[str]:
    """A role that logs in and may do nothing else than own its database."""
    options = ["--no-superuser", "--no-createdb", "--no-createrole"]
    return ["runuser", "-u", "postgres", "--", "createuser", *options, role]


def create_database(name: str, owner: str) -> list[str]:
    # UTF-8 whatever the cluster was made with (a cluster made without a locale is SQL_ASCII).
    encoding = ["--encoding=UTF8", "--locale=C.UTF-8", "--template=template0"]
    return ["runuser", "-u", "postgres", "--", "createdb", *encoding, f"--owner={owner}", name]


@dataclass(frozen=True)
class Connections:
    """How many connections the app may open on one host, and why."""

    workers: int
    per_worker: int
    instances: int

    @property
    def per_host(self) -> int:
        return self.workers * self.per_worker * self.instances

    def needed(self, hosts: int) -> int:
        return self.per_host * hosts + TOOLS_CONNECTIONS

    def explain(self, hosts: int) -> str:
        each = {"gthread": "threads", "gevent": "requests at once"}.get(layout.WORKER_CLASS, "connection")
        if layout.WORKER_CLASS == "gevent" and self.per_worker != GEVENT_CONNECTIONS:
            each = "in its pool"
        per_worker = f" x {self.per_worker} {each}" if self.per_worker != 1 else ""
        instances = f" x {self.instances} instances" if self.instances > 1 else ""
        several = f" x {hosts} app hosts" if hosts > 1 else ""
        return f"{self.workers} workers{per_worker}{instances}{several} + {TOOLS_CONNECTIONS} for migrations and dumps"


def connections(env: Mapping[str, str], cores: int | None = None) -> Connections:
    """What gunicorn.conf.py starts with these settings (the env file's WEB_CONCURRENCY and
    GUNICORN_THREADS win over the answers, as they do there) on a machine of `cores` CPUs."""
    cores = cores or os.cpu_count() or 1
    if env.get("WEB_CONCURRENCY"):
        workers = int(env["WEB_CONCURRENCY"])
    else:
        workers = 2 * cores + 1 if layout.WORKERS == "auto" else int(layout.WORKERS)
    if layout.WORKER_CLASS == "gthread":
        per_worker = int(env.get("GUNICORN_THREADS") or layout.THREADS)
    elif layout.WORKER_CLASS == "gevent":
        pool = int(env.get("DJANGO_DB_POOL_SIZE") or layout.DATABASE_POOL_SIZE)
        per_worker = pool or GEVENT_CONNECTIONS
    else:
        per_worker = 1
    return Connections(workers=workers, per_worker=per_worker, instances=max(1, len(layout.INSTANCES)))


def capacity_problem(need: Connections, hosts: int, max_connections: int, reserved: int) -> str | None:
    """Why the app could run out of connections (None: it cannot)."""
    available = max_connections - reserved
    if need.needed(hosts) <= available:
        return None
    return (
        f"the app may open {need.needed(hosts)} PostgreSQL connections ({need.explain(hosts)}), more than the"
        f" {available} the server admits (max_connections {max_connections} - {reserved} reserved): lower"
        f" WEB_CONCURRENCY (or GUNICORN_THREADS, DJANGO_DB_POOL_SIZE) in {layout.ENV_FILE}, or raise max_connections"
    )
