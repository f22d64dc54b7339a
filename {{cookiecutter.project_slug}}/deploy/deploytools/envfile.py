"""Environment files, read the way systemd's EnvironmentFile= reads them.

The service gets its settings from systemd, so deploy/check, run-local and the installer must see
the same values: systemd's rules, not a shell's. In short: a line whose first non-blank character
is `#` or `;` is a comment (also when it holds an `=`); blanks around the name and the value go;
'single quotes' keep everything literally; in "double quotes" a backslash escapes only
`"`, backslash, backquote and `$`; outside quotes a backslash escapes the next character and a
backslash at the end of a line joins the next one; a `#` after a value is part of the value; a
line without `=` and a name that is not a valid variable name are ignored.
"""

from __future__ import annotations

import os
import re
import sys
from enum import Enum, auto
from pathlib import Path

# What systemd accepts as a variable name (env_name_is_valid): no `=`, no control characters.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The characters a backslash escapes inside double quotes (SHELL_NEED_ESCAPE).
DOUBLE_QUOTE_ESCAPES = '"\\`$'
BLANKS = " \t"
NEWLINES = "\n\r"


class State(Enum):
    BEFORE_NAME = auto()
    NAME = auto()
    BEFORE_VALUE = auto()
    VALUE = auto()
    VALUE_ESCAPE = auto()
    SINGLE_QUOTED = auto()
    DOUBLE_QUOTED = auto()
    DOUBLE_QUOTED_ESCAPE = auto()
    COMMENT = auto()
    COMMENT_ESCAPE = auto()


def parse_env(text: str) -> dict[str, str]:
    """NAME -> value for every assignment in `text`, as systemd would pass it to the service."""
    found: dict[str, str] = {}
    state = State.BEFORE_NAME
    name: list[str] = []
    value: list[str] = []
    # Trailing blanks of the name and of an unquoted value are not part of them.
    name_blanks = value_blanks = 0

    def assign() -> None:
        key = "".join(name[: len(name) - name_blanks])
        if NAME.fullmatch(key):
            found[key] = "".join(value[: len(value) - value_blanks])

    for char in text:
        if state is State.BEFORE_NAME:
            if char in "#;":
                state = State.COMMENT
            elif char not in BLANKS + NEWLINES:
                state, name, value, name_blanks, value_blanks = State.NAME, [char], [], 0, 0
        elif state is State.NAME:
            if char in NEWLINES:
                state = State.BEFORE_NAME  # a line without "=": ignored
            elif char == "=":
                state = State.BEFORE_VALUE
            else:
                name_blanks = name_blanks + 1 if char in BLANKS else 0
                name.append(char)
        elif state is State.BEFORE_VALUE or state is State.VALUE:
            if char in NEWLINES:
                assign()
                state = State.BEFORE_NAME
            elif state is State.BEFORE_VALUE and char == "'":
                state = State.SINGLE_QUOTED
            elif state is State.BEFORE_VALUE and char == '"':
                state = State.DOUBLE_QUOTED
            elif char == "\\":
                state, value_blanks = State.VALUE_ESCAPE, 0
            elif state is State.BEFORE_VALUE and char in BLANKS:
                pass
            else:
                value_blanks = value_blanks + 1 if char in BLANKS else 0
                value.append(char)
                state = State.VALUE
        elif state is State.VALUE_ESCAPE:
            state = State.VALUE
            if char not in NEWLINES:  # a backslash at the end of a line joins the next one
                value.append(char)
        elif state is State.SINGLE_QUOTED:
            if char == "'":
                state = State.BEFORE_VALUE
            else:
                value.append(char)
        elif state is State.DOUBLE_QUOTED:
            if char == '"':
                state = State.BEFORE_VALUE
            elif char == "\\":
                state = State.DOUBLE_QUOTED_ESCAPE
            else:
                value.append(char)
        elif state is State.DOUBLE_QUOTED_ESCAPE:
            state = State.DOUBLE_QUOTED
            if char in DOUBLE_QUOTE_ESCAPES:
                value.append(char)
            elif char != "\n":
                value.extend(("\\", char))
        elif state is State.COMMENT:
            if char == "\\":
                state = State.COMMENT_ESCAPE
            elif char in NEWLINES:
                state = State.BEFORE_NAME
        else:
            state = State.COMMENT
    if state in (State.BEFORE_VALUE, State.VALUE, State.VALUE_ESCAPE):
        assign()
    return found


def read_env_file(path: Path) -> dict[str, str]:
    """The assignments of the env file at `path`; none if it does not exist."""
    if not path.exists():
        return {}
    return parse_env(path.read_text())


def main(argv: list[str]) -> int:
    """envfile.py ENV_FILE COMMAND [ARG ...]: run COMMAND with the env file's settings added to the
    environment, read by systemd's rules. No shell reads the file: a backquote or `&` in a value is
    a character of the value, whoever runs this."""
    if len(argv) < 2 or argv[0] in {"-h", "--help"}:
        print("usage: envfile.py ENV_FILE COMMAND [ARG ...]", file=sys.stderr)
        return 2
    settings = read_env_file(Path(argv[0]))
    os.execvpe(argv[1], argv[1:], {**os.environ, **settings})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
