"""A Django project on real Debian 12 and 13 servers: installed with its own deploy/install, the
installer runs its migrations as the service's user, nginx serves the admin's own files, and the
first superuser is made the way the generated README says (here without a terminal: --noinput).

The two databases run pairwise with the two releases: PostgreSQL (the server's own, peer
authentication) on Debian 12, SQLite on Debian 13. Every test runs on both; the several-hosts
PostgreSQL (a db host), and a whole server's PostgreSQL on Debian 13, run in test_server_postgresql.py."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import secret_key
from servers import Checkout, copy_project, http_get

ADMIN_CSS = "/static/admin/css/base.css"
SERVICE = ("setpriv", "--reuid=my_app", "--regid=my_app", "--init-groups")
PAIRS = [("bookworm", "postgresql"), ("trixie", "sqlite")]


@pytest.fixture(scope="module", params=PAIRS, ids=[f"{release}-{database}" for release, database in PAIRS])
def checkout(request, lab, server_project) -> Iterator[Checkout]:
    release, database = request.param
    project = server_project(release, framework="django", database=database)
    with lab.booted(f"django-{release}", release=release) as (host,):
        checkout = copy_project(host, project.path, "/root/my_app")
        output = checkout.installed()
        print(f"django with {database} on {release}: {output.strip().splitlines()[-1]}")
        yield checkout


def on_postgresql(host) -> bool:
    """Whether the installed app's env file names a PostgreSQL database (database=postgresql)."""
    return "PGDATABASE=" in host.read("/etc/my_app/my_app.env")


def sql(host, query: str) -> list:
    """One query's rows from the live database, read as the service's account: its SQLite file, or
    its PostgreSQL database through peer authentication (the env file's settings, as the app)."""
    if on_postgresql(host):
        rows = f"SELECT coalesce(json_agg(row_to_json(q)), '[]') FROM ({query}) q"
        said = host.run(*SERVICE, "psql", "-XAtq", "-h", "/var/run/postgresql", "-d", "my_app", "-c", rows, cwd="/")
        return [list(row.values()) for row in json.loads(said.stdout)]
    database = "file:/var/lib/my_app/db.sqlite3?mode=ro"
    rows = f"sqlite3.connect({database!r}, uri=True).execute({query!r}).fetchall()"
    program = f"import json, sqlite3; print(json.dumps({rows}))"
    said = host.run(*SERVICE, "python3", "-c", program)
    return json.loads(said.stdout)


def as_postgres(host, query: str, database: str = "postgres") -> str:
    """A query's answer in `database`, asked as PostgreSQL's own account (peer authentication)."""
    return host.run("runuser", "-u", "postgres", "--", "psql", "-XAtc", query, "-d", database, cwd="/").stdout.strip()


def test_the_installer_made_and_migrated_the_database_where_the_answer_says(checkout: Checkout) -> None:
    host = checkout.host
    migrated = sql(host, "select count(*) from django_migrations")
    assert migrated[0][0] > 10, migrated
    if not on_postgresql(host):
        assert host.run("stat", "-c", "%U", "/var/lib/my_app/db.sqlite3").stdout.strip() == "my_app"
        return
    peer_authentication_only(host)
    assert not host.exists("/var/lib/my_app/db.sqlite3")


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
        "from django.db import models\n\n\nclass Note(models.Model):\n    text = models.CharField(max_length=500)\n"
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
        '                ("text", models.CharField(max_length=500)),\n'
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


# The notes app again, with a page that writes a row per request and answers with its id.
NOTES_VIEWS = {
    "notes/views.py": (
        "from django.http import HttpResponse\n\n"
        "from .models import Note\n\n\n"
        "def add(request):\n"
        '    return HttpResponse(str(Note.objects.create(text="written under load").id))\n'
        "\n\n"
        "def count(request):\n"
        "    return HttpResponse(str(Note.objects.count()))\n"
    ),
}
NOTES_ROUTE = (
    '    path("notes/add", __import__("notes.views").views.add),\n'
    '    path("notes/count", __import__("notes.views").views.count),\n'
)
# A release whose second migration adds a column and whose third fails: the database is left
# half-migrated (each migration is a transaction of its own on SQLite).
BROKEN_MIGRATIONS = {
    "notes/migrations/0002_note_title.py": (
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("notes", "0001_initial")]\n'
        '    operations = [migrations.AddField("note", "title", models.CharField(max_length=50, default=""))]\n'
    ),
    "notes/migrations/0003_broken.py": (
        "from django.db import migrations\n\n\n"
        "def fail(apps, schema_editor):\n"
        '    raise RuntimeError("this migration fails on purpose")\n\n\n'
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("notes", "0002_note_title")]\n'
        "    operations = [migrations.RunPython(fail)]\n"
    ),
}


def writer(host, results: list[tuple[float, int]], stop: threading.Event) -> None:
    """Rows written through the site until `stop`: (when the answer came, the row's id) each."""
    while not stop.is_set():
        try:
            answer = http_get(host.address, "/notes/add", timeout=10)
        except OSError:
            continue
        if answer.status == 200:
            results.append((time.monotonic(), int(answer.text)))


def backup_while(host, client, results: list, settle: float, after: float) -> tuple[dict, float, float]:
    """deploy/backup --json while 4 threads run `client(host, results, stop)`, `settle` seconds after
    they began, and `after` seconds more: the snapshot's record, and when the command began and ended."""
    stop = threading.Event()
    threads = [threading.Thread(target=client, args=(host, results, stop)) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(settle)
        started = time.monotonic()
        made = json.loads(host.run("/srv/my_app/current/deploy/backup", "--json", cwd="/", timeout=600).stdout)
        ended = time.monotonic()
        time.sleep(after)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    return made, started, ended


def add_notes(checkout: Checkout, files: dict[str, str]) -> None:
    for name, text in files.items():
        checkout.host.run("mkdir", "-p", f"{checkout.path}/{name.rsplit('/', 1)[0]}")
        checkout.host.write(f"{checkout.path}/{name}", text)


@contextmanager
def notes_page(checkout: Checkout) -> Iterator[None]:
    """For the block: the notes app in the checkout, with its page that writes (/notes/add)."""
    apps = '"django.contrib.staticfiles",'
    settings = checkout.edit("my_app/settings.py", apps, f'{apps}\n    "notes",')
    urls = checkout.edit("my_app/urls.py", "urlpatterns = [\n", "urlpatterns = [\n" + NOTES_ROUTE)
    add_notes(checkout, {**NOTES_APP, **NOTES_VIEWS})
    try:
        yield
    finally:
        checkout.put_back("my_app/settings.py", settings)
        checkout.put_back("my_app/urls.py", urls)
        checkout.host.run("rm", "-r", f"{checkout.path}/notes")


def test_backup_while_rows_are_written_restores_every_row_committed_before_it(checkout: Checkout) -> None:
    host = checkout.host
    with notes_page(checkout):
        output = checkout.installed()
        # Before the notes migration, deploy/install kept the data as it was.
        taken = re.search(r"^migrate: manage\.py migrate: applied notes\.0001_initial; the data before them: (\S+)$",
                          output, re.MULTILINE)  # fmt: skip
        assert taken and host.exists(f"{taken[1]}/snapshot.json"), output
        assert host.run("systemctl", "is-enabled", "my_app-backup.timer").stdout.strip() == "enabled"

        results: list[tuple[float, int]] = []
        snapshot, started, _ = backup_while(host, writer, results, settle=3, after=2)
        before = {row for at, row in results if at < started}
        print(
            f"{host.release}: backup under {len(results)} writes: {snapshot['seconds']}s; {len(before)} rows before it"
        )
        files = snapshot["files"]
        assert len(before) > 50 and (
            "postgresql.dump" in files if on_postgresql(host) else files["state/db.sqlite3"]["integrity"] == "ok"
        ), files

        restored = host.run("/srv/my_app/current/deploy/restore", snapshot["name"], cwd="/", check=False)
        print(f"{host.release}: {restored.stdout.strip().splitlines()[-1]}")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "maintenance: on" in restored.stdout and "maintenance: off" in restored.stdout
        rows = {row for (row,) in sql(host, "select id from notes_note")}
        assert before <= rows, sorted(before - rows)[:10]
        if not on_postgresql(host):
            assert sql(host, "pragma integrity_check") == [["ok"]]
        # What was there is a snapshot too: every row written, the last ones included.
        kept = re.search(r"^kept: what was there, as (\S+)$", restored.stdout, re.MULTILINE)
        assert kept, restored.stdout
        assert host.get("/notes/add").status == 200 and host.get("/healthz").status == 200

        # The daily unit, started as its timer starts it, takes a snapshot of its own.
        host.run("systemctl", "start", "my_app-backup.service")
        listed = host.run("/srv/my_app/current/deploy/backup", "--list", cwd="/").stdout
        database = "postgresql\\.dump" if on_postgresql(host) else "state/db\\.sqlite3"
        assert re.search(rf"/var/backups/my_app/\d{{8}}T\d{{6}}Z-timer: {database}, shared\.tar;", listed), listed


def test_migration_that_fails_halfway_is_undone_by_the_snapshot_taken_before_it(checkout: Checkout) -> None:
    """notes.0002 applies, notes.0003 fails: deploy/install goes back to the running release and
    names the snapshot taken before the migrations; deploy/restore of it puts the database back
    as it was (without 0002), and the running release serves it."""
    host = checkout.host
    with notes_page(checkout):
        checkout.installed()
        running = current(host)
        assert host.get("/notes/add").status == 200
        rows = sql(host, "select count(*) from notes_note")
        add_notes(checkout, BROKEN_MIGRATIONS)
        failed = checkout.install()
        said = failed.stdout + failed.stderr
        assert failed.returncode == 1, said
        restore = re.search(
            r"the database as it was before this run's migrations: sudo (\S+/deploy/restore) (\S+)", said
        )
        assert restore, said
        assert current(host) == running
        applied = sql(host, "select name from django_migrations where app = 'notes'")
        assert ["0002_note_title"] in applied, applied  # half-migrated: 0002 in, 0003 not

        restored = host.run(restore[1], restore[2], cwd="/", check=False)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert sql(host, "select name from django_migrations where app = 'notes'") == [["0001_initial"]]
        assert sql(host, "select count(*) from notes_note") == rows
        assert host.get("/notes/add").status == 200 and current(host) == running


FILL = (
    "from notes.models import Note\n"
    "for _ in range(100):\n"
    "    Note.objects.bulk_create(Note(text='x' * 480) for _ in range(2000))\n"
)


def timed(host, results: list[tuple[float, float, int]], stop: threading.Event) -> None:
    """Requests to a page that reads the database until `stop`: (sent, seconds, status) each."""
    while not stop.is_set():
        sent = time.monotonic()
        try:
            status = http_get(host.address, "/notes/count", timeout=30).status
        except OSError:
            status = 0
        results.append((sent, time.monotonic() - sent, status))


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 99 // 100) - 1)]


def test_measurements_of_a_backup_and_a_restore_of_a_large_database(checkout: Checkout) -> None:
    """A database of about 100 MB (200,000 rows): the snapshot's time and size while 4 clients read
    it, their p99 before and during it, and the restore's time. Printed, not asserted beyond 0 failed."""
    host = checkout.host
    with notes_page(checkout):
        checkout.installed()
        host.run("/srv/my_app/current/deploy/manage", "shell", "-c", FILL, cwd="/", timeout=300)
        results: list[tuple[float, float, int]] = []
        made, started, ended = backup_while(host, timed, results, settle=5, after=1)
        files = made["files"]
        size = (files.get("state/db.sqlite3") or files["postgresql.dump"])["bytes"] / 1024 / 1024
        before = [seconds for sent, seconds, _ in results if started - 5 <= sent < started]
        during = [seconds for sent, seconds, _ in results if started <= sent < ended]
        restored = host.run("/srv/my_app/current/deploy/restore", made["name"], cwd="/", timeout=600)
        took = restored.stdout.strip().splitlines()[-1]
    print(
        f"{host.release}: backup of a {size:.0f} MB database in {made['seconds']:.2f}s ({ended - started:.2f}s with"
        f" the command); p99 of a page reading it {p99(before) * 1000:.0f} ms before ({len(before)} requests),"
        f" {p99(during) * 1000:.0f} ms during ({len(during)}); {took}"
    )
    assert {status for _, _, status in results} == {200}
    assert sql(host, "select count(*) from notes_note")[0][0] >= 200_000


def rows_survive_a_redeploy_a_rollback_and_a_reboot(checkout: Checkout) -> None:
    """With the notes app in the checkout: rows written through the site are all there after a
    redeploy of a new release, a rollback to the one before and a reboot of the server."""
    host = checkout.host
    checkout.installed()
    first = current(host)
    written = [int(host.get("/notes/add").text) for _ in range(20)]
    count = sql(host, "select count(*) from notes_note")[0][0]
    assert count >= 20
    views = checkout.edit("my_app/views.py", '"""', '"""A redeploy: one more line.\n')
    try:
        checkout.installed()
        assert current(host) != first
        assert host.get("/notes/count").text == str(count)
        checkout.installed("--rollback")
        assert current(host) == first and host.get("/notes/count").text == str(count)
    finally:
        checkout.put_back("my_app/views.py", views)
    host.reboot()
    host.run("systemctl", "is-system-running", "--wait", check=False, timeout=120)
    assert host.get("/notes/count").text == str(count)
    ids = {row for (row,) in sql(host, "select id from notes_note")}
    assert set(written) <= ids
    assert int(host.get("/notes/add").text) > max(written)


def peer_authentication_only(host) -> None:
    """The app's PostgreSQL role has no password, and no file of the server holds one."""
    assert as_postgres(host, "select rolpassword is null from pg_authid where rolname = 'my_app'") == "t"
    env = host.read("/etc/my_app/my_app.env")
    assert "PGHOST=/var/run/postgresql" in env and "PGPASSWORD" not in env, env
    found = host.run("grep", "-rlE", "^\\s*PGPASSWORD\\s*=", "/etc", "/srv/my_app", "/var/lib/my_app", check=False)
    assert found.returncode == 1, found.stdout


def test_rows_written_through_the_site_survive_a_redeploy_a_rollback_and_a_reboot(checkout: Checkout) -> None:
    with notes_page(checkout):
        rows_survive_a_redeploy_a_rollback_and_a_reboot(checkout)


def test_a_load_balancer_collects_the_static_files_without_holding_the_secret_key(checkout: Checkout) -> None:
    """The same checkout as a load balancer on a machine new to the project (after a purge): the
    admin's files are collected and served; the secret key is in no file of the machine outside the
    checkout it came from, logs included."""
    host = checkout.host
    secret = secret_key(host.read(f"{checkout.path}/my_app.env"))
    database_kept = on_postgresql(host)
    purged = checkout.installed("--uninstall", "--purge")
    # 127.0.0.1 stands for an app host; drained, so the health check has none to ask.
    output = checkout.installed("--role", "lb", "--app-host", "127.0.0.1", "--drain", "127.0.0.1")
    assert "collectstatic" in output and not host.exists("/etc/my_app"), output
    css = host.get(ADMIN_CSS)
    assert css.status == 200 and "max-age" in css.headers.get("cache-control", "")
    found = host.run("grep", "-rlF", "--", secret, "/etc", "/srv", "/var", "/tmp", "/run", check=False)
    assert found.returncode == 1 and not found.stdout, found.stdout + found.stderr
    # The purge said where the snapshots of the app's data are, and left them.
    assert "/var/backups/my_app (snapshots of the app's data; rm -r it yourself" in purged, purged
    if database_kept:
        # PostgreSQL's database too: kept, with the commands that drop it.
        drop = "sudo -u postgres dropdb my_app && sudo -u postgres dropuser my_app"
        assert f"PostgreSQL's role my_app and database my_app (the app's data; once not needed: {drop})" in purged
        assert as_postgres(host, "select count(*) from pg_database where datname = 'my_app'") == "1"
    assert host.run("find", "/var/backups/my_app", "-name", "snapshot.json").stdout.count("\n") >= 3
