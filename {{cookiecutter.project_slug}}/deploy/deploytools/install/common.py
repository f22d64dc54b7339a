"""What every part of deploy/install shares: its error, its options, the derived paths and small helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import layout

BACKUPS_DIR = f"{layout.INSTALL_DIR}/backups"
ENV_DIR = str(PurePosixPath(layout.ENV_FILE).parent)
VENV_PYTHON = f"{layout.VENV_DIR}/bin/python"
# Where an install made before releases kept the app and its venv: the first deploy with releases
# moves the service off them, then removes them.
LEGACY_APP_DIR = f"{layout.INSTALL_DIR}/app"
LEGACY_VENV_DIR = f"{layout.INSTALL_DIR}/{layout.SLUG}_venv"
# deploy/install's own records on the server: manifest, journal, lock, and (--root) the commands
# the target still has to run.
INSTALL_STATE_DIR = layout.INSTALL_STATE_DIR
STAGED_RECORD = f"{INSTALL_STATE_DIR}/commands.log"
# Every unit file of the app (services, sockets, and timers or others if it gains some). The
# exporters' units (metrics on) are apart: they run where nginx runs, on a load balancer too.
UNIT_FILES = sorted(
    path.name for path in layout.SYSTEMD_DIR.iterdir() if path.is_file() and path.name not in layout.METRICS_UNITS
)
NGINX_SERVICE = "nginx.service"
# certbot runs every hook in this folder after a renewal; ours reloads nginx.
CERTBOT_HOOK_SOURCE = layout.DEPLOY_DIR / "certbot-deploy-hook"
CERTBOT_HOOK = f"/etc/letsencrypt/renewal-hooks/deploy/{layout.NGINX_SITE.stem}-nginx"
NOLOGIN = "/usr/sbin/nologin"
KEEP_BACKUPS = 10
# What stays in the project: its tests and virtualenvs (any top-level folder with a pyvenv.cfg
# too) and, at any depth, env files (secrets: the project's one is installed once as ENV_FILE
# instead), hidden files (.git, run-local's state) and Python caches.
LEFT_BEHIND = frozenset({"tests", "venv", layout.LOCAL_VENV.name})
CACHES = frozenset({"__pycache__"})

# A command run as the service's user and group, as its unit runs it (the installer runs as root).
AS_SERVICE = ["setpriv", f"--reuid={layout.SERVICE_USER}", f"--regid={layout.SERVICE_USER}", "--init-groups"]

# Who owns what: root writes everything; the service's group may read its code, nothing more.
Owner = tuple[str, str]
ROOT: Owner = ("root", "root")
SERVICE_READS: Owner = ("root", layout.SERVICE_USER)

# backup=restic: where deploy/backup sends each snapshot (see deploy/INSTALL.md, Backups).
RESTIC_SETTINGS = f"""\
# The restic repository of the snapshots (sftp:, s3:, rest:...) and the file with its password.
# RESTIC_REPOSITORY=sftp:backup@backup.example.com:/srv/restic/{layout.SLUG}
# RESTIC_PASSWORD_FILE=/etc/{layout.SLUG}/restic.password
"""

ENV_TEMPLATE = f"""\
# Settings and secrets of {layout.SLUG}, one NAME=value per line, read by systemd for
# {" ".join(layout.APP_SERVICES)} (EnvironmentFile=). Created once by deploy/install, which never
# overwrites it; mode 0600, only root reads it. A change applies when the service restarts (a
# reload keeps the environment it started with): systemctl restart {" ".join(layout.APP_SERVICES)}
#
# Workers per app server (default: 2 x cores + 1, or the number the project was made with).
# WEB_CONCURRENCY=5
# gunicorn's log level: debug, info, warning, error.
# GUNICORN_LOGLEVEL=info
""" + (RESTIC_SETTINGS if layout.BACKUP == "restic" else "")


class InstallError(Exception):
    """Why the install stopped, in words an operator can act on."""


@dataclass(frozen=True)
class Account:
    """An account of the system (or of a staged tree's /etc/passwd)."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str


def unit_file(unit: str) -> str:
    """The file that defines a unit: an instance my_app@1.service comes from my_app@.service."""
    name, _, suffix = unit.rpartition(".")
    return f"{name.split('@', 1)[0]}@.{suffix}" if "@" in name else unit


def units_to_verify() -> list[str]:
    """The active units (instances of templates), then any other unit the project has."""
    return list(dict.fromkeys([*layout.ACTIVE_UNITS, *(u for u in UNIT_FILES if "@." not in u)]))


def cache(parts: tuple[str, ...]) -> bool:
    return any(part in CACHES for part in parts) or parts[-1].endswith(".pyc")


def unpublished(parts: tuple[str, ...]) -> bool:
    """What of a folder nginx serves stays behind: caches and hidden files (.git, .env, editors')."""
    return cache(parts) or any(part.startswith(".") for part in parts)


def app_skips(project: Path) -> Callable[[tuple[str, ...]], bool]:
    """What of `project` stays behind, by path parts relative to it."""
    left_behind = LEFT_BEHIND | {venv.parent.name for venv in project.glob("*/pyvenv.cfg")}

    def skip(parts: tuple[str, ...]) -> bool:
        settings = any(part.endswith(".env") for part in parts)
        return parts[0] in left_behind or settings or unpublished(parts)

    return skip


def tree(source: Path, skip: Callable[[tuple[str, ...]], bool] = cache) -> dict[str, Path]:
    """Every folder and file under `source` by relative path, parents first, without skipped ones."""
    if not source.is_dir():
        raise InstallError(f"{source} is missing from the project")
    found = {}
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if skip(relative.parts):
            continue
        if path.is_symlink():
            # Copied as root, a link would publish what it points to (a key under /etc/ssl/private).
            raise InstallError(f"{path} is a symbolic link: deploy/install copies no links; put the file itself there")
        found[relative.as_posix()] = path
    return found


def app_files() -> dict[str, Path]:
    """The project's files and folders as deploy/install copies them into APP_DIR, by relative path."""
    return tree(layout.PROJECT_DIR, app_skips(layout.PROJECT_DIR))


def app_copy(path: Path) -> str:
    """Where a file of the project is on the server, once copied into APP_DIR."""
    return f"{layout.APP_DIR}/{path.relative_to(layout.PROJECT_DIR).as_posix()}"


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.strip().splitlines())


def describe(owner: Owner, mode: int) -> str:
    return f"{owner[0]}:{owner[1]} {mode:04o}"
