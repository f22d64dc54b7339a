"""Keep cookiecutter's own traceback out of a bake that a hook of this template refused.

The hooks print why they stop (every invalid answer, or the check that failed) and exit with a
status. cookiecutter then logs "Stopping generation because ... hook script didn't exit
successfully" with the traceback of its own call stack, which says nothing about the answers and
buries the hook's list under it. This extension, loaded through `_extensions` in
cookiecutter.json, drops that one log record: the hook's own output stays, and so does anything
else (a hook that cannot start, a template error). cookiecutter's command line still ends with its
one line "Hook script failed (exit status: 1)", which no template can change.
"""

from __future__ import annotations

import logging
import re

from cookiecutter.exceptions import FailedHookException
from jinja2 import Environment
from jinja2.ext import Extension

# How cookiecutter words a hook that ran and exited with an error status (cookiecutter/hooks.py).
EXITED = re.compile(r"Hook script failed \(exit status: -?\d+\)")


class HookExitedOnPurpose(logging.Filter):
    """Passes every record but cookiecutter's traceback for a hook that ran and exited non-zero."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, FailedHookException) and EXITED.fullmatch(str(error)))


class HookReports(Extension):
    """Installs the filter on cookiecutter's hooks logger, once per process."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        logger = logging.getLogger("cookiecutter.hooks")
        if not any(isinstance(existing, HookExitedOnPurpose) for existing in logger.filters):
            logger.addFilter(HookExitedOnPurpose())
