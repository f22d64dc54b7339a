"""This machine's platform, and what SELinux labels on RHEL (the platforms' facts: layout.py)."""

from __future__ import annotations

import platform

from .. import layout

RHEL = layout.SELINUX
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
