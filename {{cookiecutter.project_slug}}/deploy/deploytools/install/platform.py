"""Facts about the platforms the project can be made for, and about this machine."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from .. import layout


@dataclass(frozen=True)
class Platform:
    install: str  # the package manager's install command
    python: str  # the packages that give python3.11+ with its venv module
    venv_python: str  # the interpreter setup-venv builds the venv with on the target


PLATFORMS = {
    "debian-13": Platform("apt-get install", "python3 python3-venv", "python3"),
    "debian-12": Platform("apt-get install", "python3 python3-venv", "python3"),
    "ubuntu-24.04": Platform("apt-get install", "python3 python3-venv", "python3"),
    "rhel-9": Platform("dnf install", "python3.11", "python3.11"),
}
PLATFORM = PLATFORMS[layout.PLATFORM]
RHEL = layout.PLATFORM == "rhel-9"
# Folders nginx serves files from (SELinux labels them).
NGINX_READS = [
    layout.STATIC_ROOT,
    layout.ERRORS_ROOT,
    *([layout.ACME_ROOT] if layout.TLS_MODE == "letsencrypt" else []),
]


def this_platform() -> str | None:
    """This machine as debian-13, ubuntu-24.04, rhel-9, ... (Rocky and Alma count as RHEL)."""
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return None
    name, version = release.get("ID", ""), release.get("VERSION_ID", "")
    if name in {"rhel", "rocky", "almalinux", "centos"}:
        return f"rhel-{version.split('.')[0]}"
    return f"{name}-{version}"


def fcontext_spec(folder: str) -> str:
    """semanage's regular expression for a folder and everything in it."""
    return folder.replace(".", r"\.") + "(/.*)?"
