"""bench/run: the benchmark's machinery end to end, in its --smoke form (about half a minute).

The smoke run measures too briefly for its numbers to mean anything: these tests check that every
case ran and was reported (table, JSON, chart), not which targets were met.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STRICT, TEMPLATE_DIR, require_tool

BENCH = TEMPLATE_DIR / "bench" / "run"
CASES = [
    "dynamic-stack",
    "dynamic-gunicorn",
    "dynamic-bare",
    "dynamic-gzip",
    "dynamic-guide",
    "dynamic-nginx-return",
    "cache-stack",
    "cache-gunicorn",
    "static-nginx",
    "static-gunicorn",
    "io-sync",
    "io-gthread",
    "io-gevent",
    "tls-h2",
    "tls-handshakes-new",
    "tls-handshakes-resumed",
    "slow-nginx",
    "slow-gunicorn",
    "reload",
    "bake",
]
THROUGHPUT_CASES = [case for case in CASES if case.startswith(("dynamic-", "static-", "cache-", "io-"))]
TARGETS = [
    "stack-vs-bare",
    "stack-vs-guide",
    "stack-vs-previous-defaults",
    "cache-vs-gunicorn",
    "static-nginx-vs-gunicorn",
    "slow-clients-p99",
    "reload-failed",
    "bake-seconds",
]


def bench(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """bench/run with these arguments; past `timeout`, SIGTERM, so that it stops every server it started."""
    command = [sys.executable, str(BENCH), *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=120)
            pytest.fail(f"bench/run {' '.join(args)} took over {timeout}s:\n{stdout}{stderr}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture(scope="session")
def smoke(tmp_path_factory, worker_id: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One smoke run for the whole test session, whichever test process asks first (the others wait)."""
    require_tool("nginx", "apt-get install nginx")
    require_tool("wrk", "apt-get install wrk")
    # The folder that every test process of this session shares (pytest-xdist's recipe).
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    out, record = shared / "bench-results", shared / "bench-smoke.json"
    with open(shared / "bench-smoke.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            # About a minute on an idle machine; the limit leaves room for a busy one.
            done = bench("--smoke", "--out", str(out), "--work", str(shared / "bench-work"), timeout=300)
            record.write_text(json.dumps([done.returncode, done.stdout, done.stderr]))
    returncode, stdout, stderr = json.loads(record.read_text())
    return subprocess.CompletedProcess(["bench/run", "--smoke"], returncode, stdout, stderr), out


@pytest.fixture(scope="session")
def results(smoke) -> dict:
    done, out = smoke
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / "results.json").read_text())


def test_smoke_run_measures_every_case_once(results: dict) -> None:
    assert set(CASES) <= set(results["cases"])
    extra = set(results["cases"]) - set(CASES)
    measured = {w["case"] for w in results["what_if"] if "skipped" not in w}
    assert measured <= extra and all(case.startswith("what-if-") for case in extra)
    assert all(len(case["rounds"]) == 1 for case in results["cases"].values())
    assert results["settings"]["rounds"] == 1 and results["settings"]["duration"] == 1


def test_what_if_cases_are_measured_or_say_why_not(results: dict) -> None:
    assert results["what_if"]
    for what_if in results["what_if"]:
        if "skipped" in what_if:
            assert what_if["skipped"], what_if["id"]  # the template changed under the edit
        else:
            assert what_if["rps"] > 0 and what_if["vs_baseline"] > 0, what_if["id"]
            assert what_if["baseline"] in ("dynamic-stack", "static-nginx"), what_if["id"]


def test_every_throughput_case_got_answers_without_errors(results: dict) -> None:
    for name in THROUGHPUT_CASES:
        (measured,) = results["cases"][name]["rounds"]
        assert measured["requests"] > 0 and measured["rps"] > 0, name
        assert measured["failed"] == 0, (name, measured["errors"])


def test_io_bound_case_knows_each_worker_class_limit(results: dict) -> None:
    parallel = {name: results["cases"][f"io-{name}"]["rounds"][0]["parallel"] for name in ("sync", "gthread", "gevent")}
    workers = 2 * os.cpu_count() + 1
    assert parallel == {"sync": workers, "gthread": min(4 * workers, 50), "gevent": 50}


def test_https_case_speaks_http2_and_resumes_sessions(results: dict) -> None:
    (h2,) = results["cases"]["tls-h2"]["rounds"]
    assert h2["protocol"] == "h2" and h2["requests"] > 0 and h2["failed"] == 0
    (new,) = results["cases"]["tls-handshakes-new"]["rounds"]
    (resumed,) = results["cases"]["tls-handshakes-resumed"]["rounds"]
    assert new["connections"] > 0 and new["resumed"] == 0 and new["errors"] == 0
    # Every connection but each client's first offers a session; the server accepts them.
    assert resumed["resumed"] >= resumed["connections"] - 4 > 0


def test_cached_page_comes_from_nginx_not_gunicorn(results: dict) -> None:
    (cached,) = results["cases"]["cache-stack"]["rounds"]
    (uncached,) = results["cases"]["cache-gunicorn"]["rounds"]
    # gunicorn made the page once (and ticked over idle); nginx served every other request.
    assert cached["cpu_us_per_request"]["gunicorn"] < uncached["cpu_us_per_request"]["gunicorn"] / 20


def test_slow_clients_and_reload_were_really_exercised(results: dict) -> None:
    (slow,) = results["cases"]["slow-nginx"]["rounds"]
    assert slow["slow_connections"] == 100
    assert slow["idle_requests"] > 0 and slow["slow_requests"] > 0
    (reload,) = results["cases"]["reload"]["rounds"]
    assert reload["reloaded"], "no HUP in gunicorn's log"


def test_every_target_has_a_verdict(results: dict) -> None:
    targets = {target["id"]: target for target in results["targets"]}
    assert list(targets) == TARGETS
    for target in targets.values():
        assert isinstance(target["met"], bool)
        assert target["verdict"] == "met" or target["verdict"].startswith("missed")


def test_table_names_every_case_and_target(smoke, results: dict) -> None:
    _, out = smoke
    table = (out / "results.md").read_text()
    for case in results["cases"].values():
        assert case["label"] in table
    for target in results["targets"]:
        assert f"| {target['label']} |" in table
        assert target["verdict"] in table


def test_progress_is_one_line_per_case(smoke, results: dict) -> None:
    done, _ = smoke
    lines = [line for line in done.stdout.splitlines() if line.startswith("round 1/1 ")]
    assert [line.split()[2] for line in lines] == list(results["cases"])


def test_chart_is_a_png(smoke, results: dict) -> None:
    _, out = smoke
    assert (out / "ratios.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_missing_wrk_says_how_to_install_it(tmp_path: Path) -> None:
    done = bench("--smoke", "--out", str(tmp_path), env={**os.environ, "PATH": str(tmp_path)}, timeout=30)
    assert done.returncode == 2
    assert "wrk is not installed: apt-get install wrk" in done.stderr
    assert not (tmp_path / "results.json").exists()


def test_help_names_the_options() -> None:
    done = bench("--help", timeout=30)
    assert done.returncode == 0
    for option in ("--smoke", "--rounds", "--duration", "--out", "--only", "--combine", "VARIANT"):
        assert option in done.stdout


def test_redraw_rebuilds_the_table_from_the_json_alone(smoke, tmp_path: Path) -> None:
    _, out = smoke
    (tmp_path / "results.json").write_text((out / "results.json").read_text())
    done = bench("--redraw", "--out", str(tmp_path), timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "results.md").read_text() == (out / "results.md").read_text()
    assert (tmp_path / "ratios.png").read_bytes().startswith(b"\x89PNG")


def test_status_log_timing_counts_the_last_fifteen_minutes_of_a_large_log(tmp_path: Path) -> None:
    """bench/status-log, small: deploy/status must count every line of the window, none before it."""
    command = [
        sys.executable,
        str(TEMPLATE_DIR / "bench" / "status-log"),
        "--size",
        "20",
        "--rate",
        "20",
        "--runs",
        "1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^deploy/status on a \d+ MB log, 18000 lines in its last 15 minutes", done.stdout), done.stdout


# The database pages: their own smoke run (bench/run --smoke --only database), in a class so that
# pytest-xdist may run it beside the smoke run above.
DATABASE_CASES = {
    "db-postgresql-sync-age60": ("sync", 1),
    "db-postgresql-gthread4-age0": ("gthread", 4),
    "db-postgresql-gevent-pool": ("gevent", 50),
    "db-sqlite-gthread4": ("gthread", 4),
}


def require_postgresql() -> None:
    """PostgreSQL's server programs (Debian keeps them out of PATH); a skip, or under CI=true a failure."""
    if any(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        return
    message = "PostgreSQL is not installed (apt-get install postgresql)"
    if STRICT:
        pytest.fail(f"{message}; CI=true makes a missing tool a failure")
    pytest.skip(message)


@pytest.fixture(scope="session")
def database_smoke(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path, dict]:
    require_tool("nginx", "apt-get install nginx")
    require_tool("wrk", "apt-get install wrk")
    require_postgresql()
    shared = tmp_path_factory.mktemp("bench-database")
    out = shared / "out"
    done = bench("--smoke", "--only", "database", "--out", str(out), "--work", str(shared / "work"), timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done, out, json.loads((out / "database.json").read_text())


class TestDatabasePages:
    def test_every_case_got_answers_without_errors(self, database_smoke) -> None:
        _, _, results = database_smoke
        assert set(results["cases"]) == set(DATABASE_CASES)
        for name, case in results["cases"].items():
            (measured,) = case["rounds"]
            assert case["group"] == "database", name
            assert measured["requests"] > 0 and measured["failed"] == 0, (name, measured["errors"])

    def test_each_worker_class_has_its_requests_in_progress(self, database_smoke) -> None:
        _, _, results = database_smoke
        workers = 2 * os.cpu_count() + 1
        for name, (_, per_worker) in DATABASE_CASES.items():
            (measured,) = results["cases"][name]["rounds"]
            assert measured["parallel"] == min(workers * per_worker, 50), name

    def test_persistent_and_pooled_connections_are_counted_on_the_server(self, database_smoke) -> None:
        _, _, results = database_smoke
        workers = 2 * os.cpu_count() + 1
        (persistent,) = results["cases"]["db-postgresql-sync-age60"]["rounds"]
        (per_request,) = results["cases"]["db-postgresql-gthread4-age0"]["rounds"]
        # One kept connection per sync worker, still open after; one per request in progress with
        # CONN_MAX_AGE=0, closed after.
        assert persistent["connections_max"] <= persistent["connections_after"] == workers
        assert 0 < per_request["connections_max"] <= 4 * workers and per_request["connections_after"] == 0
        # gevent: the project's own pool, at most 10 a worker, lends them instead of 50 of their own.
        (pooled,) = results["cases"]["db-postgresql-gevent-pool"]["rounds"]
        assert 0 < pooled["connections_max"] <= 10 * workers and pooled["connections_after"] > 0
        (sqlite,) = results["cases"]["db-sqlite-gthread4"]["rounds"]
        assert 0 < sqlite["connections_max"] <= 4 * workers
        # The database's own CPU time is counted for the PostgreSQL cases.
        assert persistent["cpu_us_per_request"]["postgresql"] > 0

    def test_the_throwaway_postgresql_is_stopped_and_deleted(self, database_smoke) -> None:
        done, _, results = database_smoke
        found = re.search(r"^started: PostgreSQL \S+ on a unix socket in (/\S+)/socket$", done.stdout, re.MULTILINE)
        assert found, done.stdout
        folder = found.group(1)
        assert not Path(folder).exists()
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                assert folder.encode() not in cmdline.read_bytes(), cmdline
            except OSError:
                continue  # the process ended while we looked
        assert results["machine"]["postgresql"].startswith(("15", "16", "17", "18"))

    def test_table_names_every_case_and_its_connections(self, database_smoke) -> None:
        _, out, results = database_smoke
        table = (out / "database.md").read_text()
        for case in results["cases"].values():
            assert f"| {case['label']} |" in table

    def test_combine_gives_each_figure_over_the_runs(self, database_smoke) -> None:
        _, out, results = database_smoke
        done = bench("--combine", str(out), str(out), timeout=30)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("# Database pages")
        for case in results["cases"].values():
            assert f"| {case['label']} |" in done.stdout
