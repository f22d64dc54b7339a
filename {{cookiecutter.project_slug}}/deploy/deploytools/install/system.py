"""Install-time checks against the system itself (or a staged tree's /etc): before the first
change, deploy/install asks what exists already and whether it made it.

- the install folder must be a folder of its own: not a system location nor a parent of one, and
  either new, empty, or this installer's;
- a unit, an /etc folder or file, or the service's account that exists and is not in the manifest
  belongs to someone else: refused, or taken over with --adopt. A unit the distribution ships (in
  /usr/lib/systemd/system) is never shadowed, and the service never runs as a privileged account;
- the programs the units run exist (/bin/kill for ExecReload=);
- with bind=tcp, no other process listens on the app's ports.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from .. import layout
from .common import CERTBOT_HOOK, ENV_DIR, UNIT_FILES, VENV_PYTHON, Account

if TYPE_CHECKING:
    from .ledger import Manifest
    from .roles import Role
    from .target import Target

# Neither these nor anything under them: the operating system's, or wiped, or hidden from services.
SYSTEM_TREES = (
    "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
    "/sbin", "/snap", "/sys", "/tmp", "/usr", "/var/backups", "/var/cache", "/var/lock", "/var/log", "/var/mail",
    "/var/run", "/var/spool", "/var/tmp", "/var/www/html",
)  # fmt: skip
# Not these themselves (a folder of one's own inside them is fine: /srv/<app>, /var/lib/<app>).
SYSTEM_FOLDERS = ("/", "/media", "/mnt", "/opt", "/srv", "/var", "/var/lib", "/var/local", "/var/opt", "/var/www")
# Accounts and groups that grant more than a web app may have: root's, disks and memory, logs,
# password hashes, sudo, container engines, the package manager, the terminal.
PRIVILEGED = frozenset(
    {
        "root", "sudo", "wheel", "admin", "adm", "disk", "kmem", "mem", "shadow", "docker", "lxd", "libvirt",
        "systemd-journal", "systemd-network", "systemd-resolve", "systemd-timesync", "_apt", "staff", "sys",
        "bin", "daemon", "tty", "utmp", "dialout", "operator", "backup", "nobody", "nogroup", "www-data",
        "nginx", "http", "postgres", "mysql", "sshd", "messagebus", "polkitd", "input", "video", "render",
    }
)  # fmt: skip
NOLOGIN_SHELLS = frozenset({"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"})
DISTRIBUTION_UNIT_DIRS = ("/usr/lib/systemd/system", "/lib/systemd/system")
EXEC_LINE = re.compile(r"^Exec\w+=[-@:+!]*(/\S+)", re.MULTILINE)
PROGRAM_PACKAGES = {
    "kill": "procps",
    # The exporters' (metrics on), where nginx runs.
    "prometheus-nginx-exporter": "prometheus-nginx-exporter",
    "mtail": "mtail",
}


def system_location(path: str) -> bool:
    """Whether `path` is a system location, lies in one, or holds one (a parent of /var/lib...)."""
    pure = PurePosixPath(path)
    for tree in SYSTEM_TREES:
        if pure == PurePosixPath(tree) or PurePosixPath(tree) in pure.parents or pure in PurePosixPath(tree).parents:
            return True
    return any(pure == PurePosixPath(f) or pure in PurePosixPath(f).parents for f in SYSTEM_FOLDERS)


def privileged(account: Account, groups: dict[str, tuple[int, list[str]]]) -> str | None:
    """Why running as `account` would grant too much, or None."""
    if account.uid == 0 or account.gid == 0:
        return "has root's user or group id"
    if account.name in PRIVILEGED:
        return "is a privileged system account"
    for group, (gid, members) in groups.items():
        if group in PRIVILEGED and (gid == account.gid or account.name in members):
            return f"is in the privileged group {group}"
    return None


def owned_paths(role: Role) -> list[str]:
    """Paths outside the install folder that a host's other software might own already."""
    paths = [ENV_DIR] if role.installs_code else []
    if role.runs_nginx:
        paths += [layout.NGINX_SITE_PATH, layout.NGINX_SNIPPETS_DIR]
        if layout.NGINX_SITE_LINK:
            paths.append(layout.NGINX_SITE_LINK)
        if layout.TLS_MODE == "letsencrypt":
            paths.append(CERTBOT_HOOK)
    if role.runs_nginx and layout.MTAIL_DIR:
        paths += [f"{layout.SYSTEMD_UNIT_DIR}/{u}" for u in layout.METRICS_UNITS] + [layout.MTAIL_DIR]
    if role.runs_app:
        paths += [f"{layout.SYSTEMD_UNIT_DIR}/{u}" for u in UNIT_FILES]
        paths += list(role.drop_ins())
        if layout.FRAMEWORK == "django":
            paths.append(layout.STATE_DIR)
    return paths


def not_ours(target: Target, manifest: Manifest, path: str) -> bool:
    """Whether `path` exists with something in it, and the manifest does not list it."""
    disk = target.disk(path)
    if not (disk.exists() or disk.is_symlink()) or manifest.owns(path):
        return False
    if any(listed.startswith(path + "/") for listed in manifest.paths):
        return False  # a folder that was there (empty) before the installer filled it
    return not (disk.is_dir() and not disk.is_symlink() and not any(disk.iterdir()))


def problems(target: Target, manifest: Manifest, *, adopt: bool) -> list[str]:
    """Everything on this system that the install would clobber, take over or run as."""
    found = []
    adopt_hint = "; if it is a copy installed by an earlier deploy/install, run once with --adopt to take it over"
    if system_location(layout.INSTALL_DIR):
        found.append(
            f"install folder {layout.INSTALL_DIR} is a system location or holds one: the install folder must be a"
            f" folder of its own (e.g. /srv/{layout.SLUG}); re-bake with install_dir=/srv/{layout.SLUG}"
        )
    elif not adopt and not_ours(target, manifest, layout.INSTALL_DIR):
        found.append(
            f"install folder {layout.INSTALL_DIR} exists, is not empty and was not made by this installer{adopt_hint}"
        )
    role = target.role
    for name in role_units(role):
        for folder in DISTRIBUTION_UNIT_DIRS:
            if target.disk(f"{folder}/{name}").exists():
                found.append(
                    f"unit {name} is the distribution's ({folder}/{name}): a unit of the same name in"
                    f" {layout.SYSTEMD_UNIT_DIR} would replace it; re-bake with another project_slug"
                )
                break
    if not adopt:
        for path in owned_paths(role):
            if not_ours(target, manifest, path):
                found.append(f"{path} exists and was not made by this installer{adopt_hint}")
    if role.runs_app:
        found += account_problems(target, manifest, adopt=adopt)
    found += missing_programs(target)
    return found


def account_problems(target: Target, manifest: Manifest, *, adopt: bool) -> list[str]:
    name = layout.SERVICE_USER
    accounts, groups = target.accounts(), target.groups()
    if manifest.user_created:
        return []
    account = accounts.get(name)
    if account is None:
        if name in groups:
            why = "privileged" if name in PRIVILEGED or groups[name][0] == 0 else "not made by this installer"
            if why == "privileged" or not adopt:
                return [
                    f"group {name} exists already ({why}): the service needs a group of its own;"
                    " re-bake with another server_user"
                ]
        return []
    reason = privileged(account, groups)
    if reason:
        return [
            f"user {name} {reason}: the service must run as an account of its own; re-bake with another server_user"
        ]
    if not adopt:
        return [
            f"user {name} exists and was not made by this installer: the service needs an account of its own"
            " (re-bake with another server_user), or run with --adopt if it is the one an earlier deploy/install made"
        ]
    if account.shell not in NOLOGIN_SHELLS or account.home != layout.INSTALL_DIR:
        return [
            f"user {name} has a login shell or another home ({account.shell}, {account.home}): --adopt takes over only"
            f" the kind of account deploy/install makes (no login shell, home {layout.INSTALL_DIR})"
        ]
    return []


def role_units(role: Role) -> list[str]:
    """The unit files this role places: the app's where it runs, the exporters' where nginx runs."""
    return [*(UNIT_FILES if role.runs_app else []), *(layout.METRICS_UNITS if role.runs_nginx else [])]


def missing_programs(target: Target) -> list[str]:
    """Programs the units start (outside the venv) that the server lacks; a staged tree is checked
    when it holds a system (usr/bin)."""
    if not target.disk("/usr/bin").is_dir():
        return []
    found = []
    for name in role_units(target.role):
        for program in EXEC_LINE.findall((layout.SYSTEMD_DIR / name).read_text()):
            # The release's own programs (its venv, deploy/backup) come with the release.
            if program.startswith(layout.APP_DIR + "/") or program == VENV_PYTHON:
                continue
            if not target.disk(program).exists():
                package = PROGRAM_PACKAGES.get(PurePosixPath(program).name, "")
                how = f": {layout.PACKAGE_INSTALL} {package}" if package else ""
                found.append(f"{program} is missing, and {name} runs it{how}")
    return sorted(set(found))


# Ports ------------------------------------------------------------------------------------------
def listeners(proc: Path = Path("/proc")) -> dict[int, set[int]]:
    """TCP ports in LISTEN state on this machine -> the socket inodes that listen on them."""
    found: dict[int, set[int]] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":  # 0A: LISTEN
                port = int(fields[1].rsplit(":", 1)[1], 16)
                found.setdefault(port, set()).add(int(fields[9]))
    return found


def socket_owners(inodes: set[int], proc: Path = Path("/proc")) -> list[tuple[int, str, str]]:
    """(pid, command name, systemd unit or "") of the processes holding these sockets."""
    wanted = {f"socket:[{inode}]" for inode in inodes}
    owners = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            held = any(os.readlink(fd) in wanted for fd in (entry / "fd").iterdir())
        except OSError:
            continue
        if held:
            owners.append((int(entry.name), read(entry / "comm"), unit_of(entry)))
    return owners


def read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def unit_of(process: Path) -> str:
    found = re.search(r"/([^/]+\.(?:service|scope|socket))$", read(process / "cgroup"), re.MULTILINE)
    return found.group(1) if found else ""


def ours(pid: int, unit: str, proc: Path = Path("/proc"), *, sockets_active: bool = False) -> bool:
    """A process of this project's own service (its unit, or gunicorn from its venv), or systemd
    itself holding the project's active socket units (an app host's, on TCP)."""
    if unit and unit in layout.ACTIVE_UNITS:
        return True
    if pid == 1 and sockets_active:
        return True
    return layout.VENV_DIR + "/" in read(proc / str(pid) / "cmdline").replace("\0", " ")


def port_problems(target: Target) -> list[str]:
    """Ports gunicorn listens on (bind=tcp, or any bind on an app host) that another program listens
    on already (this project's own are fine)."""
    app_host = target.role.name == "app"
    if layout.BIND != "tcp" and not app_host:
        return []
    ports = list(layout.APP_PORTS)
    if layout.BRIDGE_SERVER and not app_host:
        # deploy/install's bridge listens there while the app restarts into another venv.
        ports.append(int(layout.BRIDGE_SERVER.rsplit(":", 1)[1]))
    # On an app host with bind=unix, systemd holds the TCP sockets: they are ours if our sockets run.
    sockets_active = app_host and any(target.unit_is("active", unit) for unit in layout.SOCKET_UNITS)
    listening = listeners()
    found = []
    for port in ports:
        if port not in listening:
            continue
        holders = socket_owners(listening[port])
        owners = [owner for owner in holders if not ours(owner[0], owner[2], sockets_active=sockets_active)]
        if holders and not owners:
            continue  # this project's own service, running
        said = ", ".join(f"{name} (pid {pid}{', unit ' + unit if unit else ''})" for pid, name, unit in owners)
        free = next(
            p for p in range(port + len(ports), 65536) if not any(q in listening for q in range(p, p + len(ports)))
        )
        who = "gunicorn" if port in layout.APP_PORTS else "deploy/install's bridge (while the app restarts)"
        found.append(
            f"port {port} is already in use by {said or 'another process (owner not visible)'}: {who} could not"
            f" listen on it. Re-bake with a free port: cookiecutter <template> --no-input app_port={free} (with"
            " your other answers from .cookiecutter-answers.json), or stop that program"
        )
    return found
