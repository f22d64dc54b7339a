{% set derived = cookiecutter | derive %}
"""deploy/manage: Django's manage.py with the settings the app runs with, here or on the server.

In the project it reads {{ cookiecutter.project_slug }}.env and uses the project's venv and its
database in .state/, as deploy/run-local does. In the installed copy ({{ derived.app_dir }}),
started by root, it runs manage.py the way systemd runs the service: as {{ cookiecutter.server_user }},
with {{ derived.env_file }} and STATE_DIRECTORY={{ derived.state_dir }}, so that
what it writes (the database) belongs to the service.
"""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

from . import layout
from .envfile import read_env_file

USAGE = """\
usage: deploy/manage COMMAND [ARGS...]

Run manage.py COMMAND with the app's settings, e.g. `deploy/manage createsuperuser`.
In the project: with {env_source} and {venv}.
On the server: `sudo {app_dir}/deploy/manage COMMAND`, run as {user} with {env_file}
and the service's state folder {state_dir}, like the service itself.
"""
# What the service's processes see besides the env file; systemd gives them no more than this.
SERVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The unit's UMask=: files the app writes are not readable by other users.
SERVICE_UMASK = 0o027


class ManageError(Exception):
    """A reason deploy/manage cannot run, for the user."""


def installed() -> bool:
    """True in a release deploy/install put on the server, False in the project."""
    return layout.PROJECT_DIR.parent == Path(layout.RELEASES_DIR)


def local_command(args: list[str]) -> tuple[list[str], dict[str, str]]:
    python = layout.LOCAL_VENV / "bin" / "python"
    if not python.exists():
        raise ManageError(f"{layout.LOCAL_VENV} has no python: run deploy/setup-venv first")
    if not layout.ENV_SOURCE.exists():
        raise ManageError(f"{layout.ENV_SOURCE} is missing: it holds DJANGO_SECRET_KEY (made at bake time)")
    layout.LOCAL_STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, **read_env_file(layout.ENV_SOURCE)}
    return [str(python), str(layout.PROJECT_DIR / "manage.py"), *args], env


def become_service_user() -> pwd.struct_passwd:
    """Switch this process to the service's user and groups, as systemd's User= and Group= do."""
    try:
        user = pwd.getpwnam(layout.SERVICE_USER)
    except KeyError:
        raise ManageError(f"user {layout.SERVICE_USER} does not exist: run deploy/install first") from None
    state = Path(layout.STATE_DIR)
    if not state.exists():
        # What systemd makes for StateDirectory= before the service's first start.
        state.mkdir(mode=0o700)
        os.chown(state, user.pw_uid, user.pw_gid)
    os.initgroups(user.pw_name, user.pw_gid)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.umask(SERVICE_UMASK)
    return user


def server_command(args: list[str]) -> tuple[list[str], dict[str, str]]:
    if os.geteuid() != 0:
        raise ManageError(f"on the server, run it as root: sudo {layout.APP_DIR}/deploy/manage {' '.join(args)}")
    # Read as root: the env file is root's (mode 0600); systemd reads it the same way.
    settings = read_env_file(Path(layout.ENV_FILE))
    if not settings:
        raise ManageError(f"{layout.ENV_FILE} is missing or empty: run deploy/install first")
    user = become_service_user()
    env = {
        "PATH": SERVICE_PATH,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        **{name: os.environ[name] for name in ("TERM",) if name in os.environ},
        **settings,
        "STATE_DIRECTORY": layout.STATE_DIR,
        # The app folder is read-only for the service: no bytecode files to write.
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return [f"{layout.VENV_DIR}/bin/python", f"{layout.APP_DIR}/manage.py", *args], env


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(
            USAGE.format(
                env_source=layout.ENV_SOURCE.name,
                venv=layout.LOCAL_VENV.name,
                app_dir=layout.APP_DIR,
                user=layout.SERVICE_USER,
                env_file=layout.ENV_FILE,
                state_dir=layout.STATE_DIR,
            ),
            end="",
        )
        return 0 if argv else 2
    try:
        command, env = server_command(argv) if installed() else local_command(argv)
    except (ManageError, OSError) as error:
        print(f"manage: {error}", file=sys.stderr)
        return 1
    os.chdir(layout.PROJECT_DIR)
    # exec: manage.py gets this terminal (createsuperuser asks for the password on it).
    os.execve(command[0], command, env)
