"""Bad answers are refused before anything is written, with the field, the value and the rule."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TEMPLATE_DIR, cookiecutter_cli
from cookiecutter.exceptions import FailedHookException

sys.path[:0] = [str(TEMPLATE_DIR), str(TEMPLATE_DIR / "hooks")]
from answers import problems  # noqa: E402

REFUSED = [
    # (field, value, words the message must contain)
    ("project_name", "My %n App", "not a valid project name"),
    ("project_name", 'My "App"', "not a valid project name"),
    ("project_name", "App\nExecStart=/bin/sh", "not a valid project name"),
    ("project_name", " padded", "not a valid project name"),
    ("project_slug", "../escape", "not a valid slug"),
    ("project_slug", "nested/slug", "not a valid slug"),
    ("project_slug", "My-App", "not a valid slug"),
    ("project_slug", "1app", "not a valid slug"),
    ("project_slug", "class", "already uses"),
    ("project_slug", "json", "already uses"),
    ("project_slug", "wsgi", "already uses"),
    ("domain_name", "exa mple.com", "not a valid host name"),
    ("domain_name", "example.com;", "not a valid host name"),
    ("domain_name", "example.com{", "not a valid host name"),
    ("domain_name", "example.com\nlisten 81", "not a valid host name"),
    ("domain_name", "*.example.com", "not a valid host name"),
    ("domain_name", "-bad.example.com", "not a valid host name"),
    ("domain_name", "a..b", "not a valid host name"),
    ("domain_name", "", "not a valid host name"),
    ("server_user", "root", "must not be root"),
    ("server_user", "www-data", "belongs to the system or to nginx"),
    ("server_user", "Bad User", "not a valid user name"),
    ("server_user", "a;b", "not a valid user name"),
    ("install_dir", "srv/my_app", "absolute path"),
    ("install_dir", "/srv/../etc/app", "not a plain absolute path"),
    ("install_dir", "/srv/my app", "not a plain absolute path"),
    ("install_dir", "/srv/my_app/", "not a plain absolute path"),
    ("install_dir", "/srv//my_app", "not a plain absolute path"),
    ("install_dir", "/srv/app;rm -rf /", "not a plain absolute path"),
    ("install_dir", "/", "not a plain absolute path"),
    ("install_dir", "/etc", "system folder"),
    ("install_dir", "/tmp/my_app", "system folder"),
    ("install_dir", "/home/me/my_app", "system folder"),
    ("workers", "0", "not 'auto' or a whole number"),
    ("workers", "-1", "not 'auto' or a whole number"),
    ("workers", "two", "not 'auto' or a whole number"),
    ("workers", "4x", "not 'auto' or a whole number"),
    ("workers", "1000", "not 'auto' or a whole number"),
    ("app_port", "80", "not a port number from 1024 to 65535"),
    ("app_port", "70000", "not a port number from 1024 to 65535"),
    ("app_port", "8081abc", "not a port number from 1024 to 65535"),
    ("app_port", " 8081", "not a port number from 1024 to 65535"),
    ("bind", "udp", "not one of unix, tcp"),
    ("metrics", "statsd", "not one of off, prometheus"),
    ("backup", "borg", "not one of local, restic, off"),
    ("client_max_body_size", "0", "not an nginx size"),
    ("client_max_body_size", "10mb", "not an nginx size"),
    ("client_max_body_size", "1m; allow all", "not an nginx size"),
    # A replay file is read as written: "yes" there is a string, not cookiecutter's boolean.
    ("git_init", "yes", "must be yes or no (true or false in a replay file)"),
]

ACCEPTED = [
    ("project_name", "Café Orders"),
    ("project_name", "Tom & Jerry's (v2)"),
    ("project_slug", "shop2"),
    ("domain_name", "localhost"),
    ("domain_name", "sub.example.co.uk"),
    ("domain_name", "xn--bcher-kva.example"),
    ("server_user", "svc-app"),
    ("install_dir", "/opt/apps/shop"),
    ("workers", "1"),
    ("workers", "16"),
    ("app_port", "1024"),
    ("app_port", "65535"),
    ("bind", "tcp"),
    ("metrics", "prometheus"),
    ("backup", "restic"),
    ("backup", "off"),
    ("client_max_body_size", "512k"),
]


def case_id(case: tuple) -> str:
    return f"{case[0]}-{case[1]!r}"[:40]


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


@pytest.mark.parametrize("field, value, rule", REFUSED, ids=map(case_id, REFUSED))
def test_rules_refuse_hostile_answers(field: str, value: str, rule: str) -> None:
    found = problems({**defaults(), field: value})
    assert len(found) == 1, found
    assert found[0].startswith(f"{field}: ") and rule in found[0]


@pytest.mark.parametrize("field, value", ACCEPTED, ids=map(case_id, ACCEPTED))
def test_rules_accept_good_answers(field: str, value: str) -> None:
    assert problems({**defaults(), field: value}) == []


def defaults() -> dict:
    return {
        "project_name": "My App",
        "project_slug": "my_app",
        "domain_name": "example.com",
        "server_user": "my_app",
        "install_dir": "/srv/my_app",
        "workers": "auto",
        "bind": "unix",
        "app_port": "8081",
        "client_max_body_size": "10m",
    }


REFUSED_BAKES = [
    ("domain_name", "example.com; return 200", '"example.com; return 200" is not a valid host name'),
    ("project_slug", "../escape", '"../escape" is not a valid slug'),
    ("project_slug", "nested/deeper/slug", '"nested/deeper/slug" is not a valid slug'),
    ("server_user", "root", '"root" must not be root'),
    ("install_dir", "relative/path", '"relative/path" must be an absolute path'),
    ("workers", "0", "\"0\" is not 'auto' or a whole number"),
    ("app_port", "8081abc", '"8081abc" is not a port number'),
]


@pytest.mark.parametrize("field, value, message", REFUSED_BAKES, ids=map(case_id, REFUSED_BAKES))
def test_refused_bake_leaves_nothing_on_disk(cookies, capfd, tmp_path, field: str, value: str, message: str) -> None:
    output_root = Path(str(cookies._output_factory("probe"))).parent
    before = files_under(output_root.parent)
    result = cookies.bake(extra_context={field: value})
    assert isinstance(result.exception, FailedHookException)
    assert f"{field}: {message}" in capfd.readouterr().err
    # The empty folder pytest-cookies made itself is all that may be left. A slug with slashes made
    # parent folders too; they go a moment after cookiecutter's own clean-up.
    expected = [output_root / "bake00"]
    deadline = time.monotonic() + 5
    while (left := [path for path in files_under(output_root.parent) if path not in before]) != expected:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == expected, left


def test_every_problem_is_reported_at_once(cookies, capfd) -> None:
    result = cookies.bake(extra_context={"domain_name": "bad domain", "workers": "many", "app_port": "1"})
    assert isinstance(result.exception, FailedHookException)
    err = capfd.readouterr().err
    for field in ("domain_name", "workers", "app_port"):
        assert f"  - {field}: " in err
    assert "nothing was generated" in err


def test_derived_names_cannot_be_set_from_the_command_line(bake) -> None:
    """Only answers are variables: a derived name given on the command line changes nothing."""
    project = bake(__app_dir="/usr/lib", __env_file="/etc/passwd", __socket_path="/run/x;", _timeout="60")
    layout = (project.path / "deploy" / "deploytools" / "layout.py").read_text()
    assert 'APP_DIR = "/srv/my_app/current"' in layout
    assert 'ENV_FILE = "/etc/my_app/my_app.env"' in layout
    unit = (project.path / "deploy" / "systemd" / "my_app.socket").read_text()
    assert "ListenStream=/run/my_app/gunicorn.sock" in unit


def test_templates_take_derived_values_from_the_extension_never_split_strings() -> None:
    templates = [path for path in (TEMPLATE_DIR / "{{cookiecutter.project_slug}}").rglob("*") if path.is_file()]
    leftovers = [
        path.name
        for path in templates
        if re.search(r"cookiecutter\.__|cookiecutter\._[a-z]|derived\.\w+\.split\(", path.read_text(errors="replace"))
    ]
    assert leftovers == []
    context = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text())
    assert [key for key in context if key.startswith("__") and key != "__prompts__"] == []


@pytest.mark.parametrize("field, value", ACCEPTED[:6] + ACCEPTED[-3:], ids=map(case_id, ACCEPTED[:6] + ACCEPTED[-3:]))
def test_good_answers_bake_and_pass_check(bake, field: str, value: str) -> None:
    project = bake(**{field: value})
    assert (project.path / "deploy" / "check").exists()
    assert project.answers[field] == value


def test_cross_field_rules_report_alongside_single_field_ones(cookies, capfd) -> None:
    answers = {"domain_name": "localhost", "tls_mode": "letsencrypt", "workers": "many", "framework": "asgi"}
    result = cookies.bake(extra_context={**answers, "worker_class": "sync"})
    assert isinstance(result.exception, FailedHookException)
    err = capfd.readouterr().err
    assert '  - workers: "many"' in err
    assert '  - domain_name: "localhost" cannot get a Let\'s Encrypt certificate' in err
    assert '  - worker_class: "sync" cannot serve an ASGI app' in err


def test_a_very_long_project_name_is_refused_with_the_rule(cookies, capfd) -> None:
    result = cookies.bake(extra_context={"project_name": "A" * 5000})
    assert isinstance(result.exception, FailedHookException)
    assert "project_name: " in capfd.readouterr().err


SYSTEM_ANSWERS = [
    # An install folder must be a folder of its own: purge would otherwise empty the system's.
    ("install_dir", "/var/lib"),
    ("install_dir", "/usr/lib"),
    ("install_dir", "/usr/share/my_app"),
    ("install_dir", "/var/log"),
    ("install_dir", "/var/log/my_app"),
    ("install_dir", "/etc/nginx"),
    ("install_dir", "/etc/my_app"),
    ("install_dir", "/var/www/html"),
    ("install_dir", "/var/www/html/my_app"),
    ("install_dir", "/var"),
    ("install_dir", "/usr/local/my_app"),
    # The slug names a unit, /etc/<slug> and the account: never the system's own.
    ("project_slug", "nginx"),
    ("project_slug", "ssh"),
    ("project_slug", "postgresql"),
    ("project_slug", "systemd_networkd"),
    ("project_slug", "docker"),
    ("project_slug", "shadow"),
    # The service's account grants nothing beyond the app.
    ("server_user", "shadow"),
    ("server_user", "disk"),
    ("server_user", "sudo"),
    ("server_user", "adm"),
    ("server_user", "docker"),
    ("server_user", "_apt"),
    ("server_user", "systemd-journal"),
    ("server_user", "postgres"),
]
SYSTEM_RULES = {
    "install_dir": "is a system folder, lies in one, or holds one",
    "project_slug": "is a name the server already uses",
    "server_user": "is a privileged account or group",
}


@pytest.mark.parametrize("field, value", SYSTEM_ANSWERS, ids=map(case_id, SYSTEM_ANSWERS))
def test_answers_naming_what_the_system_owns_are_refused(field: str, value: str) -> None:
    answers = {**defaults(), field: value}
    if field == "project_slug":
        answers["server_user"] = "svc"  # the slug alone is under test
    found = [problem for problem in problems(answers) if problem.startswith(f"{field}: ")]
    assert len(found) == 1 and SYSTEM_RULES[field] in found[0], found


@pytest.mark.parametrize(
    "field, value",
    [("install_dir", "/srv/shop"), ("install_dir", "/var/lib/shop"), ("install_dir", "/var/www/shop"),
     ("install_dir", "/opt/shop"), ("project_slug", "shop"), ("server_user", "shop-web")],
)  # fmt: skip
def test_folders_and_names_of_ones_own_are_accepted(field: str, value: str) -> None:
    assert problems({**defaults(), field: value}) == []


def cookiecutter_with_config(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """The cookiecutter command with its user config where cookiecutter looks by itself (COOKIECUTTER_CONFIG)."""
    config = home / "cookiecutter.yaml"
    config.write_text(f"cookiecutters_dir: {home / 'templates'}\nreplay_dir: {home / 'replay'}\n")
    command = [str(Path(sys.executable).with_name("cookiecutter")), *args]
    env = {**os.environ, "COOKIECUTTER_CONFIG": str(config)}
    return subprocess.run(command, cwd=home, capture_output=True, text=True, check=False, env=env)


def test_a_refused_bake_shows_the_problems_and_the_replay_file_without_a_traceback(tmp_path: Path) -> None:
    refused = cookiecutter_with_config("--no-input", str(TEMPLATE_DIR), "domain_name=bad domain", home=tmp_path)
    said = refused.stdout + refused.stderr
    assert refused.returncode == 1
    assert "Traceback" not in said and "Stopping generation" not in said, said
    assert '  - domain_name: "bad domain" is not a valid host name' in refused.stderr
    replay = tmp_path / "replay" / f"{TEMPLATE_DIR.name}.json"
    assert f"These answers are saved in {replay}: correct them there, then run\n" in refused.stderr
    # What the message says to do, done: the file corrected, the command it gives run as given.
    command = refused.stderr.rsplit("\n  ", 1)[1].split()
    assert command == ["cookiecutter", "--replay-file", str(replay), str(TEMPLATE_DIR)]
    saved = json.loads(replay.read_text())
    saved["cookiecutter"].update(
        domain_name="shop.example.org",
        tls_email="admin@shop.example.org",
        tls_certificate="/etc/ssl/certs/shop.example.org.pem",
        tls_certificate_key="/etc/ssl/private/shop.example.org.key",
    )
    replay.write_text(json.dumps(saved))
    again = cookiecutter_with_config(*command[1:], home=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "server_name shop.example.org;" in (tmp_path / "my_app" / "deploy/nginx/my_app.conf").read_text()


def test_a_refused_bake_with_a_config_out_of_sight_says_where_replay_files_go(tmp_path: Path) -> None:
    refused = cookiecutter_cli("--no-input", str(TEMPLATE_DIR), "workers=many", cwd=tmp_path, home=tmp_path)
    assert refused.returncode == 1 and "Traceback" not in refused.stdout + refused.stderr
    assert f"cookiecutter saved these answers as {TEMPLATE_DIR.name}.json in its replay folder" in refused.stderr
