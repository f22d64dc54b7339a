"""The service's env file, read by deploy/check, run-local and the installer as systemd reads it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

import pytest
from conftest import Baked

# (what the file holds, what systemd's EnvironmentFile= gives the service)
CASES = {
    "plain": ("A=1\nB=two words\n", {"A": "1", "B": "two words"}),
    "blanks-around": ("  A = 1  \n", {"A": "1"}),
    "comment": ("# A=1\nB=2\n", {"B": "2"}),
    "indented-comment": ("  # A=1\n", {}),
    "semicolon-comment": ("; A=1\n", {}),
    "hash-after-value": ("A=1 # not a comment\n", {"A": "1 # not a comment"}),
    "no-equals": ("JUST_A_WORD\nA=1\n", {"A": "1"}),
    "double-quotes": ('A="a b"\n', {"A": "a b"}),
    "single-quotes": ("A='a \"b\" $c'\n", {"A": 'a "b" $c'}),
    "double-quote-escapes": ('A="q\\"d\\$e\\n"\n', {"A": 'q"d$e\\n'}),
    "quotes-inside-value": ("A=it's\n", {"A": "it's"}),
    "after-closing-quote": ('A="a"b\n', {"A": "ab"}),
    "backslash-escape": ("A=a\\ b\\\\c\n", {"A": "a b\\c"}),
    "continued-line": ("A=one \\\ntwo\n", {"A": "one two"}),
    "empty-value": ("A=\n", {"A": ""}),
    "value-with-equals": ("DATABASE_URL=postgres://u:p@h/db?x=1\n", {"DATABASE_URL": "postgres://u:p@h/db?x=1"}),
    "invalid-name": ("1A=1\nA-B=2\nC=3\n", {"C": "3"}),
    "later-wins": ("A=1\nA=2\n", {"A": "2"}),
    "no-final-newline": ("A=1", {"A": "1"}),
    "crlf": ("A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
}


@pytest.fixture(scope="module")
def envfile(baked: Baked) -> ModuleType:
    path = baked.path / "deploy" / "deploytools" / "envfile.py"
    spec = importlib.util.spec_from_file_location("baked_envfile", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("text, expected", CASES.values(), ids=CASES.keys())
def test_env_file_is_read_as_systemd_reads_it(envfile: ModuleType, text: str, expected: dict[str, str]) -> None:
    assert envfile.parse_env(text) == expected


def test_commands_get_the_env_file_as_the_service_does_never_through_a_shell(baked: Baked, tmp_path) -> None:
    """The installer runs migrate and collectstatic as root with the env file's settings: a value
    with a backquote or `&` (a DATABASE_URL) reaches the command whole and runs nothing."""
    marker = tmp_path / "ran"
    env_file = tmp_path / "app.env"
    env_file.write_text(f"SECRET=a`touch {marker}`b\nDATABASE_URL=postgres://u:p@h/db?sslmode=require&x=1\n")
    reader = baked.path / "deploy" / "deploytools" / "envfile.py"
    shown = subprocess.run(
        [sys.executable, str(reader), str(env_file), sys.executable, "-c",
         "import os; print(os.environ['SECRET']); print(os.environ['DATABASE_URL'])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert shown.stdout.splitlines() == [f"a`touch {marker}`b", "postgres://u:p@h/db?sslmode=require&x=1"]
    assert not marker.exists()
