"""What a run did (Done: the record its steps decide from) and what it tells (Report: one line per
step, the files it changed and the commands it ran; output only)."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field

# The past and present forms of what happens to a path, for "3 created" and "would create".
VERBS = {"created": "create", "updated": "update", "removed": "remove", "fixed": "fix"}


@dataclass
class Done:
    """What a run changed and which commands it ran (or recorded, or would run), in order."""

    changes: list[tuple[str, str]] = field(default_factory=list)  # (created/updated/removed/fixed, server path)
    commands: list[str] = field(default_factory=list)

    def mark(self) -> int:
        return len(self.changes)

    def since(self, mark: int) -> list[tuple[str, str]]:
        return self.changes[mark:]


class Report:
    def __init__(self, *, dry_run: bool, verbose: bool) -> None:
        self.dry_run = dry_run
        self.verbose = verbose
        self.step_name = "preflight"
        self.pending: list[str] = []  # action lines of the current step

    def action(self, verb: str, text: str) -> None:
        self.pending.append(f"  {'would ' if self.dry_run else ''}{verb} {text}")

    def changed(self, verb: str, path: str, detail: str = "") -> None:
        shown = f"would {VERBS[verb]}" if self.dry_run else verb
        self.pending.append(f"  {shown} {path}{' ' + detail if detail else ''}")

    def step(self, result: str) -> None:
        self.say(f"{self.step_name}: {result}")
        self.flush()

    def flush(self) -> None:
        if self.pending and (self.dry_run or self.verbose):
            self.say("\n".join(self.pending))
        self.pending.clear()

    def say(self, line: str) -> None:
        # A terminal that went away (ssh dropped: SIGHUP, then EIO) must not stop a rollback.
        with contextlib.suppress(OSError):
            print(line, flush=True)

    def summary(self, changes: list[tuple[str, str]], base: str | None = None) -> str:
        """'2 created, 1 updated (wsgi.py, ...)' for these changes, or 'unchanged'."""
        if not changes:
            return "unchanged"
        counts = Counter(verb for verb, _ in changes)
        if self.dry_run:
            text = ", ".join(f"{count} to {VERBS[verb]}" for verb, count in counts.items())
        else:
            text = ", ".join(f"{count} {verb}" for verb, count in counts.items())
        if base is not None and len(changes) <= 3:
            names = [path.removeprefix(base + "/") if path != base else path for _, path in changes]
            text += f" ({', '.join(names)})"
        return text
