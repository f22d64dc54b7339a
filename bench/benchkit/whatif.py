"""Extra cases: the generated stack with one change, to see what each part of the configs costs.

They are not targets and the template stays as it is: each is the default project baked again
(with other answers) or copied with some edits, and run under its own deploy/run-local.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .procs import Project, bake, load_layout

SITE = "deploy/nginx/{slug}.conf"
PROXY = "deploy/nginx/snippets/proxy.conf"
GUNICORN = "gunicorn.conf.py"
# The site's access log line as generated, and the per-request, unbuffered one it replaced.
ACCESS_LOG = r"(    access_log \S+) (\S+_timed) buffer=64k flush=1s;"


@dataclass(frozen=True)
class WhatIf:
    id: str
    label: str
    short: str  # for the chart
    why: str
    answers: dict[str, str] = field(default_factory=dict)
    # Edits of generated files: (path in the project, with {slug}; a regular expression, matched
    # line by line and replaced at every match; what replaces it, where \\1 is the first group).
    edits: tuple[tuple[str, str, str], ...] = ()
    # Measured on the 100 KB static file through nginx (against the static case), instead of on
    # the dynamic page through nginx.
    static: bool = False
    # Also measured as gunicorn alone with the same change (a change on gunicorn's side).
    alone: bool = False
    # Left out of a --smoke run, which only checks the machinery.
    in_smoke: bool = False


CATALOGUE = [
    WhatIf(
        "previous-defaults",
        "what-if: the previous defaults (max_requests 1000, gunicorn access log on, nginx log unbuffered)",
        "previous defaults",
        "what the template generated before its per-request costs were measured: the reference for the "
        "'1.2 x today's defaults' target",
        edits=(
            (GUNICORN, r"max_requests = \d+", "max_requests = 1000"),
            (GUNICORN, r"max_requests_jitter = \d+", "max_requests_jitter = 100"),
            (GUNICORN, r"accesslog = .*", 'accesslog = "-"'),
            (SITE, ACCESS_LOG, r"\1;"),
        ),
        in_smoke=True,
    ),
    WhatIf(
        "nginx-log-unbuffered",
        "what-if: nginx access log written per request (no buffer=, flush=)",
        "nginx access log unbuffered",
        "without buffer= nginx makes one write(2) per request; with it, one per 64 KB or per second",
        edits=((SITE, ACCESS_LOG, r"\1 \2;"),),
    ),
    WhatIf(
        "nginx-log-off",
        "what-if: no nginx access log (access_log off)",
        "no nginx access log",
        "the price of the one access log left: formatting the line with its timings",
        edits=((SITE, ACCESS_LOG, "    access_log off;"),),
    ),
    WhatIf(
        "no-security-headers",
        "what-if: no security headers (the snippet's 5 add_header left out)",
        "no security headers",
        "the price of X-Content-Type-Options, X-Frame-Options, Referrer-Policy, CSP and Permissions-Policy "
        "on every answer (they stay)",
        edits=((SITE, r"    include snippets/\S+/security-headers.conf;", ""),),
    ),
    WhatIf(
        "no-header-clearing",
        'what-if: forged client headers passed on (the 11 proxy_set_header ... "" left out)',
        "no header clearing",
        "the price of removing X-Forwarded-Ssl, Forwarded, X-Original-URL and the other headers a client may "
        "forge (they stay)",
        edits=((PROXY, r'proxy_set_header \S+ "";', ""),),
    ),
    WhatIf(
        "no-added-proxy-headers",
        "what-if: no X-Real-IP, X-Forwarded-Port, X-Forwarded-Host",
        "no added proxy headers",
        "the price of the proxy headers added beyond Host, X-Forwarded-For and X-Forwarded-Proto",
        edits=((PROXY, r"proxy_set_header (X-Real-IP|X-Forwarded-Port|X-Forwarded-Host) .*;", ""),),
    ),
    WhatIf(
        "gzip-off",
        "what-if: gzip off (wrk sends no Accept-Encoding: the cost of checking only)",
        "gzip off",
        "gzip compresses nothing for a client that does not ask; the gzip case of the dynamic table shows "
        "the cost for one that does",
        edits=((SITE, r"    gzip on;", "    gzip off;"),),
    ),
    WhatIf(
        "proxy-buffering-off",
        "what-if: proxy_buffering off",
        "proxy_buffering off",
        "buffering lets a slow client hold nginx rather than a worker; for a small page it costs nothing",
        edits=((SITE, r"    proxy_buffering on;", "    proxy_buffering off;"),),
    ),
    WhatIf(
        "gunicorn-access-log",
        "what-if: gunicorn access log on too (GUNICORN_ACCESSLOG=-)",
        "gunicorn access log on",
        "gunicorn formats and writes a second line per request in Python; nginx's log has the same facts",
        edits=((GUNICORN, r"accesslog = .*", 'accesslog = "-"'),),
        alone=True,
        in_smoke=True,
    ),
    WhatIf(
        "forwarded-allow-all",
        'what-if: forwarded_allow_ips = "*" (no check of the peer\'s address)',
        "forwarded_allow_ips *",
        "gunicorn checks each request's peer against forwarded_allow_ips before it trusts X-Forwarded-*",
        edits=((GUNICORN, r"forwarded_allow_ips = .*", 'forwarded_allow_ips = "*"'),),
        alone=True,
    ),
    WhatIf(
        "max-requests-0",
        "what-if: max_requests = 0 (workers never recycled)",
        "no worker recycling",
        "each recycling forks a worker and imports the app again: the reference for the cost of max_requests",
        edits=((GUNICORN, r"max_requests = \d+", "max_requests = 0"),),
        alone=True,
    ),
    WhatIf(
        "max-requests-1000",
        "what-if: max_requests = 1000, jitter 100 (the previous setting)",
        "max_requests 1000",
        "at thousands of requests a second, a worker restarts several times a second",
        edits=(
            (GUNICORN, r"max_requests = \d+", "max_requests = 1000"),
            (GUNICORN, r"max_requests_jitter = \d+", "max_requests_jitter = 100"),
        ),
    ),
    WhatIf(
        "gthread",
        "what-if: gthread workers, nginx reuses upstream connections (worker_class=gthread)",
        "gthread workers, upstream keep-alive",
        "sync workers close every connection, so nginx opens a new one to gunicorn per request; "
        "gthread workers keep them open and the generated upstream reuses them (keepalive)",
        answers={"worker_class": "gthread"},
        alone=True,
    ),
]


def prepare(what_if: WhatIf, template: Path, default: Project, out: Path, number: int) -> Project | str:
    """The project for `what_if`, or why it cannot be made from the template as it is now."""
    if what_if.answers:
        path, _ = bake(template, out, {**default.answers, **what_if.answers})
    else:
        out.mkdir(parents=True)
        path = Path(shutil.copytree(default.path, out / default.path.name))
    for name, find, replace in what_if.edits:
        edited = path / name.format(slug=default.slug)
        text = edited.read_text() if edited.exists() else ""
        text, found = re.subn(f"^{find}$", replace, text, flags=re.MULTILINE)
        if not found:
            return f"{name.format(slug=default.slug)} has no line {find!r}"
        edited.write_text(text)
    return Project(f"what-if {what_if.id}", path, {**default.answers, **what_if.answers}, load_layout(path, number))
