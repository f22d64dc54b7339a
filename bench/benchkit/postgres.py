"""A throwaway PostgreSQL for the database pages: its own cluster, on a unix socket only, then gone.

initdb writes a new cluster into a temporary folder, owned by an unprivileged account (nobody, when
the benchmark runs as root: PostgreSQL refuses to run as root). The server listens on no TCP
address at all (listen_addresses = ''), only on a socket in that folder (mode 0700), and trusts
whoever reaches it there. When the `with` block ends, also on an error or Ctrl-C, the server is
stopped (a fast shutdown, then SIGKILL after a bounded wait) and the folder is deleted.
"""

from __future__ import annotations

import os
import pwd
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from .procs import STOP_SECONDS, BenchError, stop, tail

INSTALL_POSTGRESQL = "PostgreSQL is not installed: apt-get install postgresql (Debian, Ubuntu)"
READY_SECONDS = 30
# The account that owns the cluster and runs the server when the benchmark runs as root.
UNPRIVILEGED = "nobody"
SUPERUSER = "postgres"
# The role and database the app connects as (PGUSER, PGDATABASE).
APP_ROLE = "bench"
APP_DATABASE = "bench"


def find_postgres() -> Path | None:
    """The bin folder of the newest PostgreSQL installed (Debian keeps each major version apart)."""
    found = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    if found:
        return max(found, key=lambda path: int(re.sub(r"\D", "", path.parent.name) or 0))
    postgres = shutil.which("postgres")
    return Path(postgres).parent if postgres else None


@dataclass
class Cluster:
    bin: Path
    folder: Path  # the temporary folder: data/, the socket and the log
    socket_dir: Path
    log: Path
    max_connections: int
    version: str
    pid: int  # the postmaster: its CPU time, with its backends', is the database's

    def app_env(self, application_name: str) -> dict[str, str]:
        """libpq's variables for the app: its role and database over the socket, under a name of its own
        (pg_stat_activity's application_name tells each server's connections apart)."""
        return {
            "PGHOST": str(self.socket_dir),
            "PGDATABASE": APP_DATABASE,
            "PGUSER": APP_ROLE,
            "PGAPPNAME": application_name,
        }

    def psql(self, *args: str, timeout: float = 30) -> str:
        command = [str(self.bin / "psql"), "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir)]
        done = subprocess.run(
            [*command, "-U", SUPERUSER, "-d", "postgres", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"psql {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout.strip()


def owner() -> tuple[int, int] | None:
    """(uid, gid) of the unprivileged account that runs the server, or None: run as this account."""
    if os.geteuid() != 0:
        return None
    account = pwd.getpwnam(UNPRIVILEGED)
    return account.pw_uid, account.pw_gid


@contextmanager
def throwaway_cluster(max_connections: int) -> Iterator[Cluster]:
    """A new PostgreSQL cluster with the app's role and database, stopped and deleted on the way out."""
    bin_dir = find_postgres()
    if bin_dir is None:
        raise BenchError(INSTALL_POSTGRESQL)
    account = owner()
    as_owner: dict = {} if account is None else {"user": account[0], "group": account[1], "extra_groups": []}
    folder = Path(tempfile.mkdtemp(prefix="bench-postgresql-"))
    process: subprocess.Popen | None = None
    try:
        if account is not None:
            os.chown(folder, *account)
        data, socket_dir, log = folder / "data", folder / "socket", folder / "postgresql.log"
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"]
        # No fsync while initdb writes the empty cluster (the server itself keeps its default: on).
        initdb += ["--locale=C", "--no-sync"]
        done = subprocess.run(initdb, capture_output=True, text=True, timeout=120, check=False, **as_owner)
        if done.returncode != 0:
            raise BenchError(f"initdb failed:\n{done.stdout}{done.stderr}")
        socket_dir.mkdir(mode=0o700)
        if account is not None:
            os.chown(socket_dir, *account)
        server = [str(bin_dir / "postgres"), "-D", str(data), "-c", "listen_addresses="]
        server += ["-c", f"unix_socket_directories={socket_dir}", "-c", f"max_connections={max_connections}"]
        with open(log, "ab") as output:
            process = subprocess.Popen(
                server, stdout=output, stderr=subprocess.STDOUT, start_new_session=True, **as_owner
            )
        version = bin_dir.parent.name
        cluster = Cluster(bin_dir, folder, socket_dir, log, max_connections, version, process.pid)
        wait_ready(cluster, process)
        cluster.version = cluster.psql("-c", "SHOW server_version").split()[0]
        cluster.psql("-c", f"CREATE ROLE {APP_ROLE} LOGIN")
        cluster.psql("-c", f"CREATE DATABASE {APP_DATABASE} OWNER {APP_ROLE}")
        yield cluster
    finally:
        if process is not None:
            # SIGINT is PostgreSQL's fast shutdown: clients are disconnected, no checkpoint wait.
            stop(process, signal.SIGINT, seconds=STOP_SECONDS)
        shutil.rmtree(folder, ignore_errors=True)


def wait_ready(cluster: Cluster, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_SECONDS
    ready = [str(cluster.bin / "pg_isready"), "-q", "-h", str(cluster.socket_dir), "-U", SUPERUSER, "-t", "1"]
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"postgres exited with status {process.returncode}:\n{tail(cluster.log)}")
        if subprocess.run(ready, capture_output=True, timeout=10, check=False).returncode == 0:
            return
        time.sleep(0.1)
    raise BenchError(f"postgres did not accept connections within {READY_SECONDS}s:\n{tail(cluster.log)}")


class Session:
    """One psql connection kept open, for queries asked often (the connection counts during a load).

    One connection instead of one psql per query: asking costs a round trip, not a fork and a new
    backend, so counting a few times a second does not disturb what is measured.
    """

    def __init__(self, cluster: Cluster):
        command = [str(cluster.bin / "psql"), "-XAtq", "-h", str(cluster.socket_dir), "-U", SUPERUSER, "-d", "postgres"]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self.selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self.selector.register(self.process.stdout, selectors.EVENT_READ)
        self.lock = threading.Lock()

    def value(self, sql: str, timeout: float = 5) -> str:
        """The single value `sql` answers (one row, one column)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            self.process.stdin.write(sql.rstrip(";") + ";\n")
            self.process.stdin.flush()
            if not self.selector.select(timeout=timeout):
                raise BenchError(f"psql gave no answer to {sql!r} within {timeout}s")
            line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"psql exited while asked {sql!r}")
        return line.strip()

    def connections(self, application_name: str) -> int:
        """The server's connections opened under `application_name` (one server's, by its PGAPPNAME)."""
        name = application_name.replace("'", "''")
        return int(self.value(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}'"))

    def close(self) -> None:
        with suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.selector.close()
