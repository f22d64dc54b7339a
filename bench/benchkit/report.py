"""Write what a run measured: results.json (every round), results.md (medians, targets), ratios.png."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path

from .runner import Case, Results, Settings, Target, targets, what_if_numbers


def write_all(results: Results, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    if results.settings.only == "database":
        files = [out / "database.json", out / "database.md"]
        files[0].write_text(json.dumps(as_json(results), indent=2) + "\n")
        files[1].write_text(database_markdown(results))
        return files
    files = [out / "results.json", out / "results.md", out / "ratios.png"]
    files[0].write_text(json.dumps(as_json(results), indent=2) + "\n")
    files[1].write_text(markdown(results))
    chart(results, files[2])
    return files


def redraw(out: Path) -> list[Path]:
    """results.md and ratios.png again from OUT/results.json, without measuring anything."""
    data = json.loads((out / "results.json").read_text())
    results = Results(Settings(**data["settings"]), data["machine"], what_ifs=data.get("what_if", []))
    for case_id, case in data["cases"].items():
        results.cases.append(Case(case_id, case["group"], case["label"], run=None, line=None))
        results.rounds[case_id] = case["rounds"]
    results.targets = targets(results)
    results.what_ifs = what_if_numbers(results)
    files = [out / "results.md", out / "ratios.png"]
    files[0].write_text(markdown(results))
    chart(results, files[1])
    return files


def as_json(results: Results) -> dict:
    cases = {}
    for case in results.cases:
        rounds = results.rounds[case.id]
        numeric = sorted({key for r in rounds for key, value in r.items() if is_number(value)})
        cases[case.id] = {
            "group": case.group,
            "label": case.label,
            "median": {key: results.median(case.id, key) for key in numeric},
            "rounds": rounds,
        }
    return {
        "machine": results.meta,
        "settings": asdict(results.settings),
        "targets": [
            {
                "id": t.id,
                "label": t.label,
                "measured": round(t.measured, 4) if t.measured is not None else None,
                "limit": t.limit,
                "kind": t.kind,
                "unit": t.unit,
                "detail": t.detail,
                "per_round": [round(value, 4) if value is not None else None for value in t.per_round],
                "met": t.met,
                "verdict": t.verdict,
            }
            for t in results.targets
        ],
        "what_if": results.what_ifs,
        "cases": cases,
    }


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Markdown ----------------------------------------------------------------------------------------

LIMIT_SIGN = {"min": ">=", "above": ">", "max": "<=", "below": "<"}


def show_target(target: Target) -> tuple[str, str]:
    limit = f"{LIMIT_SIGN[target.kind]} {target.limit:g}"
    if target.measured is None:
        return "no answer", limit
    if target.unit == "x":
        return f"{target.measured:.2f} x ({target.detail})", f"{limit} x"
    if target.unit == "s":
        return f"{target.measured:.2f} s ({target.detail})", f"{limit} s"
    return f"{target.measured:.0f} ({target.detail})", limit


def ms(median: dict, key: str, timed_out: bool) -> str:
    value = median.get(key)
    if value is None:
        return "-"
    return f"{value:.2f}" + (" *" if timed_out else "")


def measured_on(results: Results) -> str:
    """When, on what and how: the first sentence of a results file."""
    s, m = results.settings, results.meta
    return (
        f"Measured {m['date']} on {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}: nginx {m['nginx']}, "
        f"gunicorn {m['gunicorn']}, wrk {m['wrk']}, Python {m['python']}. {s.rounds} interleaved round(s), "
        f"{s.duration} s of load per case; each figure is the median over the rounds"
    )


def markdown(results: Results) -> str:
    s = results.settings
    lines = [
        "# Benchmark results",
        "",
        f"{measured_on(results)}, and each ratio the median "
        "of its per-round ratios (the two cases of a ratio ran seconds apart in every round). Everything on "
        "127.0.0.1; the load generator shares the cores with the servers, so ratios are what to compare, not "
        "absolute numbers.",
        "",
        other_load(results),
        "",
        "## Targets",
        "",
        "| target | measured | per round | limit | result |",
        "| --- | --- | --- | --- | --- |",
    ]
    for target in results.targets:
        measured, limit = show_target(target)
        rounds = ", ".join("-" if v is None else f"{v:.2f}" for v in target.per_round) if target.unit == "x" else ""
        lines.append(f"| {target.label} | {measured} | {rounds} | {limit} | {target.verdict} |")

    lines += throughput_table(
        results, "dynamic", f"## Dynamic page (GET /, wrk {s.threads} threads x {s.connections} connections)"
    )
    lines += throughput_table(
        results, "static", f"## Static file (100 KB, wrk {s.threads} threads x {s.connections} connections)"
    )
    lines += what_if_section(results)
    lines += throughput_table(
        results, "cache", f"## Shared cache (wrk {s.threads} threads x {s.connections} connections)"
    )
    lines += io_section(results)
    lines += database_section(results)
    lines += tls_section(results)
    lines += [
        "",
        f"## Slow clients ({s.slow_clients} connections sending headers one byte every 100 ms; normal requests "
        f"from wrk: {s.normal_connections} connections, each pausing {s.normal_pause_ms} ms between requests)",
        "",
        "| server | idle: answered | p50 ms | p99 ms | with slow clients: answered | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for case in (c for c in results.cases if c.group == "slow clients"):
        median = json_median(results, case.id)
        rounds = results.rounds[case.id]
        cells = []
        for phase in ("idle", "slow"):
            answered = sum(r[f"{phase}_requests"] for r in rounds)
            timed = [f"{median[f'{phase}_{p}_ms']:.2f}" if answered else "-" for p in ("p50", "p99")]
            cells += [f"{answered:,}", *timed]
        lines.append(f"| {case.label} | {' | '.join(cells)} |")
    lines += [
        "",
        "Answered: requests over all rounds. Without an answer there is no latency to show: those "
        "requests waited for the whole run.",
    ]

    lines += [
        "",
        "## Reload (HUP to gunicorn's master a third into the load, through the generated nginx)",
        "",
        "| case | round | requests | failed | non-2xx | connect / read / write / timeout errors | reload seen |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for case in (c for c in results.cases if c.group == "reload"):
        for number, r in enumerate(results.rounds[case.id], 1):
            e = r["errors"]
            lines.append(
                f"| {case.label} | {number} | {r['requests']:,} | {r['failed']} | {e['status']} | "
                f"{e['connect']} / {e['read']} / {e['write']} / {e['timeout']} | {'yes' if r['reloaded'] else 'no'} |"
            )

    lines += ["", "## Bake", "", "| case | seconds per round | median |", "| --- | --- | ---: |"]
    for case in (c for c in results.cases if c.group == "bake"):
        seconds = ", ".join(f"{r['seconds']:.2f}" for r in results.rounds[case.id])
        lines.append(f"| {case.label} | {seconds} | {results.median(case.id, 'seconds'):.2f} |")

    lines.append("")
    if any(r.get("timed_out") for rounds in results.rounds.values() for r in rounds):
        lines.append("`*`: some requests got no answer within 2 s (wrk's timeout); the percentiles leave those out.")
    lines += ["Every round of every case is in results.json.", ""]
    return "\n".join(lines)


def throughput_table(results: Results, group: str, title: str) -> list[str]:
    lines = [
        "",
        title,
        "",
        "| setup | req/s | p50 ms | p99 ms | failed | CPU us per request (nginx + gunicorn + wrk) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in (c for c in results.cases if c.group == group):
        median = json_median(results, case.id)
        timed_out = any(r["timed_out"] for r in results.rounds[case.id])
        failed = sum(r["failed"] for r in results.rounds[case.id])
        lines.append(
            f"| {case.label} | {median['rps']:,.0f} | {ms(median, 'p50_ms', timed_out)} | "
            f"{ms(median, 'p99_ms', timed_out)} | {failed} | {cpu_cell(results, case.id)} |"
        )
    return lines


def what_if_section(results: Results) -> list[str]:
    if not results.what_ifs:
        return []
    lines = [
        "",
        "## What-if: what each part of the configs costs (not targets; the template is unchanged)",
        "",
        "Each change is made in a copy of the default project and measured through its nginx (a change on "
        "gunicorn's side as gunicorn alone too), in the same rounds as the cases above. The ratio is the median "
        "of the per-round ratios changed / as generated: above 1 x, the part left out costs that much. CPU: "
        "nginx's and gunicorn's time per request, medians over the rounds.",
        "",
        "| change | measured on | req/s: as generated -> changed | per round | CPU us/request: as generated -> "
        "changed | p99 ms | stack vs gunicorn alone, both changed | why |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for what_if in results.what_ifs:
        if "skipped" in what_if:
            lines.append(f"| {what_if['label']} | - | - | - | - | - | - | not measured: {what_if['skipped']} |")
            continue
        on = "dynamic page" if what_if["baseline"] == "dynamic-stack" else "100 KB static file"
        versus = what_if.get("stack_vs_gunicorn")
        rounds = ", ".join("-" if v is None else f"{v:.2f}" for v in what_if.get("vs_baseline_per_round", []))
        cpu = (
            f"{what_if['baseline_cpu_us']:.0f} -> {what_if['cpu_us']:.0f}"
            if what_if.get("cpu_us") is not None and what_if.get("baseline_cpu_us") is not None
            else "-"
        )
        lines.append(
            f"| {what_if['label']} | {on} | {what_if['baseline_rps']:,.0f} -> {what_if['rps']:,.0f} "
            f"({what_if['vs_baseline']:.2f} x) | {rounds} | {cpu} | {what_if['baseline_p99_ms']:.2f} -> "
            f"{what_if['p99_ms']:.2f} | {'-' if versus is None else f'{versus:.2f} x'} | {what_if['why']} |"
        )
    title = "### What-if cases in detail"
    return lines + throughput_table(results, "what-if", title)


def io_section(results: Results) -> list[str]:
    cases = [c for c in results.cases if c.group == "io-bound"]
    if not cases:
        return []
    s = results.settings
    lines = [
        "",
        f"## I/O-bound page (waits 20 ms, as on a database; wrk {s.threads} threads x {s.connections} connections)",
        "",
        "At most: requests the workers can have in progress at once (workers x threads, or the connections "
        "wrk opens, whichever is fewer), each taking 20 ms.",
        "",
        "| worker class | in progress at once | at most req/s | req/s | share of the most | p50 ms | p99 ms | "
        "failed | CPU us per request |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in cases:
        median = json_median(results, case.id)
        timed_out = any(r["timed_out"] for r in results.rounds[case.id])
        failed = sum(r["failed"] for r in results.rounds[case.id])
        lines.append(
            f"| {case.label} | {median['parallel']:.0f} | {median['limit_rps']:,.0f} | {median['rps']:,.0f} | "
            f"{median['share_of_limit']:.0%} | {ms(median, 'p50_ms', timed_out)} | {ms(median, 'p99_ms', timed_out)} | "
            f"{failed} | {cpu_cell(results, case.id)} |"
        )
    return lines


def database_section(results: Results) -> list[str]:
    cases = [c for c in results.cases if c.group == "database"]
    if not cases:
        return []
    s, m = results.settings, results.meta
    lines = [
        "",
        f"## Database pages (GET /db: 3 SELECTs by primary key and an UPDATE, Django; wrk {s.threads} threads x "
        f"{s.connections} connections)",
        "",
        f"PostgreSQL {m.get('postgresql', '?')} (a throwaway cluster on a unix socket, max_connections "
        f"{m.get('max_connections', '?')}) or SQLite in the project's state folder. At once: requests the "
        "workers can have in progress (workers x threads, or wrk's connections). Connections: the server's "
        "connections opened by that stack (pg_stat_activity, by application_name), or for SQLite the "
        "database files its workers hold open, sampled 5 times a second during the load: the most, and "
        "what stayed open after it.",
        "",
        "| case | at once | req/s | p50 ms | p99 ms | failed | connections: most (after) | CPU us per request "
        "(nginx + gunicorn + PostgreSQL, if used, + wrk) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for case in cases:
        median = json_median(results, case.id)
        rounds = results.rounds[case.id]
        timed_out = any(r["timed_out"] for r in rounds)
        failed = sum(r["failed"] for r in rounds)
        most = max((r["connections_max"] for r in rounds if r["connections_max"] is not None), default=None)
        after = max(r["connections_after"] for r in rounds)
        lines.append(
            f"| {case.label} | {median['parallel']:.0f} | {median['rps']:,.0f} | {ms(median, 'p50_ms', timed_out)} | "
            f"{ms(median, 'p99_ms', timed_out)} | {failed} | {'-' if most is None else most} ({after}) | "
            f"{cpu_cell(results, case.id)} |"
        )
    return lines


def database_markdown(results: Results) -> str:
    """database.md of a run of the database pages alone (bench/run --only database)."""
    lines = [
        "# Database pages",
        "",
        f"{measured_on(results)}. Everything on 127.0.0.1.",
        "",
        other_load(results),
        *database_section(results),
        "",
    ]
    if any(r.get("timed_out") for rounds in results.rounds.values() for r in rounds):
        lines.append("`*`: some requests got no answer within 2 s (wrk's timeout); the percentiles leave those out.")
    lines += ["Every round of every case is in database.json.", ""]
    return "\n".join(lines)


def combine_database(runs: list[Path]) -> str:
    """One table of several runs' database.json: each figure as the lowest-highest over the runs.

    Besides each run's medians, two ratios that a busy machine moves less, each the median of its
    per-round ratios (the two cases ran seconds apart): req/s against the same worker class with
    CONN_MAX_AGE=60 on PostgreSQL, and against sync workers with the same database and setting.
    """
    data = [json.loads((run / "database.json").read_text()) for run in runs]
    first = data[0]

    def spread(values: list[float], digits: str, unit: str = "") -> str:
        if not values:
            return "-"
        low, high = f"{min(values):{digits}}", f"{max(values):{digits}}"
        return f"{low}{unit}" if low == high else f"{low}-{high}{unit}"

    def paired(run: dict, case_id: str, base_id: str) -> float | None:
        if case_id == base_id or base_id not in run["cases"]:
            return None
        pairs = zip(run["cases"][case_id]["rounds"], run["cases"][base_id]["rounds"], strict=True)
        ratios = [a["rps"] / b["rps"] for a, b in pairs if b["rps"]]
        return statistics.median(ratios) if ratios else None

    def server_cpu(case: dict) -> float | None:
        sums = [
            sum(r["cpu_us_per_request"].get(name) or 0 for name in ("nginx", "gunicorn", "postgresql"))
            for r in case["rounds"]
            if r["requests"]
        ]
        return statistics.median(sums) if sums else None

    machine = first["machine"]
    settings = first["settings"]
    loads = [statistics.median(other_load_values(d)) for d in data]
    lines = [
        "# Database pages: " + ", ".join(str(run) for run in runs),
        "",
        f"{len(runs)} runs ({', '.join(sorted({d['machine']['date'] for d in data}))}) on {machine['cores']} cores "
        f"({machine['cpu']}), Linux {machine['kernel']}: nginx {machine['nginx']}, gunicorn {machine['gunicorn']}, "
        f"PostgreSQL {machine.get('postgresql', '?')}, wrk {machine['wrk']}, Python {machine['python']}; "
        f"{settings['rounds']} interleaved rounds of {settings['duration']} s per case and run, wrk "
        f"{settings['threads']} threads x {settings['connections']} connections. Other work on the machine took a "
        f"median of {', '.join(f'{load:.2f}' for load in loads)} cores in each run.",
        "",
        "Each cell is the lowest-highest over the runs of: the run's median over its rounds (req/s, p50, p99; "
        "CPU: nginx + gunicorn + PostgreSQL per request); the median of the per-round ratios (vs age 60: req/s "
        "against the same worker class with CONN_MAX_AGE=60 on PostgreSQL; vs sync: against sync workers with "
        "the same database and setting); the most connections the stack held during a load. Failed: requests "
        "without an answer within 2 s, or not 2xx, in each run.",
        "",
        "| case | at once | req/s | vs age 60 | vs sync | p50 ms | p99 ms | CPU us/req | failed | connections |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for case_id, case in first["cases"].items():
        if case["group"] != "database":
            continue
        _, database, workers, *setting = case_id.split("-")
        by_age = f"db-postgresql-{workers}-age60"
        by_class = f"db-{database}-sync" + "".join(f"-{part}" for part in setting)
        runs_of = [d for d in data if case_id in d["cases"]]
        medians = [d["cases"][case_id]["median"] for d in runs_of]
        vs_age = [v for v in (paired(d, case_id, by_age) for d in runs_of) if v is not None]
        vs_sync = [v for v in (paired(d, case_id, by_class) for d in runs_of) if v is not None]
        cpu = [v for v in (server_cpu(d["cases"][case_id]) for d in runs_of) if v is not None]
        failed = ", ".join(str(sum(r["failed"] for r in d["cases"][case_id]["rounds"])) for d in runs_of)
        held = [max(r["connections_max"] or 0 for r in d["cases"][case_id]["rounds"]) for d in runs_of]
        lines.append(
            f"| {case['label']} | {medians[0]['parallel']:.0f} | {spread([m['rps'] for m in medians], ',.0f')} | "
            f"{spread(vs_age, '.2f', ' x')} | {spread(vs_sync, '.2f', ' x')} | "
            f"{spread([m['p50_ms'] for m in medians], '.0f')} | {spread([m['p99_ms'] for m in medians], '.0f')} | "
            f"{spread(cpu, ',.0f')} | {failed} | {spread(held, '.0f')} |"
        )
    return "\n".join([*lines, ""])


def tls_section(results: Results) -> list[str]:
    if "tls-h2" not in results.rounds:
        return []
    h2 = json_median(results, "tls-h2")
    plain = results.median("dynamic-stack", "rps")
    lines = [
        "",
        "## HTTPS (tls_mode=existing, HTTP/2, TLS 1.3; the same page as the dynamic case)",
        "",
        "| case | figure | per round |",
        "| --- | ---: | --- |",
        f"| {next(c.label for c in results.cases if c.id == 'tls-h2')} ({results.settings.connections} connections, "
        "1 stream each) | "
        f"{h2['rps']:,.0f} req/s ({h2['rps'] / plain:.2f} x plain HTTP/1.1) | "
        + ", ".join(f"{r['rps']:,.0f}" for r in results.rounds["tls-h2"])
        + " |",
    ]
    for case_id in ("tls-handshakes-new", "tls-handshakes-resumed"):
        rounds = results.rounds.get(case_id, [])
        if not rounds:
            continue
        median = json_median(results, case_id)
        resumed = sum(r["resumed"] for r in rounds)
        total = sum(r["connections"] for r in rounds)
        label = next(c.label for c in results.cases if c.id == case_id)
        lines.append(
            f"| {label} | {median['per_second']:,.0f} connections/s ({resumed:,} of {total:,} resumed) | "
            + ", ".join(f"{r['per_second']:,.0f}" for r in rounds)
            + " |"
        )
    return lines


NOISY_CORES = 0.2  # median other load above which a run's ratios are not to be trusted


def other_loads(results: Results) -> list[float]:
    return sorted(
        value
        for rounds in results.rounds.values()
        for r in rounds
        for key, value in r.items()
        if key.endswith("other_cores")
    )


def other_load_values(data: dict) -> list[float]:
    """other_loads of a results.json or database.json, as read back."""
    return sorted(r["other_cores"] for case in data["cases"].values() for r in case["rounds"] if "other_cores" in r)


def other_load(results: Results) -> str:
    """How busy the machine was with other work while the cases ran: the noise in these numbers."""
    values = other_loads(results)
    if not values:
        return ""
    median = values[len(values) // 2]
    text = (
        f"Other load while the cases ran (CPU busy outside the measured servers and wrk, interrupts "
        f"included): median {median:.2f} cores, highest {values[-1]:.2f} (1-minute load average "
        f"{results.meta['load_average_before']} as the run started)."
    )
    if median > NOISY_CORES:
        text += (
            f" **Noisy run**: other work took more than {NOISY_CORES} of the {results.meta['cores']} cores; "
            "its ratios say more about that work than about the stack. Run again on an idle machine."
        )
    return text


def json_median(results: Results, case_id: str) -> dict:
    rounds = results.rounds[case_id]
    keys = {key for r in rounds for key, value in r.items() if is_number(value)}
    return {key: results.median(case_id, key) for key in keys}


def cpu_cell(results: Results, case_id: str) -> str:
    rounds = results.rounds[case_id]
    names = [name for name in ("nginx", "gunicorn", "postgresql", "wrk") if name in rounds[0]["cpu_us_per_request"]]
    values = []
    for name in names:
        per_round = [r["cpu_us_per_request"][name] for r in rounds if r["cpu_us_per_request"][name] is not None]
        values.append(sorted(per_round)[len(per_round) // 2] if per_round else None)
    if any(v is None for v in values):
        return "-"
    return " + ".join(f"{v:.0f}" for v in values) + f" = {sum(values):.0f}"


# Chart -------------------------------------------------------------------------------------------


def chart(results: Results, path: Path) -> None:
    """One bar per ratio target on a log scale around 1 (parity), with the target marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ratios = [t for t in results.targets if t.unit == "x"]
    others = [t for t in results.targets if t.unit != "x"]
    # What-if cases: the stack with the change against the stack as generated (grey: not targets).
    extras = [w for w in results.what_ifs if w.get("vs_baseline") is not None]
    rows = len(ratios) + len(extras)
    fig, ax = plt.subplots(figsize=(11, 0.75 * rows + 2.6), dpi=110)
    low, high = 0.25, 16.0
    # (value, its target or reference, colour, line style of the target tick, each round's value)
    bars = [(t.measured, t.limit, "#2e7d32" if t.met else "#c62828", "solid", t.per_round) for t in ratios]
    bars += [(w["vs_baseline"], 1.0, "#9e9e9e", "dotted", w.get("vs_baseline_per_round", [])) for w in extras]
    for y, (value, limit, color, style, per_round) in enumerate(bars):
        # Each round's ratio as a dot: how far the median could have moved.
        dots = [min(max(v, low), high) for v in per_round if v is not None]
        ax.plot(dots, [y] * len(dots), "o", color="black", markersize=3.5, alpha=0.7, zorder=3)
        ax.plot([limit] * 2, [y - 0.38, y + 0.38], color="black", linewidth=2.5, linestyle=style)
        if value is None:
            ax.text(1.05, y, "no answer to measure", va="center", fontsize=9, color=color)
            continue
        shown = min(max(value, low), high)
        ax.barh(y, shown - 1, left=1, height=0.55, color=color)
        # The value goes right of the bar, the tick and the dots (or left of them all, below 1 x).
        if shown >= 1:
            ax.text(max(shown, limit, *dots) * 1.08, y, f"{value:.2f} x", va="center", ha="left", fontsize=10)
        else:
            ax.text(min(shown, limit, *dots) / 1.08, y, f"{value:.2f} x", va="center", ha="right", fontsize=10)
    ax.axvline(1, color="grey", linewidth=0.8)
    labels = [
        f"{t.label}\ntarget {LIMIT_SIGN[t.kind]} {t.limit:g} x ({'higher' if t.kind in ('min', 'above') else 'lower'}"
        " is better)"
        for t in ratios
    ]
    labels += [f"what-if, {w['short']}:\nchanged / as generated (not a target)" for w in extras]
    ax.set_yticks(range(rows), labels, fontsize=8.5)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(low, high * 2.5)  # room for the value right of the longest bar
    ticks = [0.25, 0.5, 1, 2, 4, 8, 16]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([f"{t:g} x" for t in ticks])
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel("ratio (log scale)")
    s, m = results.settings, results.meta
    ax.set_title(
        f"The generated stack against its baselines (bars: median of the per-round ratios)\n"
        f"{s.rounds} round(s) x {s.duration} s per case, {m['cores']} cores, {m['date']}",
        fontsize=10,
    )
    footer = "Dots: each round. Tick: the target (dotted: parity). Green: met, red: missed. "
    footer += "Grey: what-if, above 1 x the part changed or left out costs that much.\n"
    footer += "   ".join(f"{t.label}: {show_target(t)[0]} - {t.verdict}" for t in others)
    fig.text(0.01, 0.01, footer, fontsize=8, ha="left", va="bottom", wrap=True)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path)
    plt.close(fig)
