"""Tools shared by the scripts in deploy/ (standard library only).

Importing the package makes sure it runs on Python 3.11 or newer. RHEL 9's python3 is 3.9: there
the scripts start again under python3.11 (or newer) when it is installed, or say what to install.
This file itself keeps to syntax old interpreters can read.
"""

import os
import shutil
import sys

MINIMUM_PYTHON = (3, 11)


def _ensure_python() -> None:
    if sys.version_info >= MINIMUM_PYTHON:
        return
    for name in ("python3.13", "python3.12", "python3.11"):
        found = shutil.which(name)
        if found:
            os.execv(found, [found, *sys.argv])
    sys.exit(f"{sys.argv[0]} needs Python 3.11 or newer: install python3.11 (RHEL 9: dnf install python3.11)")


_ensure_python()
