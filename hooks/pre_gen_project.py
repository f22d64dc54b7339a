"""Refuse the bake, before any file is written, if an answer breaks a rule in hooks/answers.py."""

import json
import os
import shlex
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


def replay_dir() -> str:
    """Where cookiecutter writes replay files: `replay_dir` of the user's config, as cookiecutter finds it.

    A config given with --config-file is out of sight here; the file found below is then checked
    against these answers and not named when it does not hold them.
    """
    config = Path(os.environ.get("COOKIECUTTER_CONFIG") or "~/.cookiecutterrc").expanduser()
    folder = "~/.cookiecutter_replay/"
    if config.is_file():
        for line in config.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "replay_dir" and value.strip():
                folder = value.strip().strip("'\"")
    return os.path.expanduser(os.path.expandvars(folder))


def replay_file() -> Path | None:
    """The replay file cookiecutter wrote for this very bake (it writes it before this hook runs), or None."""
    path = Path(replay_dir()) / f"{TEMPLATE_DIR.name}.json"
    try:
        saved = json.loads(path.read_text())["cookiecutter"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    answered = {key: value for key, value in ANSWERS.items() if not key.startswith("_")}
    same = {key: saved.get(key) for key in answered} == answered
    return path if same and saved.get("_output_dir") == ANSWERS["_output_dir"] else None


def how_to_retry() -> str:
    template = shlex.quote(str(ANSWERS["_template"]))
    saved = replay_file()
    if saved is None:
        return (
            f"cookiecutter saved these answers as {TEMPLATE_DIR.name}.json in its replay folder (replay_dir in"
            " your cookiecutter config, ~/.cookiecutter_replay/ by default): correct them there, then run"
            f" `cookiecutter --replay-file <that file> {template}`;"
            f" or `cookiecutter --no-input {template} key=value ...`."
        )
    return (
        f"These answers are saved in {saved}: correct them there, then run\n"
        f"  cookiecutter --replay-file {shlex.quote(str(saved))} {template}"
    )


def main() -> int:
    found = problems(ANSWERS)
    if not found:
        return 0
    print("cookiecutter-wsgi-deploy: these answers cannot be used, nothing was generated:", file=sys.stderr)
    for line in found:
        print(f"  - {line}", file=sys.stderr)
    print(how_to_retry(), file=sys.stderr)
    project_dir = Path.cwd().resolve()
    remove_after_cookiecutter(project_dir, parents_made_for(project_dir, Path(ANSWERS["_output_dir"]).resolve()))
    return 1


if __name__ == "__main__":
    sys.exit(main())
