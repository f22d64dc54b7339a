"""metrics=prometheus on real Debian 12 and 13 servers: Debian's Prometheus scrapes the project's two
exporters, and the request counts it shows by status and release are the requests the test sent;
a deploy and a rollback move the release label and leave deploy markers; each exporter unit is
sandboxed (exposure at most 2.0) and listens on loopback only."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import pytest
from servers import RELEASES, Checkout, Host, copy_project

# Where the exporters answer (local_extensions.METRICS_PORT and the two ports after it), and nginx's
# stub_status before them.
STUB_STATUS, NGINX_EXPORTER, MTAIL = "127.0.0.1:9145", "127.0.0.1:9146", "127.0.0.1:9147"
EXPORTER_UNITS = ["my_app-nginx-exporter.service", "my_app-mtail.service"]
PROMETHEUS = "127.0.0.1:9090"
# A scrape a second: a count shows in Prometheus at most one nginx log flush (1 s), one mtail poll
# and one scrape after the request.
PROMETHEUS_CONFIG = f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: nginx
    static_configs:
      - targets: ["{NGINX_EXPORTER}"]
  - job_name: app
    static_configs:
      - targets: ["{MTAIL}"]
"""
# How long the test waits for Prometheus to show what it expects.
SEEN_SECONDS = 30
HOME_TEXT = "Served by gunicorn behind nginx."


def start_prometheus(host: Host) -> None:
    """Debian's Prometheus as a transient unit on loopback (the package's own unit is masked)."""
    host.write("/root/prometheus.yml", PROMETHEUS_CONFIG)
    host.run(
        "systemd-run", "--unit=test-prometheus", "--property=Type=simple",
        "/usr/bin/prometheus", "--config.file=/root/prometheus.yml", "--storage.tsdb.path=/var/tmp/prometheus",
        f"--web.listen-address={PROMETHEUS}",
    )  # fmt: skip
    deadline = time.monotonic() + SEEN_SECONDS
    while host.run("curl", "-sf", f"http://{PROMETHEUS}/-/ready", check=False).returncode:
        assert time.monotonic() < deadline, host.journal("-1min", "test-prometheus.service")
        time.sleep(0.2)
    # Prometheus hands new targets to its scrapers every 5 s: both scraped once before any test.
    both = {"nginx": 1.0, "app": 1.0}
    assert wait_for(host, "up", "job", both) == both, host.journal("-1min", "test-prometheus.service")


def query(host: Host, promql: str) -> list[dict]:
    """Prometheus's HTTP API: the instant vector of `promql` now."""
    said = host.run("curl", "-sS", "--get", "--data-urlencode", f"query={promql}", f"http://{PROMETHEUS}/api/v1/query")
    answer = json.loads(said.stdout)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def by_label(host: Host, promql: str, label: str) -> dict[str, float]:
    return {sample["metric"].get(label, ""): float(sample["value"][1]) for sample in query(host, promql)}


def wait_for(host: Host, promql: str, label: str, expected: dict[str, float]) -> dict[str, float]:
    """Until Prometheus shows `expected` (label value -> value), at most SEEN_SECONDS; what it shows."""
    return wait_until(host, promql, label, lambda seen: seen == expected)


def wait_until(host: Host, promql: str, label: str, done: Callable[[dict[str, float]], bool]) -> dict[str, float]:
    deadline = time.monotonic() + SEEN_SECONDS
    while not done(seen := by_label(host, promql, label)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return seen


def mtail_counts(host: Host) -> dict[tuple[str, str], float]:
    """my_app_http_requests_total as mtail counts it now, by (status, release): straight from mtail,
    once nginx has flushed its log buffer (flush=1s)."""
    time.sleep(1.5)
    text = host.run("curl", "-sS", f"http://{MTAIL}/metrics").stdout
    pattern = r'^my_app_http_requests_total\{release="([^"]*)",status="(\d+)"\} (\S+)$'
    return {(status, release): float(value) for release, status, value in re.findall(pattern, text, re.MULTILINE)}


def running_release(host: Host) -> str:
    return host.run("readlink", "/srv/my_app/current").stdout.strip().rsplit("/", 1)[1]


@pytest.fixture(scope="module", params=list(RELEASES))
def checkout(request, lab, server_project) -> Iterator[Checkout]:
    release = request.param
    project = server_project(release, metrics="prometheus")
    with lab.booted(f"metrics-{release}", release=release) as (host,):
        checkout = copy_project(host, project.path, "/root/my_app")
        checkout.installed()
        start_prometheus(host)
        yield checkout


def test_prometheus_counts_the_requests_sent_by_status_and_release(checkout: Checkout) -> None:
    host = checkout.host
    release = running_release(host)
    before = mtail_counts(host)
    sent = {"200": 30, "404": 20}
    started = time.monotonic()
    for status, count in sent.items():
        for _ in range(count):
            assert host.get("/" if status == "200" else "/no-such-page").status == int(status)
    expected = {s: before.get((s, release), 0) + n for s, n in sent.items()}
    promql = f'sum by (status) (my_app_http_requests_total{{release="{release}",status=~"200|404"}})'
    seen = wait_for(host, promql, "status", expected)
    took = time.monotonic() - started
    print(f"{host.release}: Prometheus showed the {sum(sent.values())} requests {took:.1f}s after the first was sent")
    assert seen == expected, f"{seen} != {expected}\n{host.journal('-2min', *EXPORTER_UNITS)}"
    # Every request of the test, and none other, by the release that served it.
    assert set(by_label(host, "sum by (release) (my_app_http_requests_total)", "release")) == {release}
    latency = query(host, f'my_app_http_request_duration_seconds_count{{release="{release}"}}')
    assert latency and float(latency[0]["value"][1]) >= sum(sent.values())
    # nginx's own counters, through stub_status and its exporter (scraped on a schedule of its own).
    assert wait_for(host, "nginx_up", "job", {"nginx": 1.0}) == {"nginx": 1.0}
    total = sum(sent.values())
    requests = wait_until(host, "nginx_http_requests_total", "job", lambda seen: seen.get("nginx", 0) >= total)
    assert requests.get("nginx", 0) >= total, requests


def test_a_deploy_and_a_rollback_move_the_release_label_and_leave_markers(checkout: Checkout) -> None:
    host = checkout.host
    first = running_release(host)
    assert by_label(host, "my_app_deploys_total", "action") == {"deploy": 1.0}
    before = checkout.edit("my_app/app.py", HOME_TEXT, f"{HOME_TEXT} (metrics)")
    try:
        checkout.installed()
    finally:
        checkout.put_back("my_app/app.py", before)
    second = running_release(host)
    assert second != first
    assert f'"{second}"' in host.read("/etc/nginx/snippets/my_app/release.conf")
    assert host.get("/").status == 200
    seen = wait_until(host, 'my_app_http_requests_total{status="200"}', "release", lambda seen: second in seen)
    assert second in seen, seen
    checkout.installed("--rollback")
    assert running_release(host) == first
    assert f'"{first}"' in host.read("/etc/nginx/snippets/my_app/release.conf")
    before = by_label(host, 'my_app_http_requests_total{status="200"}', "release")
    assert host.get("/").status == 200
    # The request after the rollback is counted for the first release again.
    seen = wait_until(
        host,
        'my_app_http_requests_total{status="200"}',
        "release",
        lambda seen: seen.get(first, 0) > before.get(first, 0),
    )
    assert seen.get(first, 0) > before.get(first, 0), (before, seen)
    markers = wait_for(
        host,
        "sum by (release) (my_app_deploys_total)",
        "release",
        {first: 2.0, second: 1.0},
    )
    assert markers == {first: 2.0, second: 1.0}, markers
    assert by_label(host, f'my_app_deploys_total{{release="{first}"}}', "action") == {"deploy": 1.0, "rollback": 1.0}
    deployed_at = query(host, "my_app_last_deploy_timestamp_seconds")
    assert abs(float(deployed_at[0]["value"][1]) - time.time()) < 120


def test_each_exporter_is_sandboxed_and_listens_on_loopback_only(checkout: Checkout) -> None:
    host = checkout.host
    for unit in EXPORTER_UNITS:
        assert host.is_active(unit), host.journal("-5min", unit)
        security = host.run("systemd-analyze", "security", unit).stdout
        exposure = re.search(rf"Overall exposure level for {re.escape(unit)}: ([\d.]+)", security)
        assert exposure, security
        print(f"{host.release}: systemd-analyze security {unit}: {exposure[1]}")
        assert float(exposure[1]) <= 2.0, security
    listening = host.run("ss", "-Hltn").stdout.split("\n")
    for address in (STUB_STATUS, NGINX_EXPORTER, MTAIL):
        port = address.rsplit(":", 1)[1]
        bound = {line.split()[3] for line in listening if line.split() and line.split()[3].endswith(f":{port}")}
        assert bound == {address}, f"port {port}: {bound}"
