"""Finish the bake: drop what the answers do not use, record the answers, run deploy/check."""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

ANSWERS = json.loads({{cookiecutter | tojson | tojson}})
TEMPLATE_DIR = Path({{template_dir | tojson}})
sys.path.insert(0, str(TEMPLATE_DIR))
from local_extensions import derive  # noqa: E402

DERIVED = derive(ANSWERS)
REPLAY_FILE = Path(".cookiecutter-answers.json")
CRUFT_FILE = Path(".cruft.json")
# cookiecutter's short names for git hosts, as `cookiecutter gh:org/repo` expands them.
ABBREVIATIONS = {
    "gh": "https://github.com/{0}.git",
    "gl": "https://gitlab.com/{0}.git",
    "bb": "https://bitbucket.org/{0}",
}


# The author of the first commit where git has no identity configured: the template that made it,
# at an address that cannot exist (RFC 2606's .invalid).
TEMPLATE_AUTHOR = ("cookiecutter-wsgi-deploy", "cookiecutter-wsgi-deploy@example.invalid")


# Files only some answers use: path -> the frameworks that keep it.
FRAMEWORK_FILES = {
    "wsgi.py": {"wsgi", "flask", "django"},
    "asgi.py": {"asgi"},
    "manage.py": {"django"},
    "deploy/manage": {"django"},
    "deploy/deploytools/manage.py": {"django"},
    "static": {"existing"},
    "{slug}": {"wsgi", "flask", "django", "asgi"},
    "tests": {"wsgi", "flask", "django", "asgi"},
    "{slug}/app.py": {"wsgi", "asgi"},
    "{slug}/views.py": {"flask", "django"},
    "{slug}/templates": {"flask", "django"},
    "{slug}/templates/403_csrf.html": {"django"},
    "{slug}/settings.py": {"django"},
    "{slug}/urls.py": {"django"},
}
# The user's own code and secrets: a template update never touches them.
USER_OWNED = ["{slug}", "tests", "wsgi.py", "asgi.py", "manage.py", "static", "{slug}.env"]


def unused_files() -> list[Path]:
    slug = ANSWERS["project_slug"]
    unused = [
        Path(name.format(slug=slug)) for name, keep in FRAMEWORK_FILES.items() if ANSWERS["framework"] not in keep
    ]
    if not DERIVED.socket_units:
        unused.append(Path("deploy/systemd") / f"{DERIVED.unit_stem}.socket")
    if ANSWERS["tls_mode"] != "letsencrypt":
        unused.append(Path("deploy/nginx") / f"{DERIVED.service}.acme.conf")
        unused.append(Path("deploy/certbot-deploy-hook"))
    if ANSWERS["tls_mode"] == "none":
        unused.append(Path("deploy/nginx/snippets/tls.conf"))
    if DERIVED.backup_timer is None:
        unused += [Path("deploy/systemd") / f"{DERIVED.service}-backup.{kind}" for kind in ("service", "timer")]
    if DERIVED.database is None:
        unused += [Path("deploy/db-host")]
        unused += [Path("deploy/deploytools") / name for name in ("dbhost.py", "pgsettings.py")]
    if DERIVED.metrics is None:
        unused.append(Path("deploy/mtail"))
        unused.append(Path("deploy/nginx/snippets/release.conf"))
        unused += [Path("deploy/systemd") / f"{DERIVED.service}-{name}.service" for name in ("nginx-exporter", "mtail")]
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
            f"# Made at bake time; deploy/install copies it once to {DERIVED.env_file} (mode 0600). Never commit it.\n"
            f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}\n"
        )
        if DERIVED.database is not None:
            env.write(
                "# database=postgresql: deploy/install adds PGHOST, PGDATABASE and PGUSER on the server (its own\n"
                "# PostgreSQL, peer authentication). Set them here to run locally against a PostgreSQL;\n"
                "# without PGDATABASE, local runs use SQLite in .state/.\n"
            )
        if ANSWERS.get("backup") == "restic":
            slug = ANSWERS["project_slug"]
            env.write(
                "# The restic repository of the snapshots (sftp:, s3:, rest:...) and the file with its password.\n"
                f"# RESTIC_REPOSITORY=sftp:backup@backup.example.com:/srv/restic/{slug}\n"
                f"# RESTIC_PASSWORD_FILE=/etc/{slug}/restic.password\n"
            )


def user_answers() -> dict[str, object]:
    """What the user answered: every prompt's value, nothing derived, nothing about this machine."""
    return {key: value for key, value in ANSWERS.items() if not key.startswith("_")}


def record_answers() -> None:
    """`cookiecutter --replay-file .cookiecutter-answers.json <template>` bakes this project again."""
    REPLAY_FILE.write_text(json.dumps({"cookiecutter": user_answers()}, indent=2, sort_keys=True) + "\n")


def template_source() -> str | None:
    """The template as git can clone it again, or None (a zip or a folder outside git)."""
    given = str(ANSWERS.get("_template", ""))
    prefix, _, rest = given.partition(":")
    if prefix in ABBREVIATIONS and rest and not rest.startswith("//"):
        return ABBREVIATIONS[prefix].format(rest)
    if re.match(r"(git\+)?(https?|ssh|file|git)://|[\w.-]+@[\w.-]+:", given):
        return given.removeprefix("git+")
    inside = subprocess.run(
        ["git", "-C", str(TEMPLATE_DIR), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
    )
    return str(TEMPLATE_DIR) if inside.returncode == 0 else None


def record_template() -> None:
    """.cruft.json: the template, its commit and the answers, for `cruft check` and `cruft update`."""
    if "_commit" in ANSWERS:
        return  # cruft itself is rendering (an update): it writes this file
    source = template_source()
    commit = subprocess.run(
        ["git", "-C", str(TEMPLATE_DIR), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    if source is None or commit.returncode:
        print(f"updates: {ANSWERS.get('_template')} is not a git repository; no {CRUFT_FILE} written")
        return
    slug = ANSWERS["project_slug"]
    record = {
        "template": source,
        "commit": commit.stdout.strip(),
        "checkout": ANSWERS.get("_checkout"),
        "context": {"cookiecutter": {**user_answers(), "_template": source}},
        "directory": None,
        "skip": sorted({name.format(slug=slug) for name in USER_OWNED} | {str(CRUFT_FILE)}),
    }
    CRUFT_FILE.write_text(json.dumps(record, indent=2) + "\n")


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def make_repository() -> None:
    """`git init` and a first commit of the project, when the answer says so and git is there.

    Never inside another repository (a folder of a monorepo, or a project baked again over itself
    with -f): what is committed there is the user's to decide. .gitignore keeps the venv, secrets,
    wheels and local state out of the commit.
    """
    if not ANSWERS.get("git_init", True) or "_commit" in ANSWERS:
        return  # no, or cruft is rendering an update into a scratch folder
    if shutil.which("git") is None:
        print("git: not installed, so the project is no repository yet (git init; git add -A; git commit)")
        return
    inside = git("rev-parse", "--show-toplevel")
    if inside.returncode == 0:
        print(f"git: the project lies in the repository {inside.stdout.strip()}; nothing committed")
        return
    identity = []
    if not (git("config", "user.name").stdout.strip() and git("config", "user.email").stdout.strip()):
        identity = ["-c", f"user.name={TEMPLATE_AUTHOR[0]}", "-c", f"user.email={TEMPLATE_AUTHOR[1]}"]
    message = f"{ANSWERS['project_name']}, as cookiecutter-wsgi-deploy made it"
    for step in (["init", "-q"], ["add", "--all"], [*identity, "commit", "-q", "-m", message]):
        done = git(*step)
        if done.returncode:
            print(f"git: `git {' '.join(step)}` failed, the commit is yours to make: {done.stderr.strip()}")
            return
    author = f" (author {TEMPLATE_AUTHOR[0]}: git has no user.name/user.email here)" if identity else ""
    print(f"git: a repository with a first commit of every file{author}")


def main() -> int:
    for path in unused_files():
        remove(path)
    write_env_file()
    record_answers()
    record_template()
    print(f"Checking the generated configs of {ANSWERS['project_slug']} (deploy/check):", flush=True)
    if subprocess.run([sys.executable, "deploy/check"], check=False).returncode:
        print("deploy/check failed: the project was not kept (see above).", file=sys.stderr)
        return 1
    make_repository()
    slug = ANSWERS["project_slug"]
    admin = "  deploy/manage createsuperuser   # in another terminal; then log in at /admin/\n"
    print(
        f"\nNext steps:\n"
        f"  cd {slug}\n"
        f"  deploy/setup-venv        # creates {slug}_venv from requirements.txt\n"
        f"  deploy/run-local         # the real nginx + gunicorn on 127.0.0.1\n"
        f"{admin if ANSWERS['framework'] == 'django' else ''}"
        f"  sudo deploy/install      # on the server (see deploy/INSTALL.md)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
