"""The generated README's way to a server, followed step by step from a fresh bake to a booted
Debian server: the server's packages, the wheelhouse, git to bring the project there, and the
install; then a change goes out with the command the README gives for each deploy.

Only the placeholders are filled in: the repository's address (a bare repository on the server,
reached over ssh from here, by path from the server itself) and the server's name (its address).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

from conftest import require_tool
from servers import RELEASES, Host, make_wheelhouse

REPOSITORY = "/root/my_app.git"
# The placeholders of the README's commands.
EXAMPLE_URL = "git@git.example.com:you/my_app.git"
EXAMPLE_SERVER = "server:"


def deploy_section(project: Path) -> tuple[str, list[tuple[str, str]]]:
    """The README's "Deploy it" section, and each command of its shell blocks with where it runs
    (its comment: "here", "on the server"; a block without comments runs on the server)."""
    readme = (project / "README.md").read_text()
    section = readme.split("\n## Deploy it", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for line in block.splitlines():
            command, _, comment = line.partition("  #")
            if command.strip():
                commands.append((command.strip(), "here" if comment.strip().startswith("here") else "server"))
    return section, commands


def on_server(host: Host, command: str, cwd: str) -> subprocess.CompletedProcess[str]:
    """A README command as root types it on the server: sudo and all, in a shell, from `cwd`."""
    return host.run("/bin/bash", "-c", command.replace(EXAMPLE_URL, REPOSITORY), cwd=cwd, check=False)


def test_the_readme_brings_a_fresh_bake_to_a_server_and_deploys_a_change(lab, cookies_session, wheel_cache) -> None:
    require_tool("git", "apt-get install git")
    require_tool("rsync", "apt-get install rsync")
    result = cookies_session.bake(extra_context={"platform": "debian-12"})
    assert result.exception is None
    project = Path(result.project_path)
    assert (project / ".git").is_dir(), "the bake made no git repository"
    section, commands = deploy_section(project)
    with lab.booted("readme", release="bookworm") as (host,):
        ssh = shlex.join(["ssh", *lab.ssh_options])
        here_env = {**os.environ, "GIT_SSH_COMMAND": ssh, "RSYNC_RSH": ssh}
        server = f"root@{host.address}:"
        host.run("git", "init", "--quiet", "--bare", REPOSITORY)

        def here(command: str) -> None:
            filled = command.replace(EXAMPLE_URL, f"root@{host.address}:{REPOSITORY}").replace(EXAMPLE_SERVER, server)
            done = subprocess.run(
                ["/bin/bash", "-c", filled], cwd=project, env=here_env, capture_output=True, text=True, check=False
            )
            assert done.returncode == 0, f"{filled}\n{done.stdout}{done.stderr}"

        # The wheelhouse, as the README says, for the server's Python; then each command in order.
        assert "`deploy/wheelhouse` on this" in section
        make_wheelhouse(project, RELEASES["bookworm"], wheel_cache)
        where = "/root"
        for command, side in commands:
            if command.startswith("sudo deploy/install --") or re.search(r"deploy/(maintenance|restore)", command):
                continue  # --releases, --rollback, the maintenance page and a restore: shown for later
            if side == "here":
                here(command)
                continue
            done = on_server(host, command, where)
            assert done.returncode == 0, f"{command}\n{done.stdout}{done.stderr}"
            if "deploy/install" in command:
                installed = done
            if command.startswith("git clone"):
                where = "/root/my_app"
        assert host.get("/").status == 200
        assert "install: done" in installed.stdout, installed.stdout

        # A change, committed and pushed here, then the README's command for each deploy there.
        app = project / "my_app" / "app.py"
        app.write_text(app.read_text().replace("Served by gunicorn behind nginx.", "Served, second release."))
        here("git commit --quiet --all --message 'Second release'")
        here("git push --quiet")
        [deploy] = [command for command, side in commands if "for each deploy" in command or "git pull" in command]
        done = on_server(host, deploy, "/root/my_app")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Served, second release." in host.get("/").text
        # Nothing of the workstation's venv went to the server (git left it out), nor into a release.
        listed = host.run("find", "/root/my_app", "/srv/my_app/releases", "-name", "my_app_venv").stdout
        assert listed == "", listed
