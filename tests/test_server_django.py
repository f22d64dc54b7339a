"""A Django project on real Debian 12 and 13 servers: installed with its own deploy/install, the
installer runs its migrations as the service's user, nginx serves the admin's own files, and the
first superuser is made the way the generated README says (here without a terminal: --noinput)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from helpers import secret_key
from servers import RELEASES, Checkout, copy_project

ADMIN_CSS = "/static/admin/css/base.css"


@pytest.fixture(scope="module", params=list(RELEASES))
def checkout(request, lab, server_project) -> Iterator[Checkout]:
    release = request.param
    project = server_project(release, framework="django")
    with lab.booted(f"django-{release}", release=release) as (host,):
        checkout = copy_project(host, project.path, "/root/my_app")
        output = checkout.installed()
        print(f"django on {release}: {output.strip().splitlines()[-1]}")
        yield checkout


def test_the_installer_migrated_the_database_in_the_services_state_folder(checkout: Checkout) -> None:
    host = checkout.host
    database = "/var/lib/my_app/db.sqlite3"
    assert host.run("stat", "-c", "%U %a", database).stdout.split()[0] == "my_app"
    tables = host.run(
        "python3",
        "-c",
        f"import sqlite3; print(sqlite3.connect({database!r}).execute("
        '"select count(*) from django_migrations").fetchone()[0])',
    ).stdout
    assert int(tables) > 10


def test_admin_login_page_answers_through_nginx_with_its_own_files_from_disk(checkout: Checkout) -> None:
    host = checkout.host
    login = host.get("/admin/login/")
    assert login.status == 200 and "Django administration" in login.text
    css = host.get(ADMIN_CSS)
    assert css.status == 200 and "max-age" in css.headers.get("cache-control", "")
    assert host.exists(f"/srv/my_app/static/{ADMIN_CSS.removeprefix('/static/')}")


def test_first_superuser_as_the_readme_says_then_the_admin_knows_them(checkout: Checkout) -> None:
    host = checkout.host
    made = host.run(
        "/srv/my_app/current/deploy/manage",
        "createsuperuser",
        "--noinput",
        "--username",
        "admin",
        "--email",
        "admin@example.com",
        check=False,
        cwd="/",
    )
    assert made.returncode == 0, made.stdout + made.stderr
    listed = host.run(
        "/srv/my_app/current/deploy/manage",
        "shell",
        "-c",
        "from django.contrib.auth.models import User; print(User.objects.get().is_superuser)",
        cwd="/",
    )
    assert listed.stdout.strip().splitlines()[-1] == "True"


NOTES_APP = {
    "notes/__init__.py": "",
    "notes/models.py": (
        "from django.db import models\n\n\nclass Note(models.Model):\n    text = models.CharField(max_length=200)\n"
    ),
    "notes/migrations/__init__.py": "",
    "notes/migrations/0001_initial.py": (
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        "    initial = True\n"
        "    dependencies = []\n"
        "    operations = [\n"
        "        migrations.CreateModel(\n"
        '            name="Note",\n'
        "            fields=[\n"
        '                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),\n'
        '                ("text", models.CharField(max_length=200)),\n'
        "            ],\n"
        "        ),\n"
        "    ]\n"
    ),
}


def current(host) -> str:
    return host.run("readlink", "/srv/my_app/current").stdout.strip().removeprefix("releases/")


def test_rollback_past_a_migration_is_refused_with_the_command_that_unapplies_it(checkout: Checkout) -> None:
    host = checkout.host
    before = current(host)
    for name, text in NOTES_APP.items():
        host.run("mkdir", "-p", f"{checkout.path}/{name.rsplit('/', 1)[0]}")
        host.write(f"{checkout.path}/{name}", text)
    apps = '"django.contrib.staticfiles",'
    settings = checkout.edit("my_app/settings.py", apps, f'{apps}\n    "notes",')
    try:
        output = checkout.installed()
        assert "manage.py migrate: applied notes.0001_initial" in output, output
        # Django's deployment checks ran on the new release before it (plain HTTP: the cookie warnings).
        assert re.search(r"^validate: .*manage\.py check --deploy \(.*security\.W012.*\)", output, re.MULTILINE)
        with_notes = current(host)

        refused = checkout.install("--rollback")
        said = refused.stdout + refused.stderr
        assert refused.returncode == 1, said
        assert f"release {before} does not know: notes.0001_initial" in said, said
        unapply = "sudo /srv/my_app/current/deploy/manage migrate notes zero"
        assert f"    {unapply}\n" in said, said
        assert current(host) == with_notes and host.get("/healthz").status == 200

        # As the message says (this test runs as root: no sudo), then the rollback goes through.
        host.run(*unapply.removeprefix("sudo ").split(), cwd="/")
        output = checkout.installed("--rollback")
        assert "it knows every migration the database has" in output, output
        assert current(host) == before and host.get("/admin/login/").status == 200
    finally:
        checkout.put_back("my_app/settings.py", settings)
        host.run("rm", "-r", f"{checkout.path}/notes")
    assert "running" in checkout.installed() and current(host) == before


def test_a_load_balancer_collects_the_static_files_without_holding_the_secret_key(checkout: Checkout) -> None:
    """The same checkout as a load balancer on a machine new to the project (after a purge): the
    admin's files are collected and served; the secret key is in no file of the machine outside the
    checkout it came from, logs included."""
    host = checkout.host
    secret = secret_key(host.read(f"{checkout.path}/my_app.env"))
    checkout.installed("--uninstall", "--purge")
    # 127.0.0.1 stands for an app host; drained, so the health check has none to ask.
    output = checkout.installed("--role", "lb", "--app-host", "127.0.0.1", "--drain", "127.0.0.1")
    assert "collectstatic" in output and not host.exists("/etc/my_app"), output
    css = host.get(ADMIN_CSS)
    assert css.status == 200 and "max-age" in css.headers.get("cache-control", "")
    found = host.run("grep", "-rlF", "--", secret, "/etc", "/srv", "/var", "/tmp", "/run", check=False)
    assert found.returncode == 1 and not found.stdout, found.stdout + found.stderr
