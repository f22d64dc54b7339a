"""deploy/install: put this project on its server and keep it there, one checked step at a time.

The parts, each with one concern:

- target.py: where effects go (this machine, a staged tree under --root, or a dry run of either);
- files.py: the transaction over files (compare, back up, write atomically, restore);
- report.py: one line per step, and the files and commands of the run;
- platform.py, preflight.py: what the platform has and what the run needs before any change;
- steps.py, activation.py: the install's steps; uninstall.py: --uninstall [--purge].
"""

from __future__ import annotations

import os

from .common import STAGED_RECORD, InstallError, Options
from .report import Report
from .steps import Install
from .target import make_target
from .uninstall import Uninstall


def install(options: Options) -> int:
    os.umask(0o022)
    report = Report(dry_run=options.dry_run, verbose=options.verbose)
    return Install(make_target(options, report), report).run()


def uninstall(options: Options) -> int:
    os.umask(0o022)
    report = Report(dry_run=options.dry_run, verbose=options.verbose)
    return Uninstall(make_target(options, report), report).run()


__all__ = ["STAGED_RECORD", "InstallError", "Options", "install", "uninstall"]
