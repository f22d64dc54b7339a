"""Finish the bake: drop what the answers do not use, record the answers, run deploy/check."""

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

ANSWERS = json.loads({{cookiecutter | tojson | tojson}})
# Where the template happened to be on this machine: no use to anyone re-baking elsewhere.
MACHINE_KEYS = ("_output_dir", "_repo_dir", "_checkout")
REPLAY_FILE = Path(".cookiecutter-answers.json")


# Files only some answers use: path -> the frameworks that keep it.
FRAMEWORK_FILES = {
    "wsgi.py": {"wsgi", "flask", "django"},
    "asgi.py": {"asgi"},
    "manage.py": {"django"},
    "static": {"existing"},
    "{slug}": {"wsgi", "flask", "django", "asgi"},
    "tests": {"wsgi", "flask", "django", "asgi"},
    "{slug}/app.py": {"wsgi", "asgi"},
    "{slug}/views.py": {"flask", "django"},
    "{slug}/templates": {"flask", "django"},
    "{slug}/settings.py": {"django"},
    "{slug}/urls.py": {"django"},
}


def unused_files() -> list[Path]:
    slug = ANSWERS["project_slug"]
    unused = [
        Path(name.format(slug=slug)) for name, keep in FRAMEWORK_FILES.items() if ANSWERS["framework"] not in keep
    ]
    if ANSWERS["bind"] != "unix":
        unused.append(Path("deploy/systemd") / f"{ANSWERS['__unit_stem']}.socket")
    if ANSWERS["tls_mode"] != "letsencrypt":
        unused.append(Path("deploy/nginx") / f"{ANSWERS['__service']}.acme.conf")
        unused.append(Path("deploy/certbot-deploy-hook"))
    if ANSWERS["tls_mode"] == "none":
        unused.append(Path("deploy/nginx/snippets/tls.conf"))
    return unused


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def write_env_file() -> None:
    """Settings made once per bake (Django's secret key): mode 0600, ignored by git."""
    if ANSWERS["framework"] != "django":
        return
    path = Path(f"{ANSWERS['project_slug']}.env")
    if path.exists():
        # Baked again over the project (cookiecutter -f): the key already in use stays.
        return
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as env:
        env.write(
            "# Made at bake time; deploy/install copies it once to "
            f"{ANSWERS['__env_file']} (mode 0600). Never commit it.\n"
            f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}\n"
        )


def record_answers() -> None:
    """`cookiecutter --replay-file .cookiecutter-answers.json <template>` bakes this project again."""
    kept = {key: value for key, value in ANSWERS.items() if key not in MACHINE_KEYS}
    REPLAY_FILE.write_text(json.dumps({"cookiecutter": kept}, indent=2, sort_keys=True) + "\n")


def main() -> int:
    for path in unused_files():
        remove(path)
    write_env_file()
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
        f"  sudo deploy/install      # on the server (see deploy/INSTALL.md)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
