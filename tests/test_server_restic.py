"""Snapshots off the server, and a new server brought back from them: a Django project baked with
backup=restic on a booted Debian host sends its daily unit's snapshot to a restic repository on a
second booted host over sftp (keys made by the test, the repository initialised as the generated
INSTALL.md says); the first host is destroyed; a new host installs the same project, restores
from the repository with deploy/restore --from-restic, and serves the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from servers import RELEASES, Host, copy_project
from test_server_django import NOTES_APP, NOTES_ROUTE, NOTES_VIEWS

PASSWORD_FILE = "/etc/my_app/restic.password"
REPOSITORY_PATH = "/srv/restic/my_app"


def with_notes(project: Path) -> None:
    """The notes app and its pages in the baked project, as a developer adds them."""
    for name, text in {**NOTES_APP, **NOTES_VIEWS}.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    settings = project / "my_app" / "settings.py"
    apps = '"django.contrib.staticfiles",'
    settings.write_text(settings.read_text().replace(apps, f'{apps}\n    "notes",'))
    urls = project / "my_app" / "urls.py"
    urls.write_text(urls.read_text().replace("urlpatterns = [\n", "urlpatterns = [\n" + NOTES_ROUTE))


def point_at_the_repository(host: Host, vault: Host, key: str, password: str) -> None:
    """What an operator sets up on each server: root's ssh key for the backup host, the repository
    and its password in the env file."""
    host.run("mkdir", "-p", "-m", "0700", "/root/.ssh")
    host.write("/root/.ssh/id_ed25519", key, mode=0o600)
    host.write("/root/.ssh/config", f"Host {vault.address}\n    StrictHostKeyChecking accept-new\n", mode=0o600)
    host.write(PASSWORD_FILE, password, mode=0o600)
    env = host.read("/etc/my_app/my_app.env")
    settings = f"RESTIC_REPOSITORY=sftp:root@{vault.address}:{REPOSITORY_PATH}\nRESTIC_PASSWORD_FILE={PASSWORD_FILE}\n"
    host.write("/etc/my_app/my_app.env", env + settings, mode=0o600)


def restic(host: Host, *args: str) -> str:
    env = host.read("/etc/my_app/my_app.env")
    settings = dict(line.split("=", 1) for line in env.splitlines() if line.startswith("RESTIC_"))
    return host.run("env", *(f"{k}={v}" for k, v in settings.items()), "restic", *args).stdout


@pytest.mark.parametrize("release", list(RELEASES))
def test_the_timers_snapshot_goes_off_the_server_and_a_new_server_restores_it(
    release: str, lab, server_project
) -> None:
    project = server_project(release, framework="django", backup="restic")
    with_notes(project.path)
    first, vault = lab.boot([f"data-{release}", f"vault-{release}"], release=release)
    try:
        checkout = copy_project(first, project.path, "/root/my_app")
        output = checkout.installed()
        assert "backup=restic: until RESTIC_REPOSITORY and RESTIC_PASSWORD_FILE are set" in output, output
        # An ssh key of the server's root for the backup host, and the repository, as INSTALL.md says.
        first.run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", "/root/key")
        key, public = first.read("/root/key"), first.read("/root/key.pub")
        vault.write("/root/.ssh/authorized_keys", vault.read("/root/.ssh/authorized_keys") + public, mode=0o600)
        vault.run("mkdir", "-p", REPOSITORY_PATH)
        point_at_the_repository(first, vault, key, "a long passphrase of the test\n")
        restic(first, "init")

        rows = [first.get("/notes/add") for _ in range(40)]
        assert [row.status for row in rows] == [200] * 40
        ran = first.run("systemctl", "start", "my_app-backup.service", check=False)
        journal = first.run("journalctl", "-u", "my_app-backup.service", "-o", "cat", check=False).stdout
        assert ran.returncode == 0, journal
        assert "backup: sent to sftp:root@" in journal and "(repository pruned)" in journal, journal
        sent = json.loads(restic(first, "snapshots", "--json", "--tag", "my_app"))
        assert [snapshot["tags"] for snapshot in sent] == [["my_app", "timer"]], sent
        # On the backup host: restic's files only, encrypted (no row of the database in the clear).
        found = vault.run("grep", "-rl", "written under load", REPOSITORY_PATH, check=False)
        assert found.returncode == 1, found.stdout
    finally:
        lab.remove(first)

    (again,) = lab.boot([f"again-{release}"], release=release)
    try:
        checkout = copy_project(again, project.path, "/root/my_app")
        checkout.installed()
        assert again.get("/notes/count").text == "0"
        point_at_the_repository(again, vault, key, "a long passphrase of the test\n")
        restored = again.run("/srv/my_app/current/deploy/restore", "--from-restic", cwd="/", check=False)
        print(f"{release}: a new server restored from restic: {restored.stdout.strip().splitlines()[-1]}")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert again.get("/notes/count").text == "40"
        assert again.get("/notes/add").text == "41"
    finally:
        lab.remove(again)
        lab.remove(vault)
