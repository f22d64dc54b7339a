"""Real HTTP against a running deploy/run-local: requests, bounded load, slow clients.

Every loop here is bounded in count and in time. The connections made here go to 127.0.0.1;
bounded_load also drives the loads that servers.py sends to booted servers.
"""

from __future__ import annotations

import errno
import http.client
import itertools
import json
import os
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

# What the benchmark and the tests both do to a running stack lives once, in bench/benchkit.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from benchkit.load import slow_clients as slow_clients_for
from benchkit.procs import LOOPBACK, read_until_ready

DOMAIN = "example.com"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def unverified_tls() -> ssl.SSLContext:
    """TLS that accepts run-local's throwaway self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def request(
    port: int, path: str = "/", *, method: str = "GET", headers: dict[str, str] | None = None, body: bytes | None = None
) -> Response:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
    try:
        connection.request(method, path, body=body, headers={"Host": DOMAIN, **(headers or {})})
        answer = connection.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        connection.close()


@dataclass
class LiveStack:
    project: Path
    process: subprocess.Popen[str]
    state: dict
    output: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.state["port"]

    def get(self, path: str = "/", **kwargs) -> Response:
        return request(self.port, path, **kwargs)

    def gunicorn_log(self) -> str:
        return Path(self.state["gunicorn_log"]).read_text()

    def gunicorn_workers(self) -> set[int]:
        """Live processes whose parent is gunicorn's master (its threads fork workers too)."""
        return children_of(self.state["gunicorn_pids"][0])

    def all_workers(self) -> set[int]:
        """gunicorn's workers once all have booted (the default: 2 x cores + 1)."""
        expected = 2 * os.cpu_count() + 1
        self.wait_for(lambda: len(self.gunicorn_workers()) == expected, what=f"{expected} gunicorn workers")
        return self.gunicorn_workers()

    def read_output(self) -> list[str]:
        """run-local's output so far (what is available now, without blocking)."""
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        while selector.select(timeout=0):
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line.rstrip("\n"))
        return self.output

    def read_state(self) -> dict:
        self.state = json.loads((self.project / ".run-local.json").read_text())
        return self.state

    def wait_for(self, condition, seconds: float = 15, what: str = "condition") -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} not reached within {seconds}s")


def children_of(parent: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


@contextmanager
def start_stack(project: Path, venv: Path, *args: str) -> Iterator[LiveStack]:
    process = subprocess.Popen(
        [str(project / "deploy" / "run-local"), "--venv", str(venv), "--port", str(free_port()), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        read_until_ready(process, output)
        state = json.loads((project / ".run-local.json").read_text())
        yield LiveStack(project, process, state, output)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # What run-local created must be gone after it stops.
        assert not (project / ".run-local.json").exists()


def secret_key(env_text: str) -> str:
    """DJANGO_SECRET_KEY's value in the text of an env file."""
    return next(line.split("=", 1)[1] for line in env_text.splitlines() if line.startswith("DJANGO_SECRET_KEY="))


@dataclass
class LoadResult:
    """What a bounded load saw: requests sent, answers by status, failures by kind."""

    sent: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    sent_at_event: int | None = None
    # Set to end the load before its time is up.
    done: bool = False
    seconds: float = 0.0
    # The longest a request took, and when it was sent (seconds after the load began).
    slowest: float = 0.0
    slowest_sent: float = 0.0
    # When the load began (time.monotonic()): the origin of the times below.
    started: float = 0.0
    # When each 200 answer came back (seconds after the load began), in the order they came.
    answered_at: list[float] = field(default_factory=list, repr=False)
    # Answers whose body held the load's marker (a release's own text), when it was given one.
    marked: int = 0

    def mark_event(self) -> None:
        """Note how many requests had been sent when the fault was injected."""
        self.sent_at_event = self.sent

    @property
    def sent_after_event(self) -> int:
        assert self.sent_at_event is not None, "mark_event() was not called"
        return self.sent - self.sent_at_event

    def now(self) -> float:
        """Seconds since the load began."""
        return time.monotonic() - self.started

    def longest_gap(self, start: float = 0.0, end: float | None = None) -> float:
        """The longest time between `start` and `end` (seconds after the load began; default: its
        whole length) in which no 200 answer came back."""
        end = self.seconds if end is None else end
        moments = [start, *sorted(t for t in self.answered_at if start < t < end), end]
        return max(later - earlier for earlier, later in itertools.pairwise(moments))

    @property
    def failed(self) -> int:
        return self.errors.total() + sum(n for status, n in self.statuses.items() if status != 200)

    def __str__(self) -> str:
        statuses = ", ".join(f"{status}: {n}" for status, n in sorted(self.statuses.items()))
        errors = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.errors.items()))
        rate = self.sent / self.seconds if self.seconds else 0
        return (
            f"{self.sent} requests in {self.seconds:.1f}s ({rate:.0f}/s); {statuses}; errors: {errors or 'none'}; "
            f"slowest {self.slowest:.2f}s, sent at {self.slowest_sent:.2f}s"
        )


def error_kind(error: Exception) -> str:
    """A failure's kind as a report needs it: the exception's name, and for a bare OSError its
    errno's name too (EADDRNOTAVAIL, the client out of ports, is not the server's fault)."""
    if type(error) is OSError and error.errno:
        return f"OSError {errno.errorcode.get(error.errno, error.errno)}"
    return type(error).__name__


@contextmanager
def bounded_load(
    fetch: Callable[[], int],
    *,
    seconds: float,
    max_requests: int,
    concurrency: int,
    stop_with_block: bool,
    rate: float | None = None,
) -> Iterator[LoadResult]:
    """`concurrency` clients calling `fetch` (one request, its status) until `seconds` pass or
    `max_requests` are sent: bounded in count and in time, and no faster than `rate` requests a
    second if given. With `stop_with_block` the clients stop when the block ends; otherwise the block's
    end waits for them."""
    started = time.monotonic()
    result = LoadResult(started=started)
    lock = threading.Lock()
    deadline = started + seconds

    # With a rate, the earliest moment the next request may go. A stall earns no credit: the
    # clients never catch up on time lost to slow requests by sending faster afterwards.
    next_slot = started

    def client() -> None:
        nonlocal next_slot
        while True:
            if rate is not None:
                with lock:
                    slot = max(next_slot, time.monotonic())
                    next_slot = slot + 1 / rate
                time.sleep(max(0.0, slot - time.monotonic()))
            with lock:
                if time.monotonic() >= deadline or result.done or result.sent >= max_requests:
                    return
                result.sent += 1
            sent = time.monotonic()
            try:
                status = fetch()
                with lock:
                    result.statuses[status] += 1
                    if status == 200:
                        result.answered_at.append(time.monotonic() - started)
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    result.errors[error_kind(error)] += 1
            took = time.monotonic() - sent
            with lock:
                if took > result.slowest:
                    result.slowest, result.slowest_sent = took, sent - started

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    try:
        yield result
    finally:
        if stop_with_block:
            result.done = True
        for thread in threads:
            thread.join(timeout=seconds + 15)
        result.seconds = time.monotonic() - started


@contextmanager
def load(
    port: int, *, seconds: float, max_requests: int, concurrency: int = 4, path: str = "/"
) -> Iterator[LoadResult]:
    """Keep `concurrency` clients sending GET `path` until `seconds` pass or `max_requests` are sent."""

    def fetch() -> int:
        return request(port, path).status

    with bounded_load(
        fetch, seconds=seconds, max_requests=max_requests, concurrency=concurrency, stop_with_block=False
    ) as result:
        yield result


@contextmanager
def slow_clients(port: int, count: int, seconds: float) -> Iterator[int]:
    """`count` connections that send a request's headers one byte every 100 ms, for `seconds`."""
    with slow_clients_for(port, DOMAIN, count, seconds) as opened:
        yield opened


def timed_get(port: int, path: str = "/") -> tuple[int, float]:
    started = time.perf_counter()
    status = request(port, path).status
    return status, time.perf_counter() - started
