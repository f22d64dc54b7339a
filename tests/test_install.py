"""deploy/install: staged installs (--root) and dry runs of the baked project, on real files.

Nothing here touches this machine's services: --root stages the server's tree in a temporary
folder and records the commands the server would run, and the staged files are validated by the
staged copy of deploy/check (real nginx -t and systemd-analyze on them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import Baked, require_tool

RECORD = "var/lib/my_app-install/commands.log"
# A block of the record starts with its time: "# 2025-01-31 12:00:00 UTC: deploy/install".
BLOCK = re.compile(r"^# \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: .*$", re.MULTILINE)
USERADD = "useradd --system --user-group --no-create-home --home-dir /srv/my_app --shell /usr/sbin/nologin my_app"


@pytest.fixture
def tools() -> None:
    """The staged files are validated with the real nginx and systemd-analyze."""
    require_tool("nginx", "apt-get install nginx")
    require_tool("systemd-analyze", "apt-get install systemd")


def install(project: Baked, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return project.run(sys.executable, "deploy/install", "--root", str(root), *args)


def installed(project: Baked, root: Path, *args: str) -> str:
    result = install(project, root, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def steps(output: str) -> dict[str, str]:
    """Each step's one line of progress: {"app": "1 updated (my_app/app.py)", ...}."""
    return dict(re.findall(r"^(\w+): (.*)$", output, re.MULTILINE))


def last_line(output: str) -> str:
    return output.strip().splitlines()[-1]


def blocks(root: Path) -> list[list[str]]:
    """The commands recorded by each run, oldest first."""
    text = (root / RECORD).read_text()
    return [[line for line in block.splitlines() if line] for block in BLOCK.split(text)[1:]]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type, mode, owner and, for files, content and mtime."""
    found: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        meta = (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
        if path.is_symlink():
            found[f"/{path.relative_to(root)}"] = ("link", os.readlink(path), *meta)
        elif path.is_dir():
            found[f"/{path.relative_to(root)}"] = ("dir", *meta)
        else:
            found[f"/{path.relative_to(root)}"] = ("file", path.read_bytes(), info.st_mtime_ns, *meta)
    return found


def release(root: Path) -> Path:
    """The folder of the release the staged server's current link names."""
    current = root / "srv/my_app/current"
    return current.parent / os.readlink(current)


def release_id(output: str) -> str:
    """The release a run installed, as its release step names it."""
    return steps(output)["release"].split(":")[0].split()[0]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def position(block: list[str], command: str) -> int:
    matches = [index for index, line in enumerate(block) if line.startswith(command)]
    assert matches, f"{command!r} not recorded in {block}"
    return matches[0]


@pytest.fixture(scope="module")
def staged(baked: Baked, tmp_path_factory) -> tuple[Path, str]:
    """The default project staged once into a fresh tree; read-only for the tests using it."""
    require_tool("nginx", "apt-get install nginx")
    root = tmp_path_factory.mktemp("server")
    return root, installed(baked, root)


COMMON_PATHS = {
    "/srv/my_app": ("dir", 0o755),
    "/srv/my_app/releases": ("dir", 0o750),
    "/srv/my_app/venvs": ("dir", 0o755),
    "/srv/my_app/current": ("link", 0o777),
    "/srv/my_app/shared": ("dir", 0o750),
    "/srv/my_app/static": ("dir", 0o755),
    "/srv/my_app/static/style.css": ("file", 0o644),
    "/srv/my_app/errors": ("dir", 0o755),
    "/srv/my_app/errors/50x.html": ("file", 0o644),
    "/etc/my_app": ("dir", 0o750),
    "/etc/my_app/my_app.env": ("file", 0o600),
    "/etc/systemd/system/my_app.service": ("file", 0o644),
    "/etc/systemd/system/my_app.socket": ("file", 0o644),
    "/etc/nginx/snippets/my_app": ("dir", 0o755),
    "/etc/nginx/snippets/my_app/proxy.conf": ("file", 0o644),
    "/etc/nginx/snippets/my_app/security-headers.conf": ("file", 0o644),
}
# In the release's folder, releases/<id>.
RELEASE_PATHS = {
    "": ("dir", 0o750),
    "/wsgi.py": ("file", 0o640),
    "/gunicorn.conf.py": ("file", 0o640),
    "/requirements.txt": ("file", 0o640),
    "/my_app": ("dir", 0o750),
    "/my_app/app.py": ("file", 0o640),
    "/deploy/install": ("file", 0o750),
    "/deploy/setup-venv": ("file", 0o750),
    "/venv": ("link", 0o777),
}
PLATFORM_PATHS = {
    "debian-12": {
        "/etc/nginx/sites-available/my_app.conf": ("file", 0o644),
        "/etc/nginx/sites-enabled/my_app.conf": ("link", 0o777),
    },
    "rhel-9": {"/etc/nginx/conf.d/my_app.conf": ("file", 0o644)},
}


@pytest.mark.parametrize("platform", ["debian-12", "rhel-9"])
def test_staged_install_lays_out_the_server_as_the_platform_expects(bake, tools, tmp_path, platform) -> None:
    project = bake(platform=platform)
    # What a working copy holds besides the project: none of it may reach the server.
    leftovers = ["env/pyvenv.cfg", "env/bin/python", ".run-local.json", "my_app/__pycache__/app.cpython-311.pyc"]
    for name in [*leftovers, "settings.env"]:
        (project.path / name).parent.mkdir(parents=True, exist_ok=True)
        (project.path / name).write_text("left behind\n")
    root = tmp_path / "server"
    output = installed(project, root)
    tree = snapshot(root)

    expected = {**COMMON_PATHS, **PLATFORM_PATHS[platform]}
    here = f"/srv/my_app/releases/{release_id(output)}"
    expected |= {here + path: kind for path, kind in RELEASE_PATHS.items()}
    assert {path: (tree[path][0], tree[path][-3]) for path in expected if path in tree} == expected
    assert os.readlink(root / "srv/my_app/current") == f"releases/{release_id(output)}"
    site = "/etc/nginx/conf.d/my_app.conf" if platform == "rhel-9" else "/etc/nginx/sites-available/my_app.conf"
    assert (root / site.lstrip("/")).read_bytes() == (project.path / "deploy/nginx/my_app.conf").read_bytes()
    if platform == "debian-12":
        link = root / "etc/nginx/sites-enabled/my_app.conf"
        assert os.readlink(link) == "../sites-available/my_app.conf" and link.resolve() == root / site.lstrip("/")
    else:
        assert not (root / "etc/nginx/sites-enabled").exists() and not (root / "etc/nginx/sites-available").exists()
    for unit in ("my_app.service", "my_app.socket"):
        placed = root / "etc/systemd/system" / unit
        assert placed.read_bytes() == (project.path / "deploy/systemd" / unit).read_bytes()

    # The release holds the project's files, and neither its tests, venvs, caches, secrets nor dotfiles.
    wanted = {
        path.relative_to(project.path).as_posix()
        for path in project.path.rglob("*")
        if path.is_file()
        and not {"tests", "env", "__pycache__"} & set(path.relative_to(project.path).parts)
        and not any(part.startswith(".") or part.endswith(".env") for part in path.relative_to(project.path).parts)
    }
    app = release(root)
    assert {p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file()} == wanted
    venv = f"../../venvs/{steps(output)['venv'].split(':')[0].rsplit('/', 1)[1]}"
    assert os.readlink(app / "venv") == venv
    assert "wsgi.py" in wanted and "deploy/deploytools/layout.py" in wanted and "README.md" in wanted
    assert not [name for name in leftovers if name in wanted]

    # Every folder nginx reads from is in the tree where the site says.
    site_text = (root / site.lstrip("/")).read_text()
    for folder in re.findall(r"^\s*(?:alias|root) (/\S+?)/?;", site_text, re.MULTILINE):
        assert (root / folder.lstrip("/")).is_dir(), folder

    # The target's accounts do not exist here: files belong to whoever staged them, and the record
    # creates the user and hands the code to its group.
    assert {entry[-2] for entry in tree.values()} == {os.geteuid()}
    first = blocks(root)[0]
    assert first[:4] == [
        USERADD,
        "chown -R root:my_app /srv/my_app/releases",
        "chown -R my_app:my_app /srv/my_app/shared",
        f"chown -R root:my_app {here}",
    ]
    labels = [line for line in first if line.startswith(("semanage", "restorecon"))]
    if platform == "rhel-9":
        assert labels == [
            "semanage fcontext --add --type httpd_sys_content_t '/srv/my_app/static(/.*)?'",
            "semanage fcontext --add --type httpd_sys_content_t '/srv/my_app/errors(/.*)?'",
            "restorecon -R /srv/my_app/static /srv/my_app/errors",
        ]
        assert f"env PYTHON=python3.11 {here}/deploy/setup-venv /srv/my_app/{venv.removeprefix('../../')}" in first
    else:
        assert labels == [] and "selinux" not in steps(output)
    assert last_line(output).startswith(f"install: staged under {root}:")


def test_staged_install_records_commands_in_the_order_the_server_needs(staged) -> None:
    root, output = staged
    first = blocks(root)[0]
    here = f"/srv/my_app/releases/{release_id(output)}"
    venv = steps(output)["venv"].split(":")[0]
    assert venv.startswith("/srv/my_app/venvs/")
    order = [
        USERADD,
        "chown -R root:my_app /srv/my_app/releases",
        "chown -R my_app:my_app /srv/my_app/shared",
        f"chown -R root:my_app {here}",
        f"env PYTHON=python3 {here}/deploy/setup-venv {venv}",
        "nginx -t",
        "systemd-analyze verify --man=no my_app.socket my_app.service my_app-backup.timer my_app-backup.service",
        "systemctl daemon-reload",
        "systemctl enable my_app.socket my_app.service my_app-backup.timer",
        "systemctl start my_app.socket my_app.service my_app-backup.timer",
        "systemctl enable nginx.service",
        "systemctl reload-or-restart nginx.service",
    ]
    assert first == order
    assert steps(output)["validate"].startswith("deploy/check passed on the staged files (python ok,")


def test_secrets_file_is_created_0600_with_settings_commented_out(staged) -> None:
    root, output = staged
    env = root / "etc/my_app/my_app.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "etc/my_app").stat().st_mode) == 0o750
    lines = env.read_text().splitlines()
    assert "# WEB_CONCURRENCY=5" in lines and all(line.startswith("#") for line in lines)
    assert steps(output)["env"] == "/etc/my_app/my_app.env created (0600, settings commented out)"


def test_second_run_changes_nothing_and_says_so(baked: Baked, tools, tmp_path: Path) -> None:
    root = tmp_path / "server"
    installed(baked, root)
    before = snapshot(root)

    output = installed(baked, root)

    assert snapshot(root) == before
    assert last_line(output) == "install: nothing changed"
    found = steps(output)
    for name in ("dirs", "static", "errors", "systemd", "nginx"):
        assert found[name] == "unchanged", name
    assert found["release"].endswith(" running")
    assert found["venv"].endswith("(requirements.txt and Python unchanged: reused)")
    assert found["validate"] == "nothing changed, nothing to validate"
    assert len(blocks(root)) == 1


def test_dry_run_lists_every_action_and_changes_nothing(baked: Baked, tools, tmp_path: Path) -> None:
    root = tmp_path / "server"
    output = installed(baked, root, "--dry-run")
    assert not root.exists()
    made = r"^  would create /srv/my_app/releases/\w{12} \(the release: \d+ files, root:my_app 0750\)$"
    assert re.search(made, output, re.MULTILINE)
    assert "  would create /srv/my_app/current -> releases/" in output
    assert "  would create /etc/my_app/my_app.env (root:root 0600)" in output
    assert "  would link" not in output and "  would create /etc/nginx/sites-enabled/my_app.conf -> " in output
    assert "  would record: systemctl daemon-reload" in output
    assert steps(output)["validate"] == "skipped (dry run: nothing was placed to validate)"
    assert last_line(output).startswith("install: dry run, nothing changed; a real run would make ")

    installed(baked, root)
    before = snapshot(root)
    again = installed(baked, root, "--dry-run")
    assert snapshot(root) == before
    assert last_line(again) == "install: nothing would change"


def test_code_change_is_a_new_release_beside_the_old_one_and_reloads_gracefully(bake, tools, tmp_path: Path) -> None:
    project = bake()
    root = tmp_path / "server"
    first = release_id(installed(project, root))
    env = root / "etc/my_app/my_app.env"
    env.write_text("DATABASE_URL=postgres://secret\n")
    app = project.path / "my_app/app.py"
    old = app.read_bytes()
    app.write_text(app.read_text() + "\n# release 2\n")

    output = installed(project, root)

    second = release_id(output)
    assert second != first and release(root).name == second
    assert (release(root) / "my_app/app.py").read_bytes() == app.read_bytes()
    # The previous release is kept as it was, for a rollback; both share the venv.
    assert (root / f"srv/my_app/releases/{first}/my_app/app.py").read_bytes() == old
    assert os.readlink(root / f"srv/my_app/releases/{first}/venv") == os.readlink(release(root) / "venv")
    assert steps(output)["venv"].endswith("(requirements.txt and Python unchanged: reused)")
    log = json.loads((root / "var/lib/my_app-install/releases.json").read_text())
    assert [entry["id"] for entry in log["releases"]] == [first, second]
    commands = blocks(root)[-1]
    assert "systemctl reload my_app.service" in commands
    assert not [line for line in commands if "restart" in line or "daemon-reload" in line or "nginx.service" in line]
    # The env file is never written again, whatever the run.
    assert env.read_text() == "DATABASE_URL=postgres://secret\n"
    assert steps(output)["env"] == "/etc/my_app/my_app.env kept (never overwritten)"


@pytest.mark.parametrize(
    "file, old, new, reason",
    [
        (
            "deploy/nginx/my_app.conf",
            "server_tokens off;",
            "server_tokens off;\n    bogus_directive on;",
            'unknown directive "bogus_directive"',
        ),
        (
            "deploy/systemd/my_app.service",
            "ProtectSystem=strict",
            "ProtectSystem=bogus",
            "Failed to parse protect system value",
        ),
    ],
    ids=["nginx-site", "systemd-unit"],
)
def test_failed_validation_restores_every_file(bake, tools, tmp_path: Path, file, old, new, reason) -> None:
    project = bake()
    root = tmp_path / "server"
    installed(project, root)
    before = snapshot(root)
    app = project.path / "my_app/app.py"
    app.write_text(app.read_text() + "\n# release 2\n")
    edit(project.path / file, old, new)

    result = install(project, root)

    assert result.returncode == 1
    assert snapshot(root) == before, "the staged tree is not as it was"
    assert reason in result.stdout
    found = steps(result.stdout)
    assert found["validate"].startswith("FAILED: deploy/check rejects the staged files:")
    # The new release's folder goes with the rest of the run.
    assert re.fullmatch(r"\d+ restored from backup, 1 created by this run removed", found["rollback"])
    assert last_line(result.stdout).startswith("install: failed at validate: deploy/check rejects the staged files")
    assert last_line(result.stdout).endswith("; rolled back, the previous version is back in place")


def test_failed_first_install_leaves_nothing_behind(bake, tools, tmp_path: Path) -> None:
    project = bake()
    edit(project.path / "deploy/nginx/my_app.conf", "server_tokens off;", "server_tokens off;\n    bogus_directive on;")
    root = tmp_path / "server"

    result = install(project, root)

    assert result.returncode == 1
    assert list(root.iterdir()) == []
    assert re.fullmatch(r"0 restored from backup, \d+ created by this run removed", steps(result.stdout)["rollback"])
    assert last_line(result.stdout).endswith("; rolled back, nothing installed")


def test_uninstall_keeps_app_and_secrets_until_purge(baked: Baked, tools, tmp_path: Path) -> None:
    root = tmp_path / "server"
    installed(baked, root)
    env = root / "etc/my_app/my_app.env"
    env.write_text("SECRET=1\n")

    output = installed(baked, root, "--uninstall")

    gone = [
        "etc/nginx/sites-enabled/my_app.conf",
        "etc/nginx/sites-available/my_app.conf",
        "etc/nginx/snippets/my_app",
        "etc/systemd/system/my_app.service",
        "etc/systemd/system/my_app.socket",
    ]
    assert [path for path in gone if (root / path).exists() or (root / path).is_symlink()] == []
    assert (release(root) / "wsgi.py").is_file() and (root / "srv/my_app/static/style.css").is_file()
    assert env.read_text() == "SECRET=1\n"
    [backup] = (root / "srv/my_app/backups").iterdir()
    assert (backup / "etc/systemd/system/my_app.service").is_file()
    assert (backup / "etc/nginx/sites-enabled/my_app.conf").is_symlink()
    assert blocks(root)[-1] == [
        "nginx -t",
        "systemctl reload nginx.service",
        "systemctl disable --now my_app-backup.timer my_app.service my_app.socket",
        "systemctl daemon-reload",
    ]
    assert last_line(output).startswith("uninstall: done:")

    assert last_line(installed(baked, root, "--uninstall")) == "uninstall: nothing to remove"

    # Installed again: the user is there, the units start anew.
    installed(baked, root)
    commands = blocks(root)[-1]
    assert USERADD not in commands
    assert position(commands, "systemctl daemon-reload") < position(commands, "systemctl enable my_app.socket")
    assert position(commands, "systemctl enable my_app.socket") < position(commands, "systemctl start my_app.socket")

    purged = installed(baked, root, "--uninstall", "--purge")
    assert not (root / "srv/my_app").exists() and not (root / "etc/my_app").exists()
    assert not (root / "etc/systemd/system/my_app.service").exists()
    assert blocks(root)[-1][-1] == "userdel my_app"
    assert re.fullmatch(r"removed \d+ path\(s\) the installer made", steps(purged)["purge"])


def test_tcp_instances_on_rhel_allow_nginx_to_connect_and_reload_one_at_a_time(bake, tools, tmp_path: Path) -> None:
    project = bake(platform="rhel-9", bind="tcp", instances="2")
    root = tmp_path / "server"
    installed(project, root)
    first = blocks(root)[0]
    assert "setsebool -P httpd_can_network_connect 1" in first
    assert "systemctl enable my_app@8081.service my_app@8082.service my_app-backup.timer" in first
    assert (root / "etc/systemd/system/my_app@.service").is_file()

    edit(project.path / "my_app/app.py", "def ", "# release 2\ndef ")
    installed(project, root)

    commands = blocks(root)[-1]
    reloads = [line for line in commands if line.startswith("systemctl ")]
    assert reloads == ["systemctl reload my_app@8081.service", "systemctl reload my_app@8082.service"]


def test_django_settings_are_installed_once_and_never_copied_with_the_code(bake, tools, tmp_path: Path) -> None:
    project = bake(framework="django")
    root = tmp_path / "server"
    output = installed(project, root)
    env = root / "etc/my_app/my_app.env"
    assert env.read_bytes() == (project.path / "my_app.env").read_bytes()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert not list(release(root).rglob("*.env"))
    assert (release(root) / "manage.py").is_file()
    collect = [line for line in blocks(root)[0] if "collectstatic" in line]
    here = f"/srv/my_app/releases/{release_id(output)}"
    assert collect == [
        f"{here}/venv/bin/python {here}/deploy/deploytools/envfile.py /etc/my_app/my_app.env"
        f" {here}/venv/bin/python {here}/manage.py collectstatic --noinput"
    ]
    assert steps(output)["env"] == "/etc/my_app/my_app.env created (0600, from my_app.env)"


def test_lets_encrypt_first_install_serves_the_challenge_before_the_https_site(bake, tools, tmp_path: Path) -> None:
    project = bake(tls_mode="letsencrypt")
    root = tmp_path / "server"
    installed(project, root)
    commands = blocks(root)[0]
    site = "/etc/nginx/sites-available/my_app.conf"
    challenge = f"install -m 0644 /srv/my_app/current/deploy/nginx/my_app.acme.conf {site}"
    https = f"install -m 0644 /srv/my_app/current/deploy/nginx/my_app.conf {site}"
    steps_in_order = [
        challenge,
        "nginx -t",
        "systemctl reload-or-restart nginx.service",
        "certbot certonly --webroot --webroot-path /srv/my_app/acme --domain example.com",
        https,
    ]
    positions = [position(commands, command) for command in steps_in_order]
    assert positions == sorted(positions)
    assert commands[-2:] == ["nginx -t", "systemctl reload nginx.service"]
    hook = root / "etc/letsencrypt/renewal-hooks/deploy/my_app-nginx"
    assert stat.S_IMODE(hook.stat().st_mode) == 0o755
    # The staged site is the HTTPS one: the record swaps in the challenge site on the server only.
    site = root / "etc/nginx/sites-available/my_app.conf"
    assert site.read_bytes() == (project.path / "deploy/nginx/my_app.conf").read_bytes()


def test_options_and_refusals(baked: Baked) -> None:
    usage = baked.run(sys.executable, "deploy/install", "--help")
    assert usage.returncode == 0
    for option in ("--dry-run", "--root DIR", "--uninstall", "--purge", "--verbose"):
        assert option in usage.stdout
    purge = baked.run(sys.executable, "deploy/install", "--purge")
    assert purge.returncode == 2 and "--purge goes with --uninstall" in purge.stderr
    slash = baked.run(sys.executable, "deploy/install", "--root", "/")
    assert slash.returncode == 1 and "--root / is this machine itself" in slash.stdout
    inside = baked.run(sys.executable, "deploy/install", "--root", "stage")
    assert inside.returncode == 1 and "inside the project" in inside.stdout
    assert not (baked.path / "stage").exists()


def test_database_host_settings_are_checked_before_they_reach_the_env_file(bake, tmp_path: Path) -> None:
    """--database-host and the password on stdin end up in the env file: a value that could add a
    line of its own there is refused, naming the option; a good one is written, mode 0600."""
    project = bake(framework="django", database="postgresql")
    app = ["--role", "app", "--listen", "10.0.0.11", "--trust", "10.0.0.10"]

    def run(*args: str, password: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "deploy/install", "--root", str(tmp_path / "root"), *args]
        return subprocess.run(command, cwd=project.path, input=password, capture_output=True, text=True, check=False)

    good = "0123456789abcdef0123456789abcdef\n"
    cases = [
        ((*app, "--database-host", "10.0.0.20\nPGHOST=evil"), good, "the db host's IP address"),
        ((*app, "--database-host", "db.example.com"), good, "the db host's IP address"),
        ((*app, "--database-host", "10.0.0.20"), "short\n", "16 or more of"),
        ((*app, "--database-host", "10.0.0.20"), "0123456789abcdef'\"$x\n", "16 or more of"),
        (("--database-host", "10.0.0.20"), good, "--database-host goes with --role app"),
    ]
    for args, password, said in cases:
        refused = run(*args, password=password)
        assert refused.returncode == 2 and said in refused.stderr, (args, refused.stderr)
        assert not (tmp_path / "root").exists()
    staged = run(*app, "--database-host", "10.0.0.20", "--database-clients", "3", password=good)
    assert staged.returncode == 0, staged.stdout + staged.stderr
    env = tmp_path / "root/etc/my_app/my_app.env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = env.read_text()
    for line in ("PGHOST=10.0.0.20", "PGDATABASE=my_app", "PGUSER=my_app", f"PGPASSWORD={good.strip()}"):
        assert f"\n{line}\n" in text, text
    assert "connection not tried (--root: nothing runs in a staged tree)" in steps(staged.stdout)["database"]


def test_install_without_root_refuses_before_changing_anything(baked: Baked) -> None:
    if os.geteuid() != 0:
        result = baked.run(sys.executable, "deploy/install")
    else:
        # As root, run it as nobody from a copy nobody can read.
        copy = Path("/tmp") / f"install-as-nobody-{os.getpid()}"
        shutil.copytree(baked.path, copy)
        try:
            subprocess.run(["chown", "-R", "nobody", str(copy)], check=True)
            nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env"]
            result = subprocess.run(
                [*nobody, sys.executable, "deploy/install"],
                cwd=copy,
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            shutil.rmtree(copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "preflight: FAILED: not running as root: sudo deploy/install" in result.stdout
    assert last_line(result.stdout) == "install: nothing changed"


# Safety: what the installer may touch, and what it leaves -------------------------------------
def refused(project: Baked, root: Path, *args: str) -> str:
    result = install(project, root, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_install_folder_that_is_a_system_location_is_refused(baked: Baked, tmp_path: Path) -> None:
    # A project made before the bake-time rule, or edited by hand: the installer checks it again.
    project = Baked(tmp_path / "project", baked.answers)
    shutil.copytree(baked.path, project.path)
    edit(project.path / "deploy/deploytools/layout.py", 'INSTALL_DIR = "/srv/my_app"', 'INSTALL_DIR = "/var/lib"')
    root = tmp_path / "server"
    write(root / "var/lib/dpkg/status", "Package: libc6\n")
    before = snapshot(root)

    output = refused(project, root)

    assert "install folder /var/lib is a system location or holds one" in output
    assert last_line(output) == "install: nothing changed"
    assert snapshot(root) == before


def test_purge_removes_only_what_the_installer_made_and_names_what_it_leaves(baked: Baked, tools, tmp_path) -> None:
    root = tmp_path / "server"
    installed(baked, root)
    theirs = [
        write(root / "srv/my_app/uploads/photo.jpg", "a user's upload\n"),
        write(root / "etc/my_app/notes.txt", "the operator's notes\n"),
        write(root / "etc/nginx/sites-available/other.conf", "server {}\n"),
    ]
    changed = root / "srv/my_app/static/style.css"
    changed.write_text("/* edited on the server */\n")
    os.chmod(root / "srv", 0o711)  # a folder the installer did not create keeps its mode

    output = installed(baked, root, "--uninstall", "--purge")

    assert [path.read_text() for path in theirs] == ["a user's upload\n", "the operator's notes\n", "server {}\n"]
    assert changed.read_text() == "/* edited on the server */\n"
    assert stat.S_IMODE((root / "srv").stat().st_mode) == 0o711
    assert not (root / "srv/my_app/app").exists() and not (root / "etc/my_app/my_app.env").exists()
    assert not (root / "etc/systemd/system/my_app.service").exists()
    left = output.split("uninstall: left in place:\n", 1)[1]
    assert "/srv/my_app/static/style.css (changed since it was installed)" in left
    assert "/etc/my_app (holds files deploy/install did not place)" in left
    assert blocks(root)[-1][-1] == "userdel my_app"


def test_existing_unit_folder_and_account_are_refused_unless_adopted(baked: Baked, tools, tmp_path) -> None:
    root = tmp_path / "server"
    write(root / "etc/systemd/system/my_app.service", "[Service]\nExecStart=/usr/bin/true\n")
    write(root / "etc/my_app/settings.conf", "key=value\n")
    write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/bash\nmy_app:x:998:998::/srv/my_app:/usr/sbin/nologin\n")
    write(root / "etc/group", "root:x:0:\nmy_app:x:998:\n")
    before = snapshot(root)

    output = refused(baked, root)

    assert "/etc/systemd/system/my_app.service exists and was not made by this installer" in output
    assert "/etc/my_app exists and was not made by this installer" in output
    assert "user my_app exists and was not made by this installer" in output
    assert snapshot(root) == before

    adopted = installed(baked, root, "--adopt")
    assert steps(adopted)["user"] == "my_app exists (taken over with --adopt)"
    assert USERADD not in blocks(root)[0]
    assert (root / "etc/my_app/settings.conf").read_text() == "key=value\n"
    # Purge never deletes an account the installer did not create.
    purged = installed(baked, root, "--uninstall", "--purge")
    assert "user my_app (not created by deploy/install)" in purged
    assert "userdel my_app" not in blocks(root)[-1]


@pytest.mark.parametrize(
    "files, reason",
    [
        ({"usr/lib/systemd/system/my_app.service": "[Service]\n"}, "unit my_app.service is the distribution's"),
        (
            {
                "etc/passwd": "my_app:x:42:42::/srv/my_app:/usr/sbin/nologin\n",
                "etc/group": "shadow:x:42:\n",
            },
            "user my_app is in the privileged group shadow",
        ),
        ({"etc/group": "my_app:x:0:\n"}, "group my_app exists already (privileged)"),
    ],
    ids=["distribution-unit", "privileged-group", "root-group"],
)
def test_distribution_units_and_privileged_accounts_are_refused_even_with_adopt(baked, tmp_path, files, reason):
    root = tmp_path / "server"
    for name, text in files.items():
        write(root / name, text)
    before = snapshot(root)
    assert reason in refused(baked, root, "--adopt")
    assert snapshot(root) == before


def test_unit_program_missing_from_the_server_is_refused_with_the_package(baked: Baked, tmp_path: Path) -> None:
    root = tmp_path / "server"
    (root / "usr/bin").mkdir(parents=True)  # a system image, without procps
    assert "/bin/kill is missing, and my_app.service runs it: apt-get install procps" in refused(baked, root)


def run_until(project: Baked, root: Path, step: str, signum: int, *args: str) -> subprocess.Popen[str]:
    """Start a staged install and send it `signum` once it reports `step` (all files placed)."""
    process = subprocess.Popen(
        [sys.executable, "deploy/install", "--root", str(root), *args],
        cwd=project.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith(f"{step}: "):
            process.send_signal(signum)
            break
    process.wait(timeout=60)
    return process


@pytest.mark.parametrize("first", [False, True], ids=["redeploy", "first-install"])
def test_install_killed_during_validation_is_undone_by_the_next_run(bake, tools, tmp_path: Path, first) -> None:
    project = bake()
    root = tmp_path / "server"
    root.mkdir()
    if not first:
        installed(project, root)
    before = snapshot(root)
    edit(project.path / "my_app/app.py", "def ", "# release 2\ndef ")
    edit(project.path / "deploy/nginx/my_app.conf", "server_tokens off;", "server_tokens off;\n    bogus_directive on;")

    killed = run_until(project, root, "nginx", signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    assert (root / "var/lib/my_app-install/journal").exists()
    # The new release is written whole before the site is placed.
    written = (root / "srv/my_app/releases").glob("*/my_app/app.py")
    assert any(b"release 2" in path.read_bytes() for path in written)

    result = install(project, root)

    assert result.returncode == 1, result.stdout
    assert re.search(r"^recover: install \(pid \d+, .*\) was interrupted: undone \(\d+ restored", result.stdout, re.M)
    assert "not made by this installer" not in result.stdout
    back = "nothing installed" if first else "the previous version is back in place"
    assert last_line(result.stdout).endswith(f"; rolled back, {back}")
    assert steps(result.stdout)["validate"].startswith("FAILED: deploy/check rejects the staged files")
    assert snapshot(root) == before


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_signal_during_install_rolls_it_back_at_once(bake, tools, tmp_path: Path, signum) -> None:
    project = bake()
    root = tmp_path / "server"
    installed(project, root)
    before = snapshot(root)
    edit(project.path / "my_app/app.py", "def ", "# release 2\ndef ")

    process = run_until(project, root, "nginx", signum)

    assert process.returncode == 1
    assert snapshot(root) == before


def test_redeploy_stops_and_removes_units_the_new_version_no_longer_has(bake, tools, tmp_path: Path) -> None:
    root = tmp_path / "server"
    installed(bake(), root)
    assert (root / "etc/systemd/system/my_app.socket").is_file()

    output = installed(bake(bind="tcp"), root)

    assert not (root / "etc/systemd/system/my_app.socket").exists()
    commands = blocks(root)[-1]
    assert position(commands, "systemctl disable --now my_app.socket") < position(commands, "systemctl daemon-reload")
    assert "stop and disable my_app.socket (not in this version)" in steps(output)["systemd"]

    installed(bake(bind="tcp", instances="3"), root)
    assert not (root / "etc/systemd/system/my_app.service").exists()
    assert (root / "etc/systemd/system/my_app@.service").is_file()
    commands = blocks(root)[-1]
    assert "systemctl disable --now my_app.service" in commands
    assert "systemctl enable my_app@8081.service my_app@8082.service my_app@8083.service" in commands


def test_links_in_the_staged_tree_are_never_followed(baked: Baked, tools, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "server"
    (root / "etc/systemd").mkdir(parents=True)
    (root / "etc/systemd/system").symlink_to(outside)

    output = refused(baked, root)
    assert "/etc/systemd/system is a symbolic link" in output and "does not write or remove through links" in output
    assert list(outside.iterdir()) == []

    (root / "etc/systemd/system").unlink()
    installed(baked, root)
    # Purge through a link swapped in after the install: refused, the target untouched.
    static = root / "srv/my_app/static"
    shutil.move(static, outside / "static")
    static.symlink_to(outside / "static")
    result = install(baked, root, "--uninstall", "--purge")
    assert result.returncode == 1 and "/srv/my_app/static is a symbolic link" in result.stdout
    assert (outside / "static/style.css").is_file()


@pytest.mark.parametrize("where", ["my_app/static/leak.txt", "my_app/leak.py"], ids=["static", "app"])
def test_a_link_in_the_project_is_refused_not_copied_as_root(bake, tools, tmp_path: Path, where: str) -> None:
    """A link to a root-only file would be published (static) or handed to the service (app)."""
    project = bake()
    secret = write(tmp_path / "private/x.key", "-----BEGIN PRIVATE KEY-----\n")
    (project.path / where).symlink_to(secret)
    root = tmp_path / "server"
    output = refused(project, root)
    assert f"{project.path / where} is a symbolic link: deploy/install copies no links" in output, output
    assert not list(root.rglob("leak*"))


def test_hidden_files_in_the_static_folder_are_not_published(bake, tools, tmp_path: Path) -> None:
    project = bake()
    write(project.path / "my_app/static/.env.local", "API_TOKEN=secret\n")
    write(project.path / "my_app/static/.git/config", "[core]\n")
    root = tmp_path / "server"
    installed(project, root)
    static = root / "srv/my_app/static"
    assert (static / "style.css").is_file()
    assert [path.name for path in static.rglob(".*")] == []


def test_env_file_of_an_earlier_install_gains_the_settings_a_django_version_needs(bake, tools, tmp_path) -> None:
    root = tmp_path / "server"
    installed(bake(), root)
    env = root / "etc/my_app/my_app.env"
    env.write_text("DATABASE_URL=postgres://secret\n")

    django = bake(framework="django")
    output = installed(django, root)

    lines = env.read_text().splitlines()
    assert lines[0] == "DATABASE_URL=postgres://secret"
    secret = [line for line in (django.path / "my_app.env").read_text().splitlines() if "DJANGO_SECRET_KEY=" in line]
    assert secret and secret[0] in lines
    assert "added DJANGO_SECRET_KEY" in steps(output)["env"]
    assert last_line(installed(django, root)) == "install: nothing changed"


def test_django_migrations_run_as_the_service_user_and_its_data_survives_purge(bake, tools, tmp_path) -> None:
    root = tmp_path / "server"
    output = installed(bake(framework="django"), root)
    state = root / "var/lib/my_app"
    assert state.is_dir() and stat.S_IMODE(state.stat().st_mode) == 0o700
    first = blocks(root)[0]
    here = f"/srv/my_app/releases/{release_id(output)}"
    # The env file is read by the release's reader (systemd's rules), never by a shell running as root.
    with_env = f"{here}/venv/bin/python {here}/deploy/deploytools/envfile.py /etc/my_app/my_app.env"
    migrate = (
        f"{with_env} env STATE_DIRECTORY=/var/lib/my_app PYTHONDONTWRITEBYTECODE=1"
        " setpriv --reuid=my_app --regid=my_app --init-groups"
        f" {here}/venv/bin/python {here}/manage.py migrate --noinput"
    )
    assert migrate in first
    assert "sh -c" not in first and "set -a" not in first
    assert position(first, f"{with_env} {here}/venv/bin/python") < position(first, migrate)
    assert position(first, migrate) < position(first, "systemctl start")
    assert "chown -R my_app:my_app /var/lib/my_app" in first
    assert steps(output)["migrate"] == "manage.py migrate recorded"

    write(state / "db.sqlite3", "data")
    purged = installed(bake(framework="django"), root, "--uninstall", "--purge")
    assert (state / "db.sqlite3").read_text() == "data"
    assert "/var/lib/my_app (the app's data; remove it yourself once it is not needed)" in purged


def run_as_nobody(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """deploy/install as an unprivileged user, from a copy that user owns."""
    if os.geteuid() != 0:
        return subprocess.run([sys.executable, "deploy/install", *args], cwd=project, capture_output=True, text=True)
    copy = Path("/tmp") / f"install-as-nobody-{os.getpid()}"
    shutil.copytree(project, copy)
    try:
        subprocess.run(["chown", "-R", "nobody", str(copy)], check=True)
        nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--reset-env"]
        return subprocess.run(
            [*nobody, sys.executable, "deploy/install", *args], cwd=copy, capture_output=True, text=True, check=False
        )
    finally:
        shutil.rmtree(copy)


def test_root_folder_the_user_cannot_write_is_refused_without_traceback(baked: Baked) -> None:
    # In /tmp, where the unprivileged user can reach it (pytest's own folders are private).
    base = Path(tempfile.mkdtemp(prefix="install-locked-"))
    locked = base / "locked"
    try:
        base.chmod(0o755)
        locked.mkdir(mode=0o555)
        result = run_as_nobody(baked.path, "--root", str(locked / "server"))
    finally:
        shutil.rmtree(base)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"--root {locked}/server: {locked} cannot be written by user " in result.stdout


def test_dry_run_works_without_root(baked: Baked) -> None:
    require_tool("systemctl", "apt-get install systemd")
    require_tool("nginx", "apt-get install nginx")
    result = run_as_nobody(baked.path, "--dry-run")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "preflight: not root (dry run: what this user may read)" in result.stdout
    assert last_line(result.stdout).startswith("install: dry run, nothing changed; a real run would make ")


def test_port_another_program_listens_on_is_refused_naming_it(bake) -> None:
    require_tool("systemctl", "apt-get install systemd")
    require_tool("nginx", "apt-get install nginx")
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        project = bake(bind="tcp", app_port=str(port))
        result = project.run(sys.executable, "deploy/install", "--dry-run")
    assert result.returncode == 1, result.stdout
    said = result.stdout
    assert f"port {port} is already in use by " in said and f"(pid {os.getpid()}" in said
    assert "cookiecutter <template> --no-input app_port=" in said
    assert last_line(said) == "install: nothing changed"


def test_install_into_an_empty_folder_made_beforehand_is_repeatable(baked: Baked, tools, tmp_path: Path) -> None:
    root = tmp_path / "server"
    (root / "srv/my_app").mkdir(parents=True)
    (root / "etc/my_app").mkdir(parents=True)
    installed(baked, root)
    assert last_line(installed(baked, root)) == "install: nothing changed"
    # Purge leaves the folders it found, emptied of what it made.
    installed(baked, root, "--uninstall", "--purge")
    assert list((root / "srv/my_app").iterdir()) == [] and list((root / "etc/my_app").iterdir()) == []


def test_uninstall_of_an_install_without_manifest_asks_for_adopt(baked: Baked, tools, tmp_path: Path) -> None:
    root = tmp_path / "server"
    installed(baked, root)
    (root / "var/lib/my_app-install/manifest.json").unlink()
    before = snapshot(root)
    result = install(baked, root, "--uninstall", "--purge")
    assert result.returncode == 1 and "run deploy/install --adopt once" in result.stdout
    assert snapshot(root) == before
    installed(baked, root, "--adopt")
    installed(baked, root, "--uninstall", "--purge")
    assert not (root / "srv/my_app").exists()


def test_read_only_target_is_refused_without_traceback(baked: Baked, tmp_path: Path) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(read_only)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a read-only tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        output = refused(baked, read_only / "server")
    finally:
        subprocess.run(["umount", str(read_only)], check=True)
    assert f"--root {read_only}/server is on a read-only file system ({read_only})" in output


def test_cache_is_emptied_after_a_redeploy_and_purged_with_the_sites_logs(bake, tools, tmp_path: Path) -> None:
    """With cache=on, answers of the previous release must not outlive it; purge takes what nginx
    made for this site (its cache, its access logs), and nothing of another site's."""
    project = bake(cache="on")
    root = tmp_path / "server"
    first = installed(project, root)
    assert steps(first)["cache"] == "emptied /var/lib/nginx/my_app-cache (a new release)"
    app = project.path / "my_app/app.py"
    app.write_text(app.read_text() + "\n# release 2\n")
    installed(project, root)
    assert "find /var/lib/nginx/my_app-cache -mindepth 1 -delete" in blocks(root)[-1]
    assert steps(installed(project, root))["cache"] == "same release, cache kept"
    cached = write(root / "var/lib/nginx/my_app-cache/a/bc/entry", "cached answer")
    logs = [write(root / f"var/log/nginx/my_app.access.log{suffix}", "GET /\n") for suffix in ("", ".1", ".2.gz")]
    other = write(root / "var/log/nginx/shop.access.log", "GET /\n")
    purged = installed(project, root, "--uninstall", "--purge")
    assert not cached.exists() and not any(log.exists() for log in logs), purged
    assert other.read_text() == "GET /\n"


def test_load_balancer_cache_goes_with_a_new_release_of_the_app_and_stays_through_drains(
    bake, tools, tmp_path: Path
) -> None:
    """The app runs on other hosts, and no file of the load balancer changes with its code: the
    release it is installed from decides."""
    project = bake(cache="on")
    root = tmp_path / "lb"
    installed(project, root, *LB)
    drained = installed(project, root, *LB, "--drain", "10.0.0.5")
    assert steps(drained)["cache"] == "same release, cache kept"
    app = project.path / "my_app/app.py"
    app.write_text(app.read_text() + "\n# release 2\n")
    release_2 = installed(project, root, *LB)
    assert steps(release_2)["cache"] == "emptied /var/lib/nginx/my_app-cache (a new release)", release_2
    assert "find /var/lib/nginx/my_app-cache -mindepth 1 -delete" in blocks(root)[-1]
    assert not (root / "srv/my_app/app").exists()  # the new release changed no file here


def test_redeploy_keeps_a_file_edited_on_the_server_that_the_new_version_drops(bake, tools, tmp_path: Path) -> None:
    root = tmp_path / "server"
    installed(bake(), root)
    socket_unit = root / "etc/systemd/system/my_app.socket"
    socket_unit.write_text(socket_unit.read_text() + "# tuned on this server\n")

    output = installed(bake(bind="tcp"), root)

    assert socket_unit.read_text().endswith("# tuned on this server\n")
    assert "/etc/systemd/system/my_app.socket (changed since it was installed)" in output
    assert "systemctl disable --now my_app.socket" in blocks(root)[-1]


# Roles: an app host (gunicorn only) and a load balancer (nginx only) ---------------------------
APP = ("--role", "app", "--listen", "10.0.0.5", "--trust", "10.0.0.9", "--trust", "10.0.0.10")
LB = ("--role", "lb", "--app-host", "10.0.0.5", "--app-host", "fd00::6")
SITE = "etc/nginx/sites-available/my_app.conf"
UNITS = "etc/systemd/system"


def upstream_block(site: str) -> list[str]:
    """The lines inside the site's `upstream my_app_app { }` block."""
    found = re.search(r"^upstream my_app_app \{\n(.*?)^\}", site, re.MULTILINE | re.DOTALL)
    assert found, site
    return found.group(1).splitlines()


def manifest(root: Path) -> dict:
    return json.loads((root / "var/lib/my_app-install/manifest.json").read_text())


@pytest.mark.parametrize(
    "answers",
    [{}, {"worker_class": "gthread"}, {"instances": "3"}, {"tls_mode": "existing"}],
    ids=["default", "gthread-keepalive", "three-instances", "tls"],
)
def test_load_balancer_site_lists_each_app_hosts_ports_and_keeps_the_rest(bake, answers) -> None:
    project = bake(**answers)
    code = (
        "import json; from deploytools import layout, nginx; "
        "print(json.dumps(nginx.app_hosts_site(layout.NGINX_SITE.read_text(), ['10.0.0.5', 'fd00::6'], {'fd00::6'})))"
    )
    result = project.run(sys.executable, "-c", code, env={**os.environ, "PYTHONPATH": str(project.path / "deploy")})
    assert result.returncode == 0, result.stderr
    site = json.loads(result.stdout)
    baked = (project.path / "deploy/nginx/my_app.conf").read_text()

    ports = [8081, 8082, 8083] if answers.get("instances") == "3" else [8081]
    servers = [line.strip() for line in upstream_block(site) if line.strip().startswith("server ")]
    assert servers == [f"server 10.0.0.5:{port} max_fails=1 fail_timeout=10s;" for port in ports] + [
        f"server [fd00::6]:{port} max_fails=1 fail_timeout=10s down;" for port in ports
    ]
    comments = [line.strip() for line in upstream_block(site) if line.strip().startswith("#")]
    assert comments[0].startswith("# From deploy/install --role lb --app-host")
    assert any("`down` (--drain)" in line for line in comments)
    # What described the baked servers goes with them; keep-alive stays, with its comments.
    assert "unix:" not in "\n".join(upstream_block(site)) and "max_fails=0" not in site
    kept = [line for line in upstream_block(baked) if "keepalive" in line or "Shorter than" in line]
    assert kept == [line for line in upstream_block(site) if "keepalive" in line or "Shorter than" in line]
    assert bool(kept) == (answers.get("worker_class") == "gthread")
    # Outside the block, nothing changed.
    outside = re.compile(r"^(?:#[^\n]*\n)*upstream my_app_app \{\n.*?^\}\n", re.MULTILINE | re.DOTALL)
    assert outside.sub("", site) == outside.sub("", baked)


@pytest.mark.parametrize(
    ("bind", "instances", "listen"),
    [("unix", "1", "10.0.0.5"), ("unix", "3", "10.0.0.5"), ("tcp", "1", "fd00::5"), ("tcp", "3", "10.0.0.5")],
    ids=["unix", "unix-three-instances", "tcp-ipv6", "tcp-three-instances"],
)
def test_app_host_gets_gunicorn_on_its_private_address_and_no_site(bake, tools, tmp_path, bind, instances, listen):
    project = bake(bind=bind, instances=instances)
    root = tmp_path / "app1"
    output = installed(
        project, root, "--role", "app", "--listen", listen, "--trust", "10.0.0.9", "--trust", "10.0.0.10"
    )

    ports = [8081, 8082, 8083] if instances == "3" else [8081]
    names = [str(port) for port in ports] if bind == "tcp" else ["1", "2", "3"]
    services = [f"my_app@{name}.service" for name in names] if instances == "3" else ["my_app.service"]
    bound = [f"[{listen}]:{port}" if ":" in listen else f"{listen}:{port}" for port in ports]
    for service, address in zip(services, bound, strict=True):
        drop_in = (root / UNITS / f"{service}.d/app-host.conf").read_text()
        assert drop_in.startswith("# Written by deploy/install --role app (from its --listen and --trust addresses)")
        assert f"\nEnvironment=GUNICORN_BIND={address}\n" in drop_in
        assert "\nEnvironment=FORWARDED_ALLOW_IPS=10.0.0.9,10.0.0.10\n" in drop_in
        socket_drop_in = root / UNITS / f"{service.replace('.service', '.socket')}.d/app-host.conf"
        if bind == "unix":
            assert f"\nListenStream=\nListenStream={address}\n" in socket_drop_in.read_text()
        else:
            assert not socket_drop_in.exists()
            assert "After=network-online.target" in drop_in

    # deploy/check's systemd-analyze verify ran on the units with these drop-ins, and nginx -t not at all.
    assert "systemd ok" in steps(output)["validate"] and "nginx" not in steps(output)["validate"]
    record = blocks(root)[0]
    assert "nginx -t" not in record and any(line.startswith("systemd-analyze verify") for line in record)
    assert not (root / SITE).exists() and not (root / "etc/nginx").exists()
    assert not (root / "srv/my_app/static").exists() and not (root / "srv/my_app/errors").exists()
    assert {"static", "errors", "https", "cache"}.isdisjoint(steps(output))
    assert manifest(root)["role"] == {"name": "app", "listen": listen, "trust": ["10.0.0.9", "10.0.0.10"]}

    # Another load balancer: the services restart with the new trust; the sockets keep listening.
    again = installed(project, root, "--role", "app", "--listen", listen, "--trust", "10.0.0.9")
    assert "re-listen" not in steps(again)["activate"] and "restart" in steps(again)["activate"]
    assert (
        "\nEnvironment=FORWARDED_ALLOW_IPS=10.0.0.9\n" in (root / UNITS / f"{services[0]}.d/app-host.conf").read_text()
    )


@pytest.mark.parametrize("framework", ["wsgi", "django"])
def test_load_balancer_gets_nginx_for_the_app_hosts_and_no_units(bake, tools, tmp_path, framework) -> None:
    project = bake(framework=framework, worker_class="gthread")
    root = tmp_path / "lb"
    output = installed(project, root, *LB, "--drain", "fd00::6")

    servers = [line.strip() for line in upstream_block((root / SITE).read_text()) if "server " in line]
    assert servers == [
        "server 10.0.0.5:8081 max_fails=1 fail_timeout=10s;",
        "server [fd00::6]:8081 max_fails=1 fail_timeout=10s down;",
    ]
    assert "keepalive 16;" in (root / SITE).read_text()
    # deploy/check's nginx -t ran on the site as installed (with the app hosts), not the baked one.
    assert "nginx ok" in steps(output)["validate"] and "systemd" not in steps(output)["validate"]
    assert not list((root / UNITS).glob("my_app*")) if (root / UNITS).exists() else True
    record = blocks(root)[0]
    assert not [line for line in record if line.startswith(("useradd", "systemd-analyze", "systemctl start"))]
    assert (root / "srv/my_app/static").is_dir() and (root / "srv/my_app/errors/50x.html").is_file()
    assert {"user", "migrate"}.isdisjoint(steps(output))
    # The app's settings and secrets stay on the app hosts.
    assert not (root / "etc/my_app").exists() and "env" not in steps(output)
    if framework == "django":
        # collectstatic needs the app and its venv, and a secret key that is no secret.
        assert steps(output)["release"].endswith("(for collectstatic only: the app does not run here)")
        assert "venv" in steps(output)
        collectstatic = [line for line in record if "manage.py collectstatic" in line]
        assert collectstatic and collectstatic[0].startswith("env 'DJANGO_SECRET_KEY=collectstatic-only: "), record
        assert f"chown -R root:root /srv/my_app/releases/{release_id(output)}" in record
    else:
        assert not (root / "srv/my_app/releases").exists() and not (root / "srv/my_app/current").exists()
        assert {"release", "venv"}.isdisjoint(steps(output))
    assert manifest(root)["role"] == {"name": "lb", "app_hosts": ["10.0.0.5", "fd00::6"], "drain": ["fd00::6"]}
    assert manifest(root)["active_units"] == []


def test_drain_only_change_touches_only_the_site_and_a_repeat_changes_nothing(baked: Baked, tools, tmp_path) -> None:
    root = tmp_path / "lb"
    installed(baked, root, *LB)
    before = snapshot(root)
    again = installed(baked, root, *LB)
    assert last_line(again) == "install: nothing changed" and snapshot(root) == before

    for drained in (["--drain", "10.0.0.5"], ["--drain", "10.0.0.5", "--drain", "fd00::6"], []):
        output = installed(baked, root, *LB, *drained)
        after = snapshot(root)
        changed = {
            path
            for path in before.keys() | after.keys()
            if before.get(path) != after.get(path) and "/backups" not in path and not path.endswith("commands.log")
        }
        assert changed == {"/etc/nginx/sites-available/my_app.conf", "/var/lib/my_app-install/manifest.json"}, output
        assert blocks(root)[-1] == ["nginx -t", "systemctl reload-or-restart nginx.service"]
        assert "nginx ok" in steps(output)["validate"]  # also with every app host down
        before = after
    site = (root / SITE).read_text()
    assert " down;" not in site


def test_run_without_role_on_an_app_host_is_refused_with_the_command_to_give(baked: Baked, tools, tmp_path) -> None:
    root = tmp_path / "app1"
    installed(baked, root, *APP)
    before = snapshot(root)

    result = install(baked, root)

    assert result.returncode == 1 and snapshot(root) == before
    assert "this machine is installed as an app host (--role app" in result.stdout
    assert "    deploy/install --role app --listen 10.0.0.5 --trust 10.0.0.9 --trust 10.0.0.10\n" in result.stdout
    assert last_line(result.stdout) == "install: nothing changed"
    assert last_line(installed(baked, root, *APP)) == "install: nothing changed"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--role", "app", "--trust", "10.0.0.9"), "--role app needs --listen ADDRESS"),
        (("--role", "app", "--listen", "10.0.0.5"), "--role app needs --trust ADDRESS"),
        (("--role", "app", "--listen", "0.0.0.0", "--trust", "10.0.0.9"), "--listen 0.0.0.0: the wildcard address"),
        (("--role", "app", "--listen", "::", "--trust", "10.0.0.9"), "--listen ::: the wildcard address"),
        (("--role", "app", "--listen", "app1", "--trust", "10.0.0.9"), "--listen app1: not an IPv4 or IPv6 address"),
        (("--role", "lb", "--app-host", "10.0.0.5", "--drain", "10.0.0.6"), "--drain 10.0.0.6: not one of the"),
        (("--role", "lb"), "--role lb needs --app-host ADDRESS"),
        (("--role", "server", "--listen", "10.0.0.5"), "--listen does not go with --role server"),
        (("--role", "server", "--app-host", "10.0.0.5"), "--app-host does not go with --role server"),
        (("--role", "lb", "--app-host", "10.0.0.5", "--trust", "10.0.0.9"), "--trust does not go with --role lb"),
        (("--drain", "10.0.0.5"), "--drain goes with --role lb"),
        (("--role", "lb", "--app-host", "10.0.0.5", "--firewall"), "--firewall does not go with --role lb"),
        (("--firewall",), "--firewall goes with --role app"),
        (("--uninstall", "--role", "app"), "--uninstall removes what the manifest lists"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else None,
)
def test_role_options_that_do_not_fit_are_refused(baked: Baked, tmp_path, args, said) -> None:
    result = install(baked, tmp_path / "server", *args)
    assert result.returncode == 2 and said in result.stderr, result.stderr
    assert not (tmp_path / "server").exists()


def test_an_app_hosts_firewall_admits_the_trusted_addresses_and_goes_with_the_option(baked: Baked, tools, tmp_path):
    root = tmp_path / "host"
    installed(baked, root, *APP, "--trust", "fd00::9", "--firewall")
    unit = (root / "etc/systemd/system/my_app-firewall.service").read_text()
    ruleset = (
        "add table inet my_app; delete table inet my_app; table inet my_app { chain input {"
        " type filter hook input priority filter; policy accept; iifname lo accept;"
        " tcp dport { 8081 } ip saddr { 10.0.0.9, 10.0.0.10 } accept;"
        " tcp dport { 8081 } ip6 saddr { fd00::9 } accept; tcp dport { 8081 } drop; }; }"
    )
    assert f'ExecStart=/usr/sbin/nft "{ruleset}"' in unit
    assert "ExecStop=/usr/sbin/nft delete table inet my_app" in unit
    socket_drop_in = (root / "etc/systemd/system/my_app.socket.d/app-host.conf").read_text()
    assert "Wants=my_app-firewall.service\nAfter=my_app-firewall.service" in socket_drop_in
    recorded = manifest(root)
    assert recorded["role"]["firewall"] is True and "my_app-firewall.service" in recorded["active_units"]
    # Without the option: the unit is stopped (its table goes) and its file removed.
    output = installed(baked, root, *APP)
    assert "stop and disable my_app-firewall.service" in output, output
    assert not (root / "etc/systemd/system/my_app-firewall.service").exists()
    assert "my_app-firewall" not in (root / "etc/systemd/system/my_app.socket.d/app-host.conf").read_text()


def test_converting_between_roles_removes_what_the_new_role_has_not(baked: Baked, tools, tmp_path) -> None:
    root = tmp_path / "host"
    installed(baked, root)
    catch_all = root / "etc/nginx/sites-available/catch-all.conf"
    assert "my_app" in catch_all.read_text()

    to_app = installed(baked, root, *APP)

    assert not (root / SITE).exists() and not (root / "etc/nginx/sites-enabled/my_app.conf").exists()
    assert not catch_all.exists()  # this project was its only user
    assert not (root / "srv/my_app/static").exists()
    assert (root / UNITS / "my_app.socket.d/app-host.conf").is_file()
    record = blocks(root)[-1]
    # The socket binds its new address: its service stops meanwhile, then both start again.
    assert record[record.index("systemctl stop my_app.service") :][:3] == [
        "systemctl stop my_app.service",
        "systemctl restart my_app.socket",
        "systemctl start my_app.service",
    ]
    assert "systemctl reload nginx.service" in record and "nginx -t" in record, to_app

    to_server = installed(baked, root, "--role", "server")
    assert not (root / UNITS / "my_app.socket.d").exists() and not (root / UNITS / "my_app.service.d").exists()
    assert (root / SITE).read_bytes() == (baked.path / "deploy/nginx/my_app.conf").read_bytes()
    assert "my_app" in catch_all.read_text(), to_server
    assert manifest(root)["role"] == {"name": "server"}

    to_lb = installed(baked, root, *LB)
    assert not (root / UNITS / "my_app.service").exists() and not (root / "srv/my_app/app").exists()
    assert "systemctl disable --now my_app.socket my_app.service my_app-backup.timer" in blocks(root)[-1]
    # The app's settings and secrets go with it; a copy stays among the backups, root's alone.
    assert not (root / "etc/my_app").exists(), to_lb
    assert steps(to_lb)["env"].startswith("2 removed (the app does not run here"), to_lb


def test_a_server_that_becomes_a_load_balancer_keeps_an_env_file_edited_on_it(baked: Baked, tools, tmp_path) -> None:
    root = tmp_path / "host"
    installed(baked, root)
    env_file = root / "etc/my_app/my_app.env"
    env_file.write_text(env_file.read_text() + "EXTRA=edited on the server\n")
    to_lb = installed(baked, root, *LB)
    assert "EXTRA=edited on the server" in env_file.read_text()
    assert "/etc/my_app/my_app.env (changed since it was installed)" in to_lb, to_lb


@pytest.mark.parametrize("role", [APP, LB], ids=["app", "lb"])
def test_each_role_dry_runs_and_uninstalls_by_its_manifest(baked: Baked, tools, tmp_path, role) -> None:
    root = tmp_path / "host"
    dry = installed(baked, root, "--dry-run", *role)
    assert not root.exists()
    wanted = "  would create /etc/systemd/system/my_app.service.d/app-host.conf" if role == APP else SITE
    assert wanted in dry
    installed(baked, root, *role)
    assert last_line(installed(baked, root, "--dry-run", *role)) == "install: nothing would change"

    kept = installed(baked, root, "--uninstall")
    assert not list((root / "etc/systemd/system").glob("my_app*")) if role == APP else not (root / SITE).exists()
    assert last_line(kept).startswith("uninstall: done:")
    installed(baked, root, "--uninstall", "--purge")
    left = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "commands.log" not in p.name]
    assert left == []


def test_conversion_to_an_app_host_killed_midway_is_undone_by_the_next_run(baked: Baked, tools, tmp_path) -> None:
    root = tmp_path / "host"
    installed(baked, root)
    site = (root / SITE).read_bytes()

    killed = run_until(baked, root, "nginx", signal.SIGKILL, *APP)
    assert killed.returncode == -signal.SIGKILL
    assert (root / UNITS / "my_app.socket.d/app-host.conf").exists() and not (root / SITE).exists()

    result = install(baked, root)

    assert result.returncode == 0, result.stdout
    assert re.search(r"^recover: install \(pid \d+, .*\) was interrupted: undone", result.stdout, re.MULTILINE)
    assert (root / SITE).read_bytes() == site and not (root / UNITS / "my_app.socket.d").exists()
    assert manifest(root)["role"] == {"name": "server"}


def test_static_files_of_the_previous_release_stay_one_deploy_longer(bake, tools, tmp_path: Path) -> None:
    """A page an old worker rendered during the switch still finds its assets; two deploys on they go."""
    project = bake()
    root = tmp_path / "server"
    static = root / "srv/my_app/static"
    installed(project, root)
    (project.path / "my_app/static/style.css").rename(project.path / "my_app/static/style.2.css")
    installed(project, root)
    assert (static / "style.css").is_file() and (static / "style.2.css").is_file()
    assert last_line(installed(project, root)) == "install: nothing changed"
    (project.path / "my_app/static/style.2.css").rename(project.path / "my_app/static/style.3.css")
    output = installed(project, root)
    assert not (static / "style.css").exists() and (static / "style.2.css").is_file(), output
    assert (static / "style.3.css").is_file()
    installed(project, root, "--uninstall", "--purge")
    assert not (root / "srv/my_app").exists()


def test_a_deploy_keeps_the_newest_releases_and_the_venvs_they_use(bake, tools, tmp_path: Path) -> None:
    project = bake()
    root = tmp_path / "server"
    made = []
    for number in range(4):
        edit(project.path / "my_app/app.py", "def ", f"# release {number}\ndef ")
        made.append(release_id(installed(project, root, "--keep", "2")))
    kept = sorted(path.name for path in (root / "srv/my_app/releases").iterdir())
    assert kept == sorted(made[-3:])
    log = json.loads((root / "var/lib/my_app-install/releases.json").read_text())
    assert [entry["id"] for entry in log["releases"]] == made[-3:]
    wrong = install(project, root, "--keep", "-1")
    assert wrong.returncode == 2 and "--keep -1: a number of releases, 0 or more" in wrong.stderr


def test_pruning_removes_only_what_deploy_install_made(bake, tools, tmp_path: Path) -> None:
    """A note or a folder of someone else's beside the releases and venvs stays, and no deploy fails on it."""
    project = bake()
    root = tmp_path / "server"
    installed(project, root, "--keep", "0")
    theirs = [root / "srv/my_app/releases/notes.txt", root / "srv/my_app/venvs/keep-me/file"]
    for path in theirs:
        write(path, "someone's\n")
    for number in range(2):
        edit(project.path / "my_app/app.py", "def ", f"# release {number}\ndef ")
        installed(project, root, "--keep", "0")
    assert all(path.is_file() for path in theirs)
    # --keep 0 still keeps the release that ran before: the way back of a rollback.
    assert len([path for path in (root / "srv/my_app/releases").iterdir() if path.is_dir()]) == 2


def test_metrics_install_the_exporters_and_name_the_serving_release_to_nginx(bake, tools, tmp_path: Path) -> None:
    """metrics=prometheus: the exporters' units, mtail's program and the log of deploys it reads;
    nginx's release snippet names the release that serves, after a deploy and after a rollback;
    metrics off again takes the exporters away."""
    project = bake(metrics="prometheus")
    root = tmp_path / "server"
    first = installed(project, root)
    assert "enable my_app-nginx-exporter.service my_app-mtail.service" in steps(first)["activate"]
    for unit in ("my_app-nginx-exporter.service", "my_app-mtail.service"):
        assert (root / "etc/systemd/system" / unit).read_bytes() == (
            project.path / "deploy/systemd" / unit
        ).read_bytes()
    program = root / "etc/my_app-mtail/my_app.mtail"
    assert program.read_bytes() == (project.path / "deploy/mtail/my_app.mtail").read_bytes()
    assert (root / "var/log/my_app-deploys.log").read_text() == ""  # a staged tree gets no marker
    snippet = root / "etc/nginx/snippets/my_app/release.conf"
    first_id = release(root).name
    assert f'default "{first_id}";' in snippet.read_text()
    app = project.path / "my_app/app.py"
    app.write_text(app.read_text() + "\n# release 2\n")
    second = installed(project, root)
    assert release(root).name != first_id and f'default "{release(root).name}";' in snippet.read_text()
    assert "my_app-mtail.service" not in steps(second)["activate"], second  # running, unchanged
    rolled_back = installed(project, root, "--rollback")
    assert (
        steps(rolled_back)["label"]
        == f"/etc/nginx/snippets/my_app/release.conf names {first_id} (nginx reloads with it)"
    )
    assert "reload nginx" in steps(rolled_back)["activate"]
    assert f'default "{first_id}";' in snippet.read_text()


def test_metrics_turned_off_stop_the_exporters_and_remove_their_files(bake, tools, tmp_path: Path) -> None:
    project = bake(metrics="prometheus")
    root = tmp_path / "server"
    installed(project, root)
    output = installed(bake(), root)
    assert "stop and disable my_app-nginx-exporter.service my_app-mtail.service" in steps(output)["systemd"], output
    gone = ["etc/systemd/system/my_app-mtail.service", "etc/my_app-mtail", "etc/nginx/snippets/my_app/release.conf"]
    assert [path for path in gone if (root / path).exists()] == []


def test_metrics_programs_missing_from_the_server_are_refused_with_their_packages(bake, tmp_path: Path) -> None:
    project = bake(metrics="prometheus")
    root = tmp_path / "lb"
    (root / "usr/bin").mkdir(parents=True)  # a system image, without the exporters
    said = refused(project, root, *LB)
    assert "/usr/bin/mtail is missing, and my_app-mtail.service runs it: apt-get install mtail" in said
    assert "/usr/bin/prometheus-nginx-exporter is missing, and my_app-nginx-exporter.service runs it" in said


def test_metrics_exporters_run_on_the_load_balancer_not_on_the_app_host(bake, tools, tmp_path: Path) -> None:
    """nginx and its access log are on the load balancer: the exporters go there; an app host gets
    none, and a purge takes them and the log of deploys away."""
    project = bake(metrics="prometheus")
    lb, app = tmp_path / "lb", tmp_path / "app"
    balancer = installed(project, lb, *LB)
    assert "start my_app-nginx-exporter.service my_app-mtail.service" in steps(balancer)["activate"], balancer
    assert (lb / "etc/systemd/system/my_app-mtail.service").exists()
    installed(project, app, *APP)
    assert not (app / "etc/systemd/system/my_app-mtail.service").exists()
    assert not (app / "etc/my_app-mtail").exists()
    write(lb / "var/log/my_app-deploys.log", "2026-12-07T00:00:00Z action=deploy release=abc previous=none\n")
    installed(project, lb, "--uninstall", "--purge")
    left = ["etc/systemd/system/my_app-mtail.service", "etc/my_app-mtail", "var/log/my_app-deploys.log"]
    assert [path for path in left if (lb / path).exists()] == []
