"""What a run needs before it changes anything: every problem at once, or InstallError."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .. import layout
from ..nginx import find_nginx
from .common import InstallError
from .platform import PLATFORM, RHEL, this_platform

if TYPE_CHECKING:
    from .target import Live, Staged, Target


def certificate_pending(target: Target) -> bool:
    """Let's Encrypt without a certificate yet: the challenge site first, then certbot, then the site."""
    if layout.TLS_MODE != "letsencrypt" or layout.NGINX_ACME_SITE is None:
        return False
    return target.certificate_missing()


def staged(target: Staged) -> str:
    root = target.root
    if root.resolve() == Path("/"):
        raise InstallError("--root / is this machine itself: run without --root to install here")
    if root.resolve().is_relative_to(layout.PROJECT_DIR):
        raise InstallError(f"--root {root} is inside the project, which is copied: pick a folder outside")
    if target.writes:
        root.mkdir(parents=True, exist_ok=True)
    return f"staging for {layout.PLATFORM} under {root} (no account, service or package touched)"


def live(target: Live, *, installing: bool) -> str:
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root: sudo deploy/install")
    if not shutil.which("systemctl"):
        problems.append("systemctl not found: the server must run systemd")
    nginx = find_nginx()
    if nginx is None:
        problems.append(f"nginx is not installed: {PLATFORM.install} nginx")
    if installing and importlib.util.find_spec("ensurepip") is None:
        problems.append(f"Python cannot create virtualenvs here: {PLATFORM.install} {PLATFORM.python}")
    if installing and certificate_pending(target) and not shutil.which("certbot"):
        epel = " (from EPEL)" if RHEL else ""
        problems.append(f"certbot is not installed: {PLATFORM.install} certbot{epel}")
    if installing and layout.TLS_MODE == "existing":
        tls_files = {layout.TLS_CERTIFICATE: "certificate (full chain)", layout.TLS_CERTIFICATE_KEY: "key"}
        problems += [
            f"TLS: no {what} at {path}: put it there first"
            for path, what in tls_files.items()
            if not Path(path).exists()
        ]
    if RHEL and target.selinux_enabled() and not shutil.which("semanage"):
        problems.append("semanage is missing (SELinux is on): dnf install policycoreutils-python-utils")
    if problems:
        raise InstallError("\n".join(f"  {problem}" for problem in problems).lstrip())
    found = []
    if nginx is not None and (version := target.query(nginx, "-v")) is not None:
        found.append(version.stderr.strip().removeprefix("nginx version: "))
    found.append(f"Python {sys.version.split()[0]}")
    here = this_platform()
    note = "" if here in (None, layout.PLATFORM) else f" (but this machine is {here})"
    return f"root, {', '.join(found)}, {layout.PLATFORM}{note}"
