"""The questions as a user sees them: an interactive bake, answered on standard input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import TEMPLATE_DIR

CHOICE_LINE = re.compile(r"^\s+(\d+) - (.*)$", re.MULTILINE)


def interactive_bake(tmp_path: Path, answers: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "cookiecutter.yaml"
    config.write_text(f"cookiecutters_dir: {tmp_path / 'templates'}\nreplay_dir: {tmp_path / 'replay'}\n")
    command = [str(Path(sys.executable).with_name("cookiecutter")), "--config-file", str(config), str(TEMPLATE_DIR)]
    # Wide enough that no question is wrapped onto a second line.
    env = {**os.environ, "COLUMNS": "250"}
    return subprocess.run(
        command, cwd=tmp_path, input=answers, capture_output=True, text=True, check=False, timeout=120, env=env
    )


def test_every_question_reads_as_plain_text(tmp_path: Path) -> None:
    """Pressing Enter at every prompt bakes the defaults; no question shows template syntax."""
    questions = len(json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())["__prompts__"])
    result = interactive_bake(tmp_path, "\n" * (questions + 5))
    assert result.returncode == 0, result.stdout + result.stderr
    asked = re.findall(rf"\[\d+/{questions}\] ", result.stdout)
    assert len(asked) == questions, result.stdout
    assert "{{" not in result.stdout and "{%" not in result.stdout
    assert "[2/" in result.stdout and "Python package and service name" in result.stdout
    assert (tmp_path / "my_app" / "deploy" / "check").is_file()


def test_every_choice_label_starts_with_the_value_to_type(tmp_path: Path) -> None:
    """`2 - flask: a Flask app` tells what `--no-input framework=flask` takes."""
    context = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())
    result = interactive_bake(tmp_path, "\n" * 40)
    assert result.returncode == 0, result.stdout + result.stderr
    labels = [label for _, label in CHOICE_LINE.findall(result.stdout)]
    choices = [value for key, value in context.items() if isinstance(value, list) and not key.startswith("_")]
    values = [value for options in choices for value in options]
    assert len(labels) == len(values), result.stdout
    for value, label in zip(values, labels, strict=True):
        assert label.startswith(f"{value}:"), label


def test_choosing_by_number_bakes_that_value(tmp_path: Path) -> None:
    """framework is the 6th question; its 2nd choice is flask."""
    result = interactive_bake(tmp_path, "\n" * 5 + "2\n" + "\n" * 30)
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = json.loads((tmp_path / "my_app" / ".cookiecutter-answers.json").read_text())["cookiecutter"]
    assert recorded["framework"] == "flask"
