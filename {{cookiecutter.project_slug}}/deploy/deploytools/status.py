"""deploy/status: what this server runs and how its site has been answering.

Read-only: the manifest and release log deploy/install keeps, systemctl, /proc, and nginx's
access log (traffic.py). Nothing here decides anything for another command; deploy/status --json
gives the same facts as data.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from . import layout, maintenance, traffic
from .install.ledger import MANIFEST, Manifest
from .install.releases import LOG, Log, now_utc, running_release
from .install.roles import DESCRIBED, Role

# The windows the traffic is summarised over, in seconds.
WINDOWS = (60, 300, 900)
# Deploys listed, newest first.
DEPLOYS_SHOWN = 5
UNIT_PROPERTIES = ("ActiveState", "SubState", "MainPID", "ActiveEnterTimestamp")


def unit_state(unit: str) -> dict[str, object]:
    """systemctl's view of `unit`, and the worker processes under its main process."""
    try:
        said = subprocess.run(
            ["systemctl", "show", unit, *(f"--property={name}" for name in UNIT_PROPERTIES)],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"unit": unit, "error": str(error)}
    if said.returncode:
        said_why = said.stderr.strip() or f"systemctl exit status {said.returncode}"
        return {"unit": unit, "error": said_why.splitlines()[0]}
    values = dict(line.split("=", 1) for line in said.stdout.splitlines() if "=" in line)
    pid = int(values.get("MainPID") or 0)
    return {
        "unit": unit,
        "active": values.get("ActiveState", "unknown"),
        "sub": values.get("SubState", ""),
        "since": values.get("ActiveEnterTimestamp", ""),
        "pid": pid or None,
        "workers": len(children(pid)) if pid else 0,
    }


def children(pid: int) -> list[int]:
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        return []
    return found


def switched_at() -> str | None:
    """When the current link was last switched (a deploy or a rollback made it anew), in UTC."""
    try:
        made = os.lstat(layout.APP_DIR).st_mtime
    except OSError:
        return None
    return now_utc(made)


def gather(log_path: Path, now: float) -> dict[str, object]:
    manifest = Manifest.load(Path(MANIFEST)) if os.access(MANIFEST, os.R_OK) else Manifest()
    role = Role.recorded(manifest.role)
    releases = Log.load(Path(LOG)) if os.access(LOG, os.R_OK) else Log()
    running = running_release(Path(layout.APP_DIR)) if role.installs_code else None
    entry = releases.find(running) if running else None
    units = [*(layout.ACTIVE_UNITS if role.runs_app else []), *(["nginx.service"] if role.runs_nginx else [])]
    facts: dict[str, object] = {
        "project": layout.SLUG,
        "role": role.name,
        "release": running or manifest.release or None,
        "release_since": switched_at(),
        "release_describe": entry.describe if entry else None,
        "units": [unit_state(unit) for unit in units],
        "deploys": [
            {"release": e.id, "deployed": e.deployed, "describe": e.describe, "outcome": e.skipped or "ok"}
            for e in reversed(releases.entries[-DEPLOYS_SHOWN:])
        ],
        "access_log": str(log_path) if role.runs_nginx else None,
        "maintenance": maintenance.state() if role.runs_nginx else None,
    }
    if role.runs_nginx:
        hits = traffic.read_since(log_path, now - max(WINDOWS), now)
        facts["traffic"] = {
            str(seconds): traffic.summarize([h for h in hits if h.at >= now - seconds], seconds).as_dict()
            for seconds in WINDOWS
        }
        recent = [h for h in hits if h.at >= now - WINDOWS[1]]
        facts["servers"] = {
            server: traffic.summarize(served, WINDOWS[1]).as_dict()
            for server, served in traffic.by_server(recent).items()
        }
    return facts


def milliseconds(value: object) -> str:
    return "-" if value is None else f"{float(value) * 1000:.0f}ms"  # type: ignore[arg-type]


def traffic_rows(rows: dict[str, dict], label: str) -> list[str]:
    columns = f"{'req/s':>8} {'count':>7} {'4xx':>6} {'5xx':>6} {'502/504':>7}"
    width = max([len(label), *map(len, rows)])
    lines = [f"  {label:<{width}} {columns}   request p50/p95/p99   gunicorn p50/p95/p99"]
    for name, row in rows.items():
        times = "/".join(milliseconds(row[key]) for key in ("p50", "p95", "p99"))
        upstream = "/".join(milliseconds(row[key]) for key in ("upstream_p50", "upstream_p95", "upstream_p99"))
        share_4xx = 100 * row["classes"].get("4xx", 0) / row["requests"] if row["requests"] else 0.0
        lines.append(
            f"  {name:<{width}} {row['per_second']:>8.1f} {row['requests']:>7} {share_4xx:>5.1f}%"
            f" {row['share_5xx']:>5.1f}% {row['share_gateway']:>6.1f}%   {times:<21} {upstream}"
        )
    return lines


def render(facts: dict) -> str:
    release = facts["release"] or "none"
    described = f" ({facts['release_describe']})" if facts.get("release_describe") else ""
    since = f" since {facts['release_since']}" if facts.get("release_since") else ""
    lines = [f"{facts['project']}: {DESCRIBED[facts['role']]}", f"release: {release}{described}{since}"]
    if facts.get("maintenance"):
        why = f": {facts['maintenance']['reason']}" if facts["maintenance"].get("reason") else ""
        lines.append(f"maintenance: ON since {facts['maintenance'].get('since') or '?'}{why} (deploy/maintenance off)")
    lines.append("units:")
    for unit in facts["units"]:
        if "error" in unit:
            lines.append(f"  {unit['unit']}: {unit['error']}")
            continue
        pid = f", pid {unit['pid']}, {unit['workers']} worker(s)" if unit["pid"] else ""
        started = f" since {unit['since']}" if unit["since"] and unit["active"] == "active" else ""
        lines.append(f"  {unit['unit']}: {unit['active']} ({unit['sub']}){started}{pid}")
    lines.append("last deploys:" if facts["deploys"] else "last deploys: none recorded")
    for deploy in facts["deploys"]:
        git = f" {deploy['describe']}" if deploy["describe"] else ""
        lines.append(f"  {deploy['deployed']}  {deploy['release']}{git}  {deploy['outcome']}")
    if facts.get("traffic") is None:
        lines.append("traffic: this host runs no nginx (its load balancers' deploy/status shows its answers)")
        return "\n".join(lines)
    lines.append(f"traffic ({facts['access_log']}):")
    named = {f"last {int(seconds) // 60} min": row for seconds, row in facts["traffic"].items()}
    lines += traffic_rows(named, "window")
    if facts["servers"]:
        lines.append(f"per app server, last {WINDOWS[1] // 60} min:")
        lines += traffic_rows(facts["servers"], "server")
    return "\n".join(lines)


def status(log_path: Path, as_json: bool) -> int:
    facts = gather(log_path, time.time())
    print(json.dumps(facts, indent=1) if as_json else render(facts))
    return 0


def watch(log_path: Path, seconds: float, threshold: float, servers: list[str], as_json: bool) -> int:
    """deploy/status --watch: on a load balancer, after an app host took a new release. Exit status
    1 when the answers of `servers` are worse than the previous release's."""
    start = time.time()
    verdict = traffic.watch(log_path, start - max(WINDOWS), start, seconds, threshold, servers)
    print(json.dumps(verdict.as_dict()) if as_json else f"watch: {verdict.describe()}")
    return 1 if verdict.worse else 0
