"""Extra cases: the generated stack with one change, to see what a change would win or cost.

They are not targets and the template stays as it is: each is the default project baked again
(with other answers) or copied with one edit, and run under its own deploy/run-local.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .procs import Project, bake, load_layout


@dataclass(frozen=True)
class WhatIf:
    id: str
    label: str
    short: str  # for the chart
    why: str
    answers: dict[str, str] = field(default_factory=dict)
    # One edit of a generated file: (path in the project, with {slug}; a line to find, as a regular
    # expression; what replaces it, where \\1 is the first group).
    edit: tuple[str, str, str] | None = None
    # Measured on the 100 KB static file through nginx (against the static case), instead of on
    # the dynamic page through nginx and as gunicorn alone.
    static: bool = False


CATALOGUE = [
    WhatIf(
        "gthread",
        "what-if: gthread workers, nginx reuses upstream connections (worker_class=gthread)",
        "gthread workers, upstream keep-alive",
        "sync workers close every connection, so nginx opens a new one to gunicorn per request; "
        "gthread workers keep them open and the generated upstream reuses them (keepalive)",
        answers={"worker_class": "gthread"},
    ),
    WhatIf(
        "no-worker-recycling",
        "what-if: gunicorn max_requests = 0 (workers never recycled)",
        "no worker recycling (max_requests = 0)",
        "max_requests = 1000 makes each worker exit and a new one fork and import the app every "
        "1000 requests: at thousands of requests a second, several times a second",
        edit=("gunicorn.conf.py", r"max_requests = \d+", "max_requests = 0"),
    ),
    WhatIf(
        "no-gunicorn-access-log",
        "what-if: gunicorn access log off (accesslog = None)",
        "no gunicorn access log",
        "nginx's access log already has every request; gunicorn formats and writes a second line per request in Python",
        edit=("gunicorn.conf.py", r"accesslog = .*", "accesslog = None"),
    ),
]


def prepare(what_if: WhatIf, template: Path, default: Project, out: Path, number: int) -> Project | str:
    """The project for `what_if`, or why it cannot be made from the template as it is now."""
    if what_if.answers:
        path, _ = bake(template, out, {**default.answers, **what_if.answers})
    else:
        out.mkdir(parents=True)
        path = Path(shutil.copytree(default.path, out / default.path.name))
    if what_if.edit is not None:
        name, find, replace = what_if.edit
        edited = path / name.format(slug=default.slug)
        text = edited.read_text() if edited.exists() else ""
        text, found = re.subn(f"^{find}$", replace, text, count=1, flags=re.MULTILINE)
        if not found:
            return f"{name.format(slug=default.slug)} has no line {find!r}"
        edited.write_text(text)
    return Project(f"what-if {what_if.id}", path, {**default.answers, **what_if.answers}, load_layout(path, number))
