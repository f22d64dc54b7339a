"""Refuse the bake, before any file is written, if an answer breaks a rule in hooks/answers.py."""

import json
import os
import sys
import time
from pathlib import Path

# The answers arrive as data: a quote in an answer must never become Python code here.
ANSWERS = json.loads({{cookiecutter | tojson | tojson}})

# The template's own folder, absolute (`_repo_dir` is as the user typed it, e.g. "." and this
# hook runs from the new project's folder): local_extensions.py knows where it was loaded from.
TEMPLATE_DIR = Path({{template_dir | tojson}})
sys.path[:0] = [str(TEMPLATE_DIR), str(TEMPLATE_DIR / "hooks")]
from answers import problems  # noqa: E402


def parents_made_for(project_dir: Path, output_dir: Path) -> list[Path]:
    """Folders between the output folder and the project that hold nothing but the project.

    A slug with a slash makes cookiecutter create them along with the project folder; it removes
    only the project folder itself when this hook refuses.
    """
    made = []
    child = project_dir
    for parent in project_dir.parents:
        if parent == output_dir or output_dir not in parent.parents:
            break
        if [entry.name for entry in parent.iterdir()] != [child.name]:
            break
        made.append(parent)
        child = parent
    return made


def remove_after_cookiecutter(project_dir: Path, folders: list[Path]) -> None:
    """Remove `folders` once cookiecutter has removed the project folder (within 10 seconds)."""
    if not folders or os.fork():
        return
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    deadline = time.monotonic() + 10
    while project_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break
    os._exit(0)


def main() -> int:
    found = problems(ANSWERS)
    if not found:
        return 0
    print("cookiecutter-wsgi-deploy: these answers cannot be used, nothing was generated:", file=sys.stderr)
    for line in found:
        print(f"  - {line}", file=sys.stderr)
    print(
        "Run again with corrected answers, e.g. `cookiecutter --replay <template>` and edit,"
        " or `cookiecutter --no-input <template> key=value ...`.",
        file=sys.stderr,
    )
    project_dir = Path.cwd().resolve()
    remove_after_cookiecutter(project_dir, parents_made_for(project_dir, Path(ANSWERS["_output_dir"]).resolve()))
    return 1


if __name__ == "__main__":
    sys.exit(main())
