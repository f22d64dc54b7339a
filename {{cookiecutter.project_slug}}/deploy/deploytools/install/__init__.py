"""deploy/install: put this project on its server and keep it there, one checked step at a time.

The parts, each with one concern:

- target.py: where effects go (this machine, a staged tree under --root, or a dry run of either);
- files.py: the transaction over files (compare, back up, write atomically, restore, no links);
- ledger.py: the manifest of what the installer made, and the journal of a run in progress;
- system.py, preflight.py: what the system has and what the run needs before any change;
- report.py: one line per step, and the files and commands of the run;
- releases.py: the releases on the server, their venvs, the current link and the log;
- steps.py, activation.py: the install's steps; rollback.py: --rollback and --releases;
  uninstall.py: --uninstall [--purge].
"""

from __future__ import annotations

import os
import signal
from types import FrameType

from .. import layout
from .common import STAGED_RECORD, InstallError
from .options import Options
from .releases import LOG, Log, running_release
from .report import Report
from .rollback import Rollback, list_releases
from .run import explain
from .steps import Install
from .target import make_target
from .uninstall import Uninstall

# SIGHUP: the ssh session dropped; SIGTERM: someone stops the run; SIGINT: Ctrl-C.
STOPPING = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


class Interrupted(InstallError):
    """A signal stopped the run: it is rolled back at once."""


def interrupt(signum: int, frame: FrameType | None) -> None:
    # Once: the rollback that follows runs to its end, whatever else arrives.
    for number in STOPPING:
        signal.signal(number, signal.SIG_IGN)
    raise Interrupted(f"interrupted by {signal.Signals(signum).name}")


def prepare(options: Options) -> Report:
    os.umask(0o022)
    for number in STOPPING:
        signal.signal(number, interrupt)
    return Report(dry_run=options.dry_run, verbose=options.verbose)


def install(options: Options) -> int:
    report = prepare(options)
    run = Rollback if options.rollback is not None else Install
    return run(make_target(options, report), report).run()


def releases(options: Options) -> int:
    """--releases: what the server keeps, read from its log; changes nothing."""
    report = Report(dry_run=True, verbose=False)
    run = Install(make_target(options, report), report)
    try:
        run.log = Log.load(run.files.disk(LOG))
        running = running_release(run.files.disk(layout.APP_DIR))
    except (InstallError, OSError) as error:
        report.say(f"releases: {explain(error, run.target)}")
        return 1
    report.say(list_releases(run.log, running))
    return 0


def uninstall(options: Options) -> int:
    report = prepare(options)
    return Uninstall(make_target(options, report), report).run()


__all__ = ["STAGED_RECORD", "InstallError", "Options", "install", "releases", "uninstall"]
