"""Finish the bake: drop what the answers do not use, record the answers, run deploy/check."""

import json
import subprocess
import sys
from pathlib import Path

ANSWERS = json.loads({{cookiecutter | tojson | tojson}})
# Where the template happened to be on this machine: no use to anyone re-baking elsewhere.
MACHINE_KEYS = ("_output_dir", "_repo_dir", "_checkout")
REPLAY_FILE = Path(".cookiecutter-answers.json")


def unused_files() -> list[Path]:
    unused = []
    if ANSWERS["bind"] != "unix":
        unused.append(Path("deploy/systemd") / f"{ANSWERS['__service']}.socket")
    return unused


def record_answers() -> None:
    """`cookiecutter --replay-file .cookiecutter-answers.json <template>` bakes this project again."""
    kept = {key: value for key, value in ANSWERS.items() if key not in MACHINE_KEYS}
    REPLAY_FILE.write_text(json.dumps({"cookiecutter": kept}, indent=2, sort_keys=True) + "\n")


def main() -> int:
    for path in unused_files():
        path.unlink()
    record_answers()
    print(f"Checking the generated configs of {ANSWERS['project_slug']} (deploy/check):", flush=True)
    if subprocess.run([sys.executable, "deploy/check"], check=False).returncode:
        print("deploy/check failed: the project was not kept (see above).", file=sys.stderr)
        return 1
    slug = ANSWERS["project_slug"]
    print(
        f"\nNext steps:\n"
        f"  cd {slug}\n"
        f"  deploy/setup-venv        # creates {slug}_venv from requirements.txt\n"
        f"  deploy/run-local         # the real nginx + gunicorn on 127.0.0.1\n"
        f"  sudo deploy/install      # on the server (see README.md)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
