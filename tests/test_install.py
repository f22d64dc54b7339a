"""deploy/install: staged installs (--root) and dry runs of the baked project, on real files.

Nothing here touches this machine's services: --root stages the server's tree in a temporary
folder and records the commands the server would run, and the staged files are validated by the
staged copy of deploy/check (real nginx -t and systemd-analyze on them).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
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
    "/srv/my_app/app": ("dir", 0o750),
    "/srv/my_app/app/wsgi.py": ("file", 0o640),
    "/srv/my_app/app/gunicorn.conf.py": ("file", 0o640),
    "/srv/my_app/app/requirements.txt": ("file", 0o640),
    "/srv/my_app/app/my_app": ("dir", 0o750),
    "/srv/my_app/app/my_app/app.py": ("file", 0o640),
    "/srv/my_app/app/deploy/install": ("file", 0o750),
    "/srv/my_app/app/deploy/setup-venv": ("file", 0o750),
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
    assert {path: (tree[path][0], tree[path][-3]) for path in expected if path in tree} == expected
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

    # The app folder holds the project's files, and neither its tests, venvs, caches, secrets nor dotfiles.
    wanted = {
        path.relative_to(project.path).as_posix()
        for path in project.path.rglob("*")
        if path.is_file()
        and not {"tests", "env", "__pycache__"} & set(path.relative_to(project.path).parts)
        and not any(part.startswith(".") or part.endswith(".env") for part in path.relative_to(project.path).parts)
    }
    app = root / "srv/my_app/app"
    assert {p.relative_to(app).as_posix() for p in app.rglob("*") if p.is_file()} == wanted
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
    assert first[:2] == [USERADD, "chown -R root:my_app /srv/my_app/app"]
    labels = [line for line in first if line.startswith(("semanage", "restorecon"))]
    if platform == "rhel-9":
        assert labels == [
            "semanage fcontext --add --type httpd_sys_content_t '/srv/my_app/static(/.*)?'",
            "semanage fcontext --add --type httpd_sys_content_t '/srv/my_app/errors(/.*)?'",
            "restorecon -R /srv/my_app/static /srv/my_app/errors",
        ]
        assert "env PYTHON=python3.11 /srv/my_app/app/deploy/setup-venv /srv/my_app/my_app_venv" in first
    else:
        assert labels == [] and "selinux" not in steps(output)
    assert last_line(output).startswith(f"install: staged under {root}:")


def test_staged_install_records_commands_in_the_order_the_server_needs(staged) -> None:
    root, output = staged
    first = blocks(root)[0]
    order = [
        USERADD,
        "chown -R root:my_app /srv/my_app/app",
        "env PYTHON=python3 /srv/my_app/app/deploy/setup-venv /srv/my_app/my_app_venv",
        "nginx -t",
        "systemd-analyze verify --man=no my_app.socket my_app.service",
        "systemctl daemon-reload",
        "systemctl enable my_app.socket my_app.service",
        "systemctl start my_app.socket my_app.service",
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
    for name in ("dirs", "app", "static", "errors", "systemd", "nginx"):
        assert found[name] == "unchanged", name
    assert found["validate"] == "nothing changed, nothing to validate"
    assert len(blocks(root)) == 1


def test_dry_run_lists_every_action_and_changes_nothing(baked: Baked, tools, tmp_path: Path) -> None:
    root = tmp_path / "server"
    output = installed(baked, root, "--dry-run")
    assert not root.exists()
    assert "  would create /srv/my_app/app/wsgi.py (root:my_app 0640)" in output
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


def test_code_change_updates_the_app_and_reloads_it_gracefully(bake, tools, tmp_path: Path) -> None:
    project = bake()
    root = tmp_path / "server"
    installed(project, root)
    env = root / "etc/my_app/my_app.env"
    env.write_text("DATABASE_URL=postgres://secret\n")
    app = project.path / "my_app/app.py"
    old = app.read_bytes()
    app.write_text(app.read_text() + "\n# release 2\n")

    output = installed(project, root)

    assert (root / "srv/my_app/app/my_app/app.py").read_bytes() == app.read_bytes()
    assert steps(output)["app"] == "1 updated (my_app/app.py)"
    [backup] = (root / "srv/my_app/backups").glob("*/srv/my_app/app/my_app/app.py")
    assert backup.read_bytes() == old and stat.S_IMODE(backup.stat().st_mode) == 0o640
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
    assert re.fullmatch(r"\d+ restored from backup, 0 created by this run removed", found["rollback"])
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
    assert (root / "srv/my_app/app/wsgi.py").is_file() and (root / "srv/my_app/static/style.css").is_file()
    assert env.read_text() == "SECRET=1\n"
    [backup] = (root / "srv/my_app/backups").iterdir()
    assert (backup / "etc/systemd/system/my_app.service").is_file()
    assert (backup / "etc/nginx/sites-enabled/my_app.conf").is_symlink()
    assert blocks(root)[-1] == [
        "nginx -t",
        "systemctl reload nginx.service",
        "systemctl disable --now my_app.service my_app.socket",
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
    assert "systemctl enable my_app@8081.service my_app@8082.service" in first
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
    assert not list((root / "srv/my_app/app").rglob("*.env"))
    assert (root / "srv/my_app/app/manage.py").is_file()
    collect = [line for line in blocks(root)[0] if "collectstatic" in line]
    assert collect == [
        "sh -c 'set -a && . /etc/my_app/my_app.env && exec /srv/my_app/my_app_venv/bin/python"
        " /srv/my_app/app/manage.py collectstatic --noinput'"
    ]
    assert steps(output)["env"] == "/etc/my_app/my_app.env created (0600, from my_app.env)"


def test_lets_encrypt_first_install_serves_the_challenge_before_the_https_site(bake, tools, tmp_path: Path) -> None:
    project = bake(tls_mode="letsencrypt")
    root = tmp_path / "server"
    installed(project, root)
    commands = blocks(root)[0]
    challenge = "install -m 0644 /srv/my_app/app/deploy/nginx/my_app.acme.conf /etc/nginx/sites-available/my_app.conf"
    https = "install -m 0644 /srv/my_app/app/deploy/nginx/my_app.conf /etc/nginx/sites-available/my_app.conf"
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
