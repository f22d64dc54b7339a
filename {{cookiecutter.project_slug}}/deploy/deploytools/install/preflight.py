"""What a run needs before it changes anything: every problem at once, or InstallError."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .. import layout
from ..nginx import find_nginx
from . import system
from .common import InstallError
from .platform import RHEL, this_platform

if TYPE_CHECKING:
    from .target import Result, Target


def certificate_pending(target: Target) -> bool:
    """Let's Encrypt without a certificate yet: the challenge site first, then certbot, then the site."""
    if layout.TLS_MODE != "letsencrypt" or layout.NGINX_ACME_SITE is None:
        return False
    return target.certificate_missing()


def nearest_existing(path: Path) -> Path:
    """`path` or its nearest parent that exists (as far as this user can see)."""
    while not os.path.exists(path) and path != path.parent:
        path = path.parent
    return path


def write_problem(path: Path, what: str) -> str | None:
    """Why this process cannot write `path` (or create it), or None."""
    existing = nearest_existing(path)
    try:
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            return f"{what} {path} is on a read-only file system ({existing}): remount it read-write or pick another"
    except OSError as error:
        return f"{what} {path}: {error.strerror}"
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        whom = "root" if os.geteuid() == 0 else f"user {os.geteuid()}"
        return f"{what} {path}: {existing} cannot be written by {whom}: pick a folder you can write, or use sudo"
    return None


def check(target: Target, *, installing: bool) -> str:
    """What the run needs, before any change: of a staged tree, or of this machine."""
    return staged(target, installing=installing) if target.defers else live(target, installing=installing)


def staged(target: Target, *, installing: bool) -> str:
    root = target.root
    if root.resolve() == Path("/"):
        raise InstallError("--root / is this machine itself: run without --root to install here")
    if root.resolve().is_relative_to(layout.PROJECT_DIR):
        raise InstallError(f"--root {root} is inside the project, which is copied: pick a folder outside")
    if os.path.islink(root) or (os.path.exists(root) and not os.path.isdir(root)):
        raise InstallError(f"--root {root} is not a folder (a link or a file): give a real folder")
    if target.writes and (problem := write_problem(root, "--root")):
        raise InstallError(problem)
    problems = []
    if installing:
        problems += system.problems(target, target.manifest, adopt=target.options.adopt)
        if target.role.name == "lb" and certificate_pending(target):
            # Its record would need the challenge site and the HTTPS site from the app folder,
            # which a load balancer does not get.
            problems.append(
                "a load balancer's first Let's Encrypt install cannot be staged: run deploy/install --role lb on"
                " the server itself (later updates stage fine)"
            )
    if problems:
        raise InstallError("\n".join(f"  {problem}" for problem in problems).lstrip())
    if target.writes:
        root.mkdir(parents=True, exist_ok=True)
    return f"staging for {layout.PLATFORM} under {root} (no account, service or package touched){role_said(target)}"


def role_said(target: Target) -> str:
    """What the step line says of the role (nothing for a whole server, the default)."""
    role = target.role
    return "" if role.name == "server" else f"; as {role.describe} (--role {role.name})"


def listen_problem(address: str) -> str | None:
    """Why gunicorn could not listen on `address` here (it is not this machine's), or None."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe_socket:
        try:
            probe_socket.bind((address, 0))
        except OSError as error:
            if error.errno == errno.EADDRNOTAVAIL:
                return (
                    f"--listen {address} is not an address of this machine (`ip -brief address` lists them):"
                    " give this host's address on the private network"
                )
    return None


def nginx_version(said: str) -> tuple[int, ...]:
    found = re.search(r"nginx/(\d+(?:\.\d+)*)", said)
    return tuple(int(part) for part in found.group(1).split(".")) if found else (0,)


def rebake_command(platform: str) -> str:
    """The exact command that bakes this project again for `platform`, from its recorded answers."""
    answers_file = layout.PROJECT_DIR / ".cookiecutter-answers.json"
    cruft_file = layout.PROJECT_DIR / ".cruft.json"
    answers = json.loads(answers_file.read_text())["cookiecutter"] if answers_file.exists() else {}
    template = json.loads(cruft_file.read_text())["template"] if cruft_file.exists() else "<template>"
    answers["platform"] = platform
    pairs = [f"{key}={value}" for key, value in sorted(answers.items())]
    return shlex.join(["cookiecutter", "--no-input", "-f", "-o", "..", template, *pairs])


def platform_problem(here: str, nginx_said: Result | None) -> str | None:
    """None when a project made for another platform works here unchanged, else why and the fix.

    Debian and Ubuntu lay nginx out alike (sites-available, www-data); what can still differ is how
    the site spells HTTP/2, which only a TLS site uses: nginx 1.25.1 and later warn at the old
    spelling, older ones refuse the new one.
    """
    same_layout = (here.startswith("rhel")) == (layout.PLATFORM.startswith("rhel"))
    version = nginx_version(nginx_said.stderr if nginx_said else "")
    http2_fits = layout.TLS_MODE == "none" or (version >= (1, 25, 1)) == layout.NGINX_HTTP2_DIRECTIVE
    if same_layout and http2_fits:
        return None
    spelling = f"its HTTP/2 spelling for nginx {version_text(version)}"
    differs = spelling if same_layout else "its nginx paths and user"
    return (
        f"this machine is {here} but the project was made for {layout.PLATFORM} ({differs} differ); nothing was"
        f" changed. Bake it for this machine, from the folder above the project:\n    {rebake_command(here)}"
    )


def version_text(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def live(target: Target, *, installing: bool) -> str:
    problems = []
    if os.geteuid() != 0 and target.writes:
        problems.append("not running as root: sudo deploy/install (a --dry-run works without root)")
    here = this_platform()
    if here is None:
        problems.append(
            "unknown platform: /etc/os-release is missing or unreadable, so this machine cannot be told apart"
        )
    elif here not in layout.PLATFORMS:
        problems.append(
            f"unknown platform {here} (from /etc/os-release): the project supports {', '.join(layout.PLATFORMS)};"
            " install on one of those"
        )
    nginx = find_nginx()
    nginx_said = target.query(nginx, "-v", check=False) if nginx else None
    if here in layout.PLATFORMS and here != layout.PLATFORM and (problem := platform_problem(here, nginx_said)):
        problems.append(problem)
    role = target.role
    if not shutil.which("systemctl"):
        problems.append("systemctl not found: the server must run systemd")
    # An uninstall needs no nginx: the app can go after nginx went.
    if nginx is None and role.runs_nginx and installing:
        problems.append(f"nginx is not installed: {layout.PACKAGE_INSTALL} nginx")
    if installing and role.name == "app" and role.listen and (problem := listen_problem(role.listen)):
        problems.append(problem)
    if installing and role.installs_code and importlib.util.find_spec("ensurepip") is None:
        problems.append(f"Python cannot create virtualenvs here: {layout.PACKAGE_INSTALL} {layout.PYTHON_PACKAGES}")
    if installing and role.runs_app and layout.BACKUP == "restic" and not shutil.which("restic"):
        problems.append(f"restic is not installed (backup=restic): {layout.PACKAGE_INSTALL} restic")
    if installing and role.runs_app and layout.DATABASE and layout.BACKUP != "off" and not shutil.which("pg_dump"):
        problems.append(
            f"pg_dump is not installed (database=postgresql: deploy/backup dumps the database with it):"
            f" {layout.PACKAGE_INSTALL} postgresql-client"
        )
    if installing and role.runs_nginx and certificate_pending(target) and not shutil.which("certbot"):
        epel = " (from EPEL)" if RHEL else ""
        problems.append(f"certbot is not installed: {layout.PACKAGE_INSTALL} certbot{epel}")
    if installing and role.runs_nginx and layout.TLS_MODE == "existing":
        tls_files = {layout.TLS_CERTIFICATE: "certificate (full chain)", layout.TLS_CERTIFICATE_KEY: "key"}
        problems += [
            f"TLS: no {what} at {path}: put it there first"
            for path, what in tls_files.items()
            if not Path(path).exists()
        ]
    if RHEL and target.selinux_enabled() and not shutil.which("semanage"):
        problems.append("semanage is missing (SELinux is on): dnf install policycoreutils-python-utils")
    if target.writes:
        for folder in ("/etc", str(Path(layout.INSTALL_DIR).parent)):
            if problem := write_problem(Path(folder), "the server's folder"):
                problems.append(problem)
    if installing:
        problems += system.problems(target, target.manifest, adopt=target.options.adopt)
        if role.runs_app:
            problems += system.port_problems(target)
    if problems:
        raise InstallError("\n".join(f"  {problem}" for problem in problems).lstrip())
    found = []
    if nginx is not None and (version := target.query(nginx, "-v")) is not None:
        found.append(version.stderr.strip().removeprefix("nginx version: "))
    found.append(f"Python {sys.version.split()[0]}")
    who = "root" if os.geteuid() == 0 else "not root (dry run: what this user may read)"
    made_for = layout.PLATFORM if here == layout.PLATFORM else f"made for {layout.PLATFORM}, works unchanged on {here}"
    return f"{who}, {', '.join(found)}, {made_for}{role_said(target)}"
