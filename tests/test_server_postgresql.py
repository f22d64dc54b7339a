"""PostgreSQL for several app hosts: three app hosts, a db host and a load balancer, booted Debian 13
on a private network, converged over ssh by the project's own playbooks (database=postgresql).

The app hosts share one database: rows written through one are read through the others; a rolling
update that carries a migration runs it once, on the first app host, before any host switches,
under paced load with no failed request; the db host admits the app hosts only; the app's
connections stay under max_connections at full load. The last host then installs the same project
as a whole server, on Debian 13's PostgreSQL with peer authentication (test_server_django.py does
that on Debian 12, with every other Django test).

The tests run in order on one set of hosts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import Host, Lab, copy_project, http_get, load
from test_server_ansible import Cluster, booted_cluster
from test_server_django import (
    NOTES_APP,
    NOTES_ROUTE,
    NOTES_VIEWS,
    as_postgres,
    peer_authentication_only,
    rows_survive_a_redeploy_a_rollback_and_a_reboot,
)

RELEASE = "trixie"
APPS = ["app1", "app2", "app3"]
# The second migration of the notes app: a column the release before can live with (nullable: its
# inserts name no title), as the expand/contract rule in the generated README asks.
TITLE_MIGRATION = {
    "notes/migrations/0002_note_title.py": (
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        '    dependencies = [("notes", "0001_initial")]\n'
        '    operations = [migrations.AddField("note", "title", models.CharField(max_length=50, null=True))]\n'
    ),
}
MODEL_WITH_TITLE = (
    "from django.db import models\n\n\nclass Note(models.Model):\n"
    "    text = models.CharField(max_length=500)\n"
    "    title = models.CharField(max_length=50, null=True)\n"
)
ENV_FILE = "/etc/my_app/my_app.env"


def add_files(project: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def in_my_app(host: Host, query: str) -> str:
    """A query's answer in the app's database, asked as PostgreSQL's own account."""
    return as_postgres(host, query, "my_app")


def env_settings(host: Host) -> dict[str, str]:
    return dict(line.split("=", 1) for line in host.read(ENV_FILE).splitlines() if line.startswith("PG"))


def release_id(cluster: Cluster) -> str:
    """The id of the release the controller built last (deploy/release --json)."""
    made = cluster.project.run(str(cluster.project.path / "deploy" / "release"), "--json", check=True)
    return json.loads(made.stdout)["id"]


def direct(host: Host, path: str) -> str:
    """A page from an app host's own gunicorn, on its private address (no load balancer)."""
    answer = http_get(host.address, path, port=8081)
    assert answer.status == 200, answer
    return answer.text.strip()


@pytest.fixture(scope="module")
def cluster(lab: Lab, server_project, tmp_path_factory) -> Iterator[Cluster]:
    project = server_project(RELEASE, framework="django", database="postgresql")
    # The notes app: a page that writes a row (/notes/add) and one that counts them (/notes/count).
    add_files(project.path, {**NOTES_APP, **NOTES_VIEWS})
    apps = '"django.contrib.staticfiles",'
    edit(project.path / "my_app" / "settings.py", apps, f'{apps}\n    "notes",')
    edit(project.path / "my_app" / "urls.py", "urlpatterns = [\n", "urlpatterns = [\n" + NOTES_ROUTE)
    groups = {"app": APPS, "lb": ["lb"], "db": ["db1"], "other": ["other"]}
    with booted_cluster(lab, project, groups, tmp_path_factory.mktemp("ansible"), RELEASE) as cluster:
        yield cluster


def test_site_sets_up_the_db_host_and_every_app_host_uses_it(cluster: Cluster) -> None:
    played = cluster.play("site.yml")
    print(f"site.yml, 3 app hosts, a db host and a load balancer: {played.seconds:.1f}s")
    assert played.returncode == 0, str(played)
    db, lb = cluster.hosts["db1"], cluster.lb
    password = db.read("/etc/my_app-db/password").strip()
    assert db.run("stat", "-c", "%U %a", "/etc/my_app-db/password").stdout.split() == ["root", "600"]
    for name in APPS:
        host = cluster.hosts[name]
        assert env_settings(host) == {
            "PGHOST": db.address,
            "PGDATABASE": "my_app",
            "PGUSER": "my_app",
            "PGPASSWORD": password,
        }
        assert host.run("stat", "-c", "%a", ENV_FILE).stdout.strip() == "600"
    # The load balancer knows nothing of the database: no env file, no password anywhere.
    assert not lb.exists("/etc/my_app")
    found = lb.run("grep", "-rlF", "--", password, "/etc", "/srv", "/var/lib", check=False)
    assert found.returncode == 1, found.stdout
    # The role's password is stored as a SCRAM verifier, and the app hosts are admitted by address.
    assert in_my_app(db, "select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname = 'my_app'") == "t"
    hba = in_my_app(db, "select string_agg(address, ' ' order by line_number) from pg_hba_file_rules "
                          "where 'my_app' = any(database) and auth_method = 'scram-sha-256'")  # fmt: skip
    assert hba.split() == [cluster.hosts[name].address for name in APPS], hba
    # Run again (as every converge runs it), deploy/db-host finds everything as it should be.
    again = db.run(f"/var/lib/my_app-releases/{release_id(cluster)}/deploy/db-host", "--json", "--listen", db.address,
                   *(f"--client={cluster.hosts[name].address}" for name in APPS))  # fmt: skip
    assert json.loads(again.stdout)["changed"] is False, again.stdout


def test_rows_written_through_one_app_host_are_read_through_the_others(cluster: Cluster) -> None:
    first, *others = (cluster.hosts[name] for name in APPS)
    before = int(direct(first, "/notes/count"))
    written = [int(direct(first, "/notes/add")) for _ in range(5)]
    assert len(set(written)) == 5
    for host in others:
        assert int(direct(host, "/notes/count")) == before + 5
    # A Django user made on one app host logs in on another: one auth table.
    made = cluster.hosts["app3"].run(
        "/srv/my_app/current/deploy/manage", "shell", "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('ada', password='a long passphrase')",
        cwd="/",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    login = "from django.contrib.auth import authenticate as a; print(a(username='ada', password='a long passphrase'))"
    checked = first.run("/srv/my_app/current/deploy/manage", "shell", "-c", login, cwd="/")
    assert checked.stdout.strip().splitlines()[-1] == "ada", checked.stdout + checked.stderr


def test_only_the_app_hosts_reach_the_database(cluster: Cluster) -> None:
    db = cluster.hosts["db1"]
    password = db.read("/etc/my_app-db/password").strip()
    connect = ["psql", "-XAt", "-c", "select current_user"]
    settings = {"PGHOST": db.address, "PGDATABASE": "my_app", "PGUSER": "my_app", "PGPASSWORD": password,
                "PGCONNECT_TIMEOUT": "5"}  # fmt: skip
    # Another host of the private network, with the right password, finds no rule that admits it.
    refused = cluster.hosts["other"].run(*connect, env=settings, check=False)
    assert refused.returncode != 0 and "no pg_hba.conf entry" in refused.stderr, refused.stderr
    # An app host, with the settings of its env file, is admitted.
    app = cluster.hosts["app2"]
    admitted = app.run(*connect, env=env_settings(app), check=False)
    assert admitted.returncode == 0 and admitted.stdout.strip() == "my_app", admitted.stderr


def test_a_rolling_update_with_a_migration_runs_it_once_before_any_host_switches(cluster: Cluster) -> None:
    project = cluster.project.path
    add_files(project, TITLE_MIGRATION)
    (project / "notes" / "models.py").write_text(MODEL_WITH_TITLE)
    with load(cluster.lb.address, path="/notes/count", seconds=300, max_requests=60000) as seen:
        time.sleep(0.5)
        played = cluster.play("rolling.yml")
        time.sleep(0.5)
    print(f"rolling.yml with a migration, 3 app hosts on one database, under load: {played.seconds:.1f}s; {seen}")
    assert played.returncode == 0, str(played)
    assert seen.failed == 0 and seen.sent > 100, seen
    # The play says which migrations ran, once: the first app host's run applied them.
    assert played.output.count("migrate: manage.py migrate: applied notes.0002_note_title") == 1, str(played)
    db = cluster.hosts["db1"]
    ran = in_my_app(db, "select count(*) from django_migrations where app = 'notes' and name = '0002_note_title'")
    assert ran == "1"
    applied = float(in_my_app(db, "select extract(epoch from applied) from django_migrations "
                                    "where name = '0002_note_title'"))  # fmt: skip
    for name in APPS:
        host = cluster.hosts[name]
        # Every host switched after the migration was applied (the current link's time).
        switched = float(host.run("stat", "-c", "%Y", "/srv/my_app/current").stdout)
        assert switched >= int(applied), (name, switched, applied)
        releases = json.loads(host.read("/var/lib/my_app-install/releases.json"))
        running = host.run("readlink", "/srv/my_app/current").stdout.strip().removeprefix("releases/")
        entry = next(entry for entry in releases["releases"] if entry["id"] == running)
        # Recorded where it ran: on the first app host only.
        assert entry["migrations"] == (["notes.0002_note_title"] if name == "app1" else []), (name, entry)
    assert int(direct(cluster.hosts["app3"], "/notes/add")) > 0


def test_connections_stay_under_max_connections_at_full_load(cluster: Cluster) -> None:
    db = cluster.hosts["db1"]
    limit = int(in_my_app(db, "show max_connections"))
    counts: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            counts.append(int(in_my_app(db, "select count(*) from pg_stat_activity where usename = 'my_app'")))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        # More clients than the three hosts have workers: every worker busy, each with its connection.
        with load(cluster.lb.address, path="/notes/add", seconds=8, max_requests=20000, concurrency=32) as seen:
            time.sleep(8)
    finally:
        stop.set()
        sampler.join(timeout=30)
    workers = int(cluster.hosts["app1"].run("nproc").stdout) * 2 + 1
    print(f"full load, {seen}: connections to my_app at most {max(counts)} (limit {limit}, {len(APPS)} x {workers})")
    assert seen.failed == 0 and seen.sent > 100, seen
    assert max(counts) <= len(APPS) * workers + 2 < limit, counts
    assert max(counts) >= len(APPS), counts


def test_a_whole_server_keeps_its_rows_in_its_own_postgresql_with_peer_authentication(cluster: Cluster) -> None:
    """The same project on one machine (Debian 13's PostgreSQL): deploy/install makes the role and
    the database there, with no password; rows survive a redeploy, a rollback and a reboot."""
    host = cluster.hosts["other"]
    checkout = copy_project(host, cluster.project.path, "/root/my_app")
    rows_survive_a_redeploy_a_rollback_and_a_reboot(checkout)
    peer_authentication_only(host)
