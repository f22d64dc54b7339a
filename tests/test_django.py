"""A baked Django project: its own tests pass, and its README works when followed as written (the
first steps on a workstation, the commands on the server), answering createsuperuser's questions
on a terminal of its own.

The server's part runs in a private mount namespace whose /etc, /var/lib and /srv are throwaway
layers over this machine's: the service's user, env file, app folder and database exist there
only, and vanish with it.
"""

from __future__ import annotations

import fcntl
import http.cookiejar
import os
import pty
import re
import select
import shlex
import subprocess
import termios
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import Baked, require_tool
from helpers import start_stack

SUPERUSER = {"Username": "boss", "Email address": "boss@example.com", "Password": "Correct-Horse-Battery-9"}
PROMPTS = [*SUPERUSER.items(), ("Password (again)", SUPERUSER["Password"])]
PROMPT_SECONDS = 60


def readme_commands(project: Path) -> list[list[str]]:
    """The commands of each shell block in the README's Django section, comments left out."""
    readme = (project / "README.md").read_text()
    section = readme.split("\n## Django", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return [[line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()] for block in blocks]


def on_a_terminal(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `command` with a terminal of its own and answer createsuperuser's prompts on it, as a
    person at the keyboard would (the password prompts read the terminal, not standard input)."""
    main, child = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    process = subprocess.Popen(
        command, stdin=child, stdout=child, stderr=child, cwd=cwd, env=env, preexec_fn=own_terminal
    )
    os.close(child)
    output, answered_at, pending = "", 0, list(PROMPTS)
    deadline = time.monotonic() + PROMPT_SECONDS
    try:
        while time.monotonic() < deadline:
            if not select.select([main], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the command has ended and closed the terminal
                break
            if not chunk:
                break
            output += chunk.decode(errors="replace")
            since = output[answered_at:]
            if pending and pending[0][0] in since and since.rstrip().endswith(":"):
                os.write(main, pending.pop(0)[1].encode() + b"\n")
                answered_at = len(output)
        return process.wait(timeout=max(1.0, deadline - time.monotonic())), output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(main)


def log_in(admin: str) -> str:
    """The admin's login form at `admin`, sent as a browser sends it; the page it ends on."""
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    site = admin.removesuffix("/admin/")
    form = browser.open(f"{site}/admin/login/", timeout=10).read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
    assert token, form
    fields = {"username": SUPERUSER["Username"], "password": SUPERUSER["Password"], "next": "/admin/"}
    body = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token.group(1)}).encode()
    request = urllib.request.Request(f"{site}/admin/login/", data=body, headers={"Origin": site})
    return browser.open(request, timeout=30).read().decode()


@pytest.mark.parametrize("tls_mode", ["none", "existing"])
def test_django_app_tests_pass(bake, framework_venv: Path, tls_mode: str) -> None:
    project: Baked = bake(framework="django", tls_mode=tls_mode)
    result = project.run(framework_venv / "bin" / "python", "-m", "unittest", "-v")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^test_superuser_logs_into_the_admin .* \.\.\. ok$", result.stderr, re.MULTILINE), result.stderr


def test_readme_first_steps_make_a_superuser_who_logs_in(bake, framework_venv: Path) -> None:
    require_tool("nginx", "apt-get install nginx")
    project: Baked = bake(framework="django")
    first_steps = readme_commands(project.path)[0]
    assert first_steps == ["deploy/setup-venv", "deploy/run-local", "deploy/manage createsuperuser"]
    # The venv setup-venv makes, already holding the pinned requirements: it checks and stamps it.
    (project.path / "my_app_venv").symlink_to(framework_venv)
    setup = project.run(*shlex.split(first_steps[0]))
    assert setup.returncode == 0, setup.stdout + setup.stderr
    # run-local as written, on a free port (8080 may be another test's).
    with start_stack(project.path, project.path / "my_app_venv") as stack:
        status, said = on_a_terminal(shlex.split(first_steps[2]), cwd=project.path)
        assert status == 0 and "Superuser created successfully." in said, said
        admin = f"http://localhost:{stack.port}/admin/"
        assert "Site administration" in log_in(admin)
    # The address the README sends the user to, as run-local printed it.
    assert f"admin: {admin} " in stack.process.stdout.read()
    assert (project.path / ".state" / "db.sqlite3").is_file()  # kept for the next run-local


SERVER_SETUP = """\
set -euo pipefail
scratch=$1
# Throwaway layers: what this script changes under /etc, /var/lib and /srv is gone when it ends.
mount -t tmpfs scratch "$scratch"
for folder in etc var/lib; do
  upper=$scratch/upper/$folder work=$scratch/work/$folder
  mkdir -p "$upper" "$work"
  mount -t overlay overlay -o "lowerdir=/$folder,upperdir=$upper,workdir=$work" "/$folder"
done
mount -t tmpfs srv /srv
# What deploy/install leaves on the server: the user, the env file, a release and its venv.
useradd --system --user-group --no-create-home --home-dir /srv/my_app --shell /usr/sbin/nologin my_app
install -d -m 0700 /etc/my_app
install -m 0600 "$project/my_app.env" /etc/my_app/my_app.env
release=/srv/my_app/releases/0123456789ab
mkdir -p "$release" /srv/my_app/venvs/0123456789abcdef
cp -r "$project/." "$release/"
rm -rf "$release/my_app_venv" "$release/my_app.env" "$release/.state"
ln -s ../../venvs/0123456789abcdef "$release/venv"
chown -R root:my_app /srv/my_app/releases
chmod -R u=rwX,g=rX,o= /srv/my_app/releases
ln -s releases/0123456789ab /srv/my_app/current
mount --bind "$venv" /srv/my_app/venvs/0123456789abcdef
# The venv's interpreter may sit under a folder other users cannot enter (pyenv's, under /root):
# open such folders to them, in this namespace only.
folder=$(dirname "$(readlink -f "$venv/bin/python")")
while [[ $folder != / ]]; do
  if (( (0$(stat -c %a "$folder") & 1) == 0 )); then
    layer=$scratch/open${folder//\\//_}
    mkdir -p "$layer/upper" "$layer/work"
    mount -t overlay overlay -o "lowerdir=$folder,upperdir=$layer/upper,workdir=$layer/work" "$folder"
    chmod o+x "$folder"
  fi
  folder=$(dirname "$folder")
done
# deploy/install's migrate step: as the service's user, with STATE_DIRECTORY.
/srv/my_app/current/deploy/manage migrate --noinput
"""
SERVER_REPORT = """
echo "state: $(stat -c '%U %a' /var/lib/my_app) $(stat -c '%U %a' /var/lib/my_app/db.sqlite3)"
/srv/my_app/current/deploy/manage shell -c \
  "from django.contrib.auth.models import User; print('superusers:', *User.objects.filter(is_superuser=True))"
"""


def test_readme_server_commands_make_the_superuser_as_the_service(bake, framework_venv: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the server's part needs root (a mount namespace, a user of its own)")
    unshare = require_tool("unshare", "apt-get install util-linux")
    require_tool("useradd", "apt-get install passwd")
    project: Baked = bake(framework="django")
    on_server = readme_commands(project.path)[1]
    assert on_server == ["sudo /srv/my_app/current/deploy/manage createsuperuser"]
    # This test runs as root already: sudo (perhaps not even installed) would change nothing.
    commands = "\n".join(line.removeprefix("sudo ") for line in on_server)
    script = tmp_path / "server.sh"
    script.write_text(SERVER_SETUP + commands + "\n" + SERVER_REPORT)
    scratch = tmp_path / "layers"
    scratch.mkdir()
    env = {**os.environ, "project": str(project.path), "venv": str(framework_venv)}
    command = [unshare, "--mount", "--propagation", "private", "--", "bash", str(script), str(scratch)]
    status, said = on_a_terminal(command, cwd=tmp_path, env=env)
    assert status == 0, said
    assert "Superuser created successfully." in said
    # The service's own folder and database, as systemd's StateDirectory= and UMask= would make them.
    assert "state: my_app 700 my_app 640" in said, said
    assert "superusers: boss" in said, said
