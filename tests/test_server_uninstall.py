"""Install from an ordinary user's private home, then uninstall and purge, on a real Debian server:
the uninstall keeps what deploy/INSTALL.md says it keeps, the purge leaves the server as it was
before, and nothing deploy/install did not make is removed."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from servers import RELEASES, Checkout, Host, copy_project

# Every path under these folders, with its type, mode, owner and content, is compared.
WATCHED = ["/etc", "/srv", "/home", "/root", "/usr/local", "/var/lib", "/opt"]
# What changes on any running server whatever is installed: logs and caches, systemd's and
# dpkg's bookkeeping, the backup copies shadow's tools keep of the account files (/etc/passwd-),
# and the data of the PostgreSQL every test server runs (its write-ahead log moves on by itself).
UNWATCHED = [
    "/var/lib/systemd/",
    "/var/lib/nginx/",
    "/var/lib/postgresql/",
    "/var/lib/dbus/",
    "/etc/passwd-",
    "/etc/group-",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/.pwd.lock",
    "/etc/machine-id",
    "/root/.cache/",
]
SNAPSHOT = f"""
import hashlib, json, os, stat, sys
found = {{}}
skip = {UNWATCHED!r}
for top in {WATCHED!r}:
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if any(path.startswith(s) or path + "/" == s for s in skip):
                continue
            info = os.lstat(path)
            kind = "link" if stat.S_ISLNK(info.st_mode) else "dir" if stat.S_ISDIR(info.st_mode) else "file"
            entry = [kind, oct(stat.S_IMODE(info.st_mode)), info.st_uid, info.st_gid]
            if kind == "link":
                entry.append(os.readlink(path))
            elif kind == "file":
                entry.append(hashlib.sha256(open(path, "rb").read()).hexdigest())
            found[path] = entry
json.dump(found, sys.stdout)
"""
HOME = "/home/alice"
CHECKOUT = f"{HOME}/my_app"
# Not made by deploy/install: a user's file in the install folder, and a folder of another program.
USER_FILE = "/srv/my_app/uploads/photo.jpg"
OTHER_FILE = "/srv/other/keep.txt"


@dataclass
class Server:
    host: Host
    checkout: Checkout
    before: dict
    output: str
    returncode: int


def snapshot(host: Host) -> dict:
    return json.loads(host.run("python3", "-c", SNAPSHOT).stdout)


def differences(before: dict, after: dict) -> dict[str, str]:
    changed = {}
    for path in sorted(before.keys() | after.keys()):
        if path not in after:
            changed[path] = "removed"
        elif path not in before:
            changed[path] = "added"
        elif before[path] != after[path]:
            changed[path] = f"changed {before[path]} -> {after[path]}"
    return changed


@pytest.fixture(scope="module", params=list(RELEASES))
def server(request, lab, server_project) -> Iterator[Server]:
    release = request.param
    project = server_project(release)
    with lab.booted(f"uninstall-{release}", release=release) as (host,):
        host.run("useradd", "--create-home", "--home-dir", HOME, "alice")
        host.run("chmod", "0700", HOME)
        host.write(OTHER_FILE, "not the installer's\n")
        checkout = copy_project(host, project.path, CHECKOUT, owner="alice")
        before = snapshot(host)
        result = checkout.install()
        yield Server(host, checkout, before, result.stdout + result.stderr, result.returncode)


def test_install_from_a_checkout_in_a_private_home_serves_the_site(server: Server) -> None:
    assert server.returncode == 0, server.output
    assert server.host.get("/").status == 200


def test_uninstall_removes_the_site_and_units_and_keeps_the_rest(server: Server) -> None:
    host = server.host
    # Two releases and their venv on the server, for the purge that follows; the checkout as it was.
    app = server.checkout.edit("my_app/app.py", "def ", "# release 2\ndef ")
    server.checkout.installed()
    server.checkout.put_back("my_app/app.py", app)
    assert len(host.run("ls", "/srv/my_app/releases").stdout.split()) == 2
    host.write(USER_FILE, "a user's upload\n")
    server.checkout.installed("--uninstall")
    assert not host.exists("/etc/systemd/system/my_app.service")
    assert not host.exists("/etc/nginx/sites-enabled/my_app.conf")
    assert not host.is_active("my_app.socket") and not host.is_active("my_app.service")
    # Kept, as deploy/INSTALL.md says: the install folder, the env file and the user.
    assert host.exists("/srv/my_app/current/wsgi.py")
    assert host.exists("/etc/my_app/my_app.env")
    assert host.run("id", "my_app", check=False).returncode == 0
    # nginx is back to Debian's default site.
    assert "Welcome to nginx" in host.get("/").text


def test_purge_leaves_the_server_as_it_was_and_keeps_what_it_did_not_make(server: Server) -> None:
    host = server.host
    server.checkout.installed("--uninstall", "--purge")
    changed = differences(server.before, snapshot(host))
    kept = {path: what for path, what in changed.items() if path in {"/srv/my_app", "/srv/my_app/uploads", USER_FILE}}
    assert kept == dict.fromkeys(["/srv/my_app", "/srv/my_app/uploads", USER_FILE], "added"), changed
    assert {path: what for path, what in changed.items() if path not in kept} == {}
    assert host.read(OTHER_FILE) == "not the installer's\n"
    # Nor is anything left in /run: the socket and its folder went with the socket unit.
    assert not host.exists("/run/my_app")


def test_failed_first_install_takes_back_the_account_and_venv_it_made(server: Server) -> None:
    """After the purge the server is new to the project again: a first install whose health check
    fails rolls back everything it made, the account and the venv included."""
    host = server.host
    # The upload the purge kept goes elsewhere first: the installer takes no folder that holds files.
    host.run("rm", "-r", "/srv/my_app")
    # A dry run of the first install: what it would do, exit 0, nothing made.
    started = time.monotonic()
    dry = server.checkout.install("--dry-run", timeout=60)
    took = time.monotonic() - started
    assert dry.returncode == 0 and took < 5, dry.stdout + dry.stderr
    assert differences(server.before, snapshot(host)) == {}
    healthy = 'return "200 OK", "text/plain; charset=utf-8", b"ok\\n"'
    server.checkout.edit("my_app/app.py", healthy, healthy.replace('"200 OK"', '"500 Internal Server Error"'))
    result = server.checkout.install()
    server.checkout.edit("my_app/app.py", '"500 Internal Server Error"', '"200 OK"')
    assert result.returncode == 1, result.stdout
    assert "health: FAILED" in result.stdout and "rolled back, nothing installed" in result.stdout, result.stdout
    assert host.run("id", "my_app", check=False).returncode != 0
    assert not host.exists("/srv/my_app/venvs") and not host.exists("/srv/my_app/releases")
    assert differences(server.before, snapshot(host)) == {}


def test_the_app_is_purged_after_nginx_was_removed(server: Server) -> None:
    """Last in the module: nginx goes first (apt-get remove), then the app."""
    host = server.host
    host.run("rm", "-rf", "/srv/my_app")  # what earlier tests left, as the failed-install test does
    server.checkout.installed()
    host.run("apt-get", "remove", "--yes", "nginx", env={"DEBIAN_FRONTEND": "noninteractive"})
    assert not host.exists("/usr/sbin/nginx")
    output = server.checkout.installed("--uninstall", "--purge")
    assert "nginx is not installed: nothing to test or reload" in output, output
    assert "uninstall: done" in output and "left in place" not in output, output
    assert not host.exists("/etc/systemd/system/my_app.service")
    assert not host.exists("/run/my_app")
    assert host.run("id", "my_app", check=False).returncode != 0
