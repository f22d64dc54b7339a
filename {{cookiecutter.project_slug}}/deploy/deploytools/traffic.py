"""What the site answered, from nginx's access log read from its end.

deploy/status summarises the last minutes; deploy/install's watch (and deploy/status --watch on a
load balancer) compares a new release's answers with the previous release's. A line is nginx's
combined format followed by the site's own fields (its log_format): rt= (nginx's time),
urt= (gunicorn's), ua="..." (the app servers tried, the last one answered), us="...", ts= (Unix
time in ms). Lines without ts= (a log older than that format) are not read.

Reading starts at the end of the file and stops at the first block older than the window, so a
large log costs what its last minutes hold; when the window reaches further back than the file,
the rotated file beside it (logrotate's .1, left uncompressed by delaycompress) is read too.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

# The combined format up to the user agent, then the site's own fields.
LINE = re.compile(rb'\[[^\]]*\] "[^"]*" (?P<status>\d{3}) \S+ "[^"]*" "[^"]*"(?P<fields>.*)$')
# The same, when the fields are in the order the site's log_format writes them: 4 times faster.
QUICK = re.compile(rb'" (\d{3}) \S+ "[^"]*" "[^"]*" rt=(\S+) urt=(\S+) ua="([^"]*)" us="[^"]*" ts=(\d+(?:\.\d+)?)')
FIELD = re.compile(rb' (\w+)=(?:"([^"]*)"|(\S*))')
NUMBER = re.compile(rb"\d+(?:\.\d+)?")
TRIED = re.compile(rb", | : ")
# nginx writes lines from its workers in buffers flushed each second: lines may be out of order by
# about that much. Reading goes this far past the window's start before it stops.
DISORDER_SECONDS = 5.0
BLOCK = 1 << 20
# The share of 5xx answers a new release may add to the previous release's, in percentage points,
# and the fewest answers the watch judges on.
THRESHOLD_POINTS = 5.0
FEWEST = 20
# A few answers say little: one in four failing among 70 answers is also what a release failing one
# in five shows by chance. The new share must exceed the previous one by the threshold plus this
# many standard errors of the difference (3: by chance about once in 700 looks at one moment; the
# watch looks twice a second, with a margin that narrows as the answers add up).
STANDARD_ERRORS = 3.0


@dataclass(frozen=True)
class Hit:
    """One request as nginx logged it."""

    at: float  # when nginx logged it (Unix time)
    status: int  # what the client got
    seconds: float  # nginx's $request_time
    upstream_seconds: float | None  # gunicorn's time ($upstream_response_time, summed over retries)
    server: str  # the app server that answered last ("" when none did: static, cache, nginx's own)


def parse(line: bytes) -> Hit | None:
    """The request of one log line, or None when the line is not in the site's format."""
    quick = QUICK.search(line)
    if quick is not None:
        status, seconds, times, tried, at = quick.groups()
    else:
        match = LINE.search(line)
        if match is None:
            return None
        fields = {m[1]: m[2] if m[2] is not None else m[3] for m in FIELD.finditer(match["fields"])}
        if b"ts" not in fields:
            return None
        status, at = match["status"], fields[b"ts"]
        seconds, times, tried = fields.get(b"rt", b"0"), fields.get(b"urt", b"-"), fields.get(b"ua", b"")
    try:
        when, took = float(at), float(seconds)
    except ValueError:
        return None
    # "a, b : c": a retried on b, then an internal redirect to c; "-": no app server was asked.
    server = TRIED.split(tried)[-1].strip().lstrip(b"-")
    return Hit(when, int(status), took, upstream_seconds(times), server.decode(errors="replace"))


def upstream_seconds(times: bytes) -> float | None:
    """$upstream_response_time: one time, "-" (no app server asked), or one per server tried."""
    try:
        return float(times)
    except ValueError:
        found = NUMBER.findall(times)
        return sum(float(t) for t in found) if found else None


def lines_backwards(path: Path) -> Iterator[bytes]:
    """The file's complete lines, last first, read a block at a time from the end."""
    with path.open("rb") as log:
        end = log.seek(0, os.SEEK_END)
        rest = b""
        while end > 0:
            start = max(0, end - BLOCK)
            log.seek(start)
            chunk = log.read(end - start) + rest
            end = start
            lines = chunk.split(b"\n")
            rest = lines[0] if start > 0 else b""
            yield from reversed(lines if start == 0 else lines[1:])


def read_since(log: Path, since: float, until: float = math.inf) -> list[Hit]:
    """The requests logged from `since` up to `until`, oldest first; none when there is no log."""
    hits: list[Hit] = []
    for path in (log, log.with_name(log.name + ".1")):
        if not path.is_file():
            break
        reached = False
        for line in lines_backwards(path):
            hit = parse(line)
            if hit is None:
                continue
            if hit.at < since - DISORDER_SECONDS:
                reached = True
                break
            if since <= hit.at < until:
                hits.append(hit)
        if reached:
            break
    hits.sort(key=lambda hit: hit.at)
    return hits


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile: the smallest value that `share` of them do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True)
class Summary:
    """The requests of one window: how many, how they ended, how long they took (seconds)."""

    seconds: float
    requests: int
    per_second: float
    share_5xx: float  # percent of every answer
    share_gateway: float  # percent answered 502 or 504: nginx got no (timely) answer from the app
    p50: float | None
    p95: float | None
    p99: float | None
    upstream_p50: float | None
    upstream_p95: float | None
    upstream_p99: float | None
    classes: dict[str, int]  # answers by class: {"2xx": n, "4xx": n, ...}

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def summarize(hits: Sequence[Hit], seconds: float) -> Summary:
    count = len(hits)
    errors = sum(1 for hit in hits if hit.status >= 500)
    gateway = sum(1 for hit in hits if hit.status in (502, 504))
    times = [hit.seconds for hit in hits]
    upstream = [hit.upstream_seconds for hit in hits if hit.upstream_seconds is not None]
    return Summary(
        seconds,
        count,
        count / seconds if seconds > 0 else 0.0,
        100.0 * errors / count if count else 0.0,
        100.0 * gateway / count if count else 0.0,
        *(percentile(times, share) for share in (0.5, 0.95, 0.99)),
        *(percentile(upstream, share) for share in (0.5, 0.95, 0.99)),
        dict(sorted(Counter(f"{hit.status // 100}xx" for hit in hits).items())),
    )


def by_server(hits: Iterable[Hit]) -> dict[str, list[Hit]]:
    """The requests each app server answered last."""
    servers: dict[str, list[Hit]] = {}
    for hit in hits:
        if hit.server:
            servers.setdefault(hit.server, []).append(hit)
    return dict(sorted(servers.items()))


@dataclass
class Verdict:
    """What a watch saw: the previous release's share of 5xx answers, the new one's, and whether
    the new one is worse than the threshold allows."""

    before: Summary
    after: Summary
    threshold: float
    worse: bool
    chance: float  # percentage points the difference may owe to chance (STANDARD_ERRORS of it)

    def describe(self) -> str:
        before, after = self.before, self.after
        seen = (
            f"5xx {after.share_5xx:.1f}% of {after.requests} answer(s) in {after.seconds:.1f}s"
            f" (the previous release: {before.share_5xx:.1f}% of {before.requests})"
        )
        if self.worse:
            return f"{seen}: more than {self.threshold:g} points worse (beyond chance: {self.chance:.1f} points)"
        if after.requests < FEWEST:
            return f"{seen}: too few answers to judge (fewer than {FEWEST}), kept"
        if after.share_5xx - before.share_5xx > self.threshold:
            chance = f"within chance ({self.chance:.1f} points)"
            return f"{seen}: more than {self.threshold:g} points worse, but {chance}, kept"
        return f"{seen}: within {self.threshold:g} points, kept"

    def as_dict(self) -> dict[str, object]:
        return {
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "threshold": self.threshold,
            "chance": self.chance,
            "worse": self.worse,
        }


def by_chance(before: Summary, after: Summary) -> float:
    """STANDARD_ERRORS of the difference between two shares of 5xx, in percentage points."""
    variance = 0.0
    for summary in (before, after):
        if summary.requests:
            share = summary.share_5xx / 100
            variance += share * (1 - share) / summary.requests
    return 100 * STANDARD_ERRORS * math.sqrt(variance)


def watch(
    log: Path,
    baseline_since: float,
    start: float,
    seconds: float,
    threshold: float = THRESHOLD_POINTS,
    servers: Sequence[str] = (),
    poll: float = 0.5,
) -> Verdict:
    """Watch the app servers' answers logged from `start` for `seconds` (of `servers` only, when
    given) and compare their share of 5xx with that of the answers from `baseline_since` to `start`
    (every server's: the previous release served them all). Ends at once when the new answers are
    worse."""
    # Only what an app server answered: nginx's own answers (static files, the maintenance page)
    # say nothing of a release.
    baseline = [hit for hit in read_since(log, baseline_since, start) if hit.server]
    before = summarize(baseline, start - baseline_since)
    chosen = set(servers)
    while True:
        now = time.time()
        elapsed = min(now - start, seconds)
        hits = [hit for hit in read_since(log, start) if hit.server and (not chosen or hit.server in chosen)]
        after = summarize(hits, max(elapsed, 0.001))
        chance = by_chance(before, after)
        worse = after.requests >= FEWEST and after.share_5xx - before.share_5xx > threshold + chance
        if worse or now - start >= seconds:
            return Verdict(before, after, threshold, worse, chance)
        time.sleep(min(poll, max(0.0, start + seconds - now)))
