"""Load on 127.0.0.1: wrk for the requests, a thread for slow clients, /proc for the CPU time.

Every load is bounded in time (wrk's -d, the slow clients' deadline) and in count (connections).
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from .procs import CLOCK_TICKS, LOOPBACK, BenchError, Server, cpu_seconds

INSTALL_H2LOAD = "h2load is not installed: apt-get install nghttp2-client (Debian, Ubuntu)"

WRK_SUMMARY = Path(__file__).with_name("wrk-summary.lua")
INSTALL_WRK = "wrk is not installed: apt-get install wrk (Debian, Ubuntu)"
# wrk counts an answer slower than this as a timeout and leaves it out of the percentiles.
WRK_TIMEOUT_SECONDS = 2


def find_wrk() -> str:
    found = shutil.which("wrk")
    if not found:
        raise BenchError(INSTALL_WRK)
    return found


@dataclass
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    # CPU seconds spent during the run, per component ("nginx", "gunicorn") and by wrk itself.
    cpu: dict[str, float] = field(default_factory=dict)
    # Cores busy with anything else meanwhile (other processes, interrupts), and stolen by the host.
    other_cores: float = 0.0
    steal_cores: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        """Answers other than 2xx/3xx plus socket errors (connect, read, write, timeout)."""
        return sum(self.errors.values())

    @property
    def timed_out(self) -> bool:
        """Some requests had no answer within WRK_TIMEOUT_SECONDS: the percentiles leave them out."""
        return self.errors["timeout"] > 0 or self.requests == 0

    def metrics(self) -> dict[str, float | int | bool | dict]:
        per_request = {
            name: round(seconds / self.requests * 1e6, 1) if self.requests else None
            for name, seconds in self.cpu.items()
        }
        return {
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "requests": self.requests,
            "failed": self.failed,
            "errors": self.errors,
            "timed_out": self.timed_out,
            "cpu_us_per_request": per_request,
            "other_cores": round(self.other_cores, 2),
            "steal_cores": round(self.steal_cores, 2),
        }


def machine_cpu() -> tuple[float, float]:
    """Seconds of CPU the whole machine spent busy, and stolen by the host, since boot (all cores)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq) / CLOCK_TICKS, steal / CLOCK_TICKS


def wrk(
    wrk_binary: str,
    server: Server,
    path: str,
    host: str,
    *,
    seconds: int,
    connections: int,
    threads: int,
    pause_ms: int = 0,
    during: tuple[float, Callable[[], object]] | None = None,
    headers: dict[str, str] | None = None,
) -> WrkResult:
    """Run wrk against `server` for `seconds`.

    pause_ms: each connection waits that long between requests (a steady rate instead of flat out).
    during: (after_seconds, action), run once while the load goes on.
    headers: sent with every request besides Host.
    """
    command = [
        wrk_binary,
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={seconds}s",
        f"--timeout={WRK_TIMEOUT_SECONDS}s",
        f"--script={WRK_SUMMARY}",
        f"--header=Host: {host}",
        *(f"--header={name}: {value}" for name, value in (headers or {}).items()),
        f"http://{LOOPBACK}:{server.port}{path}",
        "--",
        str(pause_ms),
    ]
    cpu_before = {name: cpu_seconds(pids) for name, pids in server.pids.items()}
    wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, steal_before = machine_cpu()
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    timer = None
    if during is not None:
        timer = threading.Timer(during[0], during[1])
        timer.start()
    try:
        stdout, stderr = process.communicate(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise BenchError(f"wrk did not finish within {seconds + 30}s") from None
    finally:
        if timer is not None:
            timer.cancel()
            timer.join()
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_after, steal_after = machine_cpu()
    elapsed = time.monotonic() - started
    cpu = {name: cpu_seconds(pids) - cpu_before[name] for name, pids in server.pids.items()}
    cpu["wrk"] = (wrk_after.ru_utime + wrk_after.ru_stime) - (wrk_before.ru_utime + wrk_before.ru_stime)
    other = max(0.0, busy_after - busy_before - sum(cpu.values()))
    summary = next((line for line in stdout.splitlines() if line.startswith("wrk-json ")), None)
    if process.returncode != 0 or summary is None:
        raise BenchError(f"wrk failed ({process.returncode}) on {server.name}:\n{stdout}{stderr}")
    data = json.loads(summary.removeprefix("wrk-json "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors={name: data[name] for name in ("status", "connect", "read", "write", "timeout")},
        cpu=cpu,
        other_cores=other / elapsed,
        steal_cores=(steal_after - steal_before) / elapsed,
    )


@contextmanager
def slow_clients(port: int, host: str, count: int, seconds: float, interval: float = 0.1) -> Iterator[int]:
    """`count` connections that each send a request's headers one byte every `interval` seconds.

    The headers are long enough that none finishes within `seconds`; the connections stay open
    until the block ends. Yields how many connections were opened.
    """
    head = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: slow-client\r\nX-Padding: {'x' * 400}\r\n".encode()
    sockets = []
    try:
        for _ in range(count):
            sockets.append(socket.create_connection((LOOPBACK, port), timeout=5))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    stop = threading.Event()

    def trickle() -> None:
        deadline = time.monotonic() + seconds
        for position in range(len(head)):
            if stop.is_set() or time.monotonic() > deadline:
                return
            for sock in sockets:
                with suppress(OSError):
                    sock.send(head[position : position + 1])
            stop.wait(interval)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield len(sockets)
    finally:
        stop.set()
        thread.join(timeout=seconds + 5)
        for sock in sockets:
            sock.close()


def h2load(server: Server, port: int, path: str, name: str, *, seconds: int, connections: int, threads: int) -> dict:
    """HTTP/2 over TLS with h2load (nghttp2): `connections` clients, one request in flight each, for
    `seconds`, against https://`name`:`port` (the name goes out as SNI and :authority)."""
    found = shutil.which("h2load")
    if not found:
        raise BenchError(INSTALL_H2LOAD)
    command = [found, f"--duration={seconds}", f"--clients={connections}", "--max-concurrent-streams=1"]
    command += [f"--threads={threads}", f"--connect-to={LOOPBACK}:{port}", f"https://{name}:{port}{path}"]
    cpu_before = {key: cpu_seconds(pids) for key, pids in server.pids.items()}
    busy_before, _ = machine_cpu()
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30, check=False)
    elapsed = time.monotonic() - started
    finished = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", done.stdout)
    counts = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed", done.stdout)
    protocol = re.search(r"Application protocol: (\S+)", done.stdout)
    if done.returncode != 0 or not finished or not counts:
        raise BenchError(f"h2load failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    cpu = {key: cpu_seconds(pids) - cpu_before[key] for key, pids in server.pids.items()}
    requests = int(counts.group(2))
    return {
        "rps": float(finished.group(2)),
        "requests": requests,
        "failed": int(counts.group(3)),
        "protocol": protocol.group(1) if protocol else "?",
        "cpu_us_per_request": {
            key: round(value / requests * 1e6, 1) if requests else None for key, value in cpu.items()
        },
        "other_cores": round(max(0.0, machine_cpu()[0] - busy_before - sum(cpu.values())) / elapsed, 2),
    }


def tls_handshakes(port: int, name: str, path: str, *, seconds: float, clients: int = 4, resume: bool) -> dict:
    """New TLS connections per second to 127.0.0.1:`port` (SNI `name`) from `clients` threads, each a
    handshake, a HEAD of `path` (a static file: nginx answers it alone) and a close; with `resume`,
    each offers the session of its previous connection. TLS 1.3 hands out the session after the
    handshake, hence the one request.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # run-local's throwaway self-signed certificate
    request = f"HEAD {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
    counts = {"connections": 0, "resumed": 0, "errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        session = None
        while time.monotonic() < deadline:
            try:
                with (
                    socket.create_connection((LOOPBACK, port), timeout=5) as sock,
                    context.wrap_socket(sock, server_hostname=name, session=session if resume else None) as tls,
                ):
                    tls.sendall(request)
                    while tls.recv(4096):
                        pass
                    reused = tls.session_reused
                    session = tls.session
                with lock:
                    counts["connections"] += 1
                    counts["resumed"] += reused
            except (OSError, ssl.SSLError):
                with lock:
                    counts["errors"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 10)
    elapsed = time.monotonic() - started
    return {**counts, "per_second": round(counts["connections"] / elapsed, 1), "seconds": round(elapsed, 2)}


@contextmanager
def sampled(count: Callable[[], int], interval: float = 0.2) -> Iterator[list[int]]:
    """Call `count` every `interval` seconds in a thread while the block runs; the values, in order."""
    values: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            with suppress(BenchError, OSError, ValueError):
                values.append(count())
            done.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield values
    finally:
        done.set()
        thread.join(timeout=10)
