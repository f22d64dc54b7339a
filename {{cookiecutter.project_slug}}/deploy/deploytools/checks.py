"""The checks behind deploy/check: every generated config, validated by the real tool.

Each check prints one line: "ok", "skip" (the tool is not installed here, with how to get it) or
"FAIL" followed by what the tool said. In strict mode (--strict, or CI=true) a skip is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import database, layout
from .envfile import read_env_file
from .nginx import LocalPorts, find_nginx, scratch_dir, write_main_conf

EXPOSURE_LIMIT = 2.0
VENV_NAMES = ("venv", ".venv", layout.LOCAL_VENV.name)
EXEC_LINE = re.compile(r"^Exec\w+=[-@:+!]*(/\S+)", re.MULTILINE)
EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")


@dataclass
class Result:
    status: str  # "ok", "skip" or "FAIL"
    name: str
    summary: str
    details: str = ""
    # A skip because a tool is missing fails in strict mode; one for work left to the user does not.
    tool_missing: bool = True


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def project_files(pattern: str) -> list[Path]:
    return sorted(
        path
        for path in layout.PROJECT_DIR.rglob(pattern)
        if not any(part in VENV_NAMES or part == "__pycache__" for part in path.relative_to(layout.PROJECT_DIR).parts)
    )


def scripts(interpreter: str) -> list[Path]:
    """Files in deploy/ that start with a #! line naming `interpreter`."""
    found = []
    for path in sorted(layout.DEPLOY_DIR.iterdir()):
        if path.is_file() and path.read_bytes()[:64].split(b"\n")[0].endswith(interpreter.encode()):
            found.append(path)
    return found


def check_python() -> Result:
    files = project_files("*.py") + scripts("python3")
    errors = []
    for path in files:
        try:
            compile(path.read_text(), str(path), "exec")
        except SyntaxError as error:
            errors.append(f"{path.relative_to(layout.PROJECT_DIR)}:{error.lineno}: {error.msg}")
    shells = scripts("bash")
    for path in shells:
        result = run(["bash", "-n", str(path)])
        if result.returncode:
            errors.append(result.stderr.strip())
    if errors:
        return Result("FAIL", "python", "syntax errors", "\n".join(errors))
    return Result("ok", "python", f"{count(len(files), 'Python file')} and {count(len(shells), 'shell script')} parse")


def gunicorn_command() -> list[str] | None:
    local = layout.LOCAL_VENV / "bin"
    if (local / "gunicorn").exists():
        # Through python -m: the script's own first lines break on a path with `$` or quotes.
        return [str(local / "python"), "-m", "gunicorn"]
    if found := shutil.which("gunicorn"):
        return [found]
    if run([sys.executable, "-c", "import gunicorn"]).returncode == 0:
        return [sys.executable, "-m", "gunicorn"]
    return None


def requirement_names() -> set[str]:
    text = (layout.PROJECT_DIR / "requirements.txt").read_text()
    names = re.findall(r"^([A-Za-z0-9_.-]+)==", text, re.MULTILINE)
    return {name.lower().replace("-", "_").replace(".", "_") for name in names}


def app_module_missing() -> str | None:
    """The module of the app gunicorn loads, if it is not in this folder (yet)."""
    module = layout.APP.split(":")[0].replace(".", "/")
    if (layout.PROJECT_DIR / f"{module}.py").exists() or (layout.PROJECT_DIR / module / "__init__.py").exists():
        return None
    return layout.APP.split(":")[0]


def check_gunicorn() -> Result:
    gunicorn = gunicorn_command()
    if gunicorn is None:
        # gunicorn comes with the project's venv: its absence is work left to the user, not a missing tool.
        return Result(
            "skip",
            "gunicorn",
            "gunicorn not found (run deploy/setup-venv to create the project's venv)",
            tool_missing=False,
        )
    conf = layout.GUNICORN_CONF.relative_to(layout.PROJECT_DIR)
    if missing := app_module_missing():
        # Without the app, gunicorn still validates its configuration, with a stand-in app.
        stand_in = "wsgiref.simple_server:demo_app"
        result = run([*gunicorn, "--check-config", "--config", str(conf), stand_in], cwd=layout.PROJECT_DIR)
        if result.returncode:
            return Result("FAIL", "gunicorn", f"gunicorn rejects {conf}", (result.stdout + result.stderr).strip())
        return Result(
            "skip",
            "gunicorn",
            f"{conf} is valid; the app module {missing} is not in this folder yet (copy your code in, re-run)",
            tool_missing=False,
        )
    # The settings systemd would pass from the env file (Django's secret key, ...).
    env = {**os.environ, **read_env_file(layout.ENV_SOURCE)}
    result = run([*gunicorn, "--check-config", "--config", str(conf)], cwd=layout.PROJECT_DIR, env=env)
    said = (result.stdout + result.stderr).strip()
    if result.returncode:
        absent = re.search(r"No module named '([\w.]+)'", said)
        if absent and absent.group(1).split(".")[0].lower() in requirement_names():
            return Result(
                "skip",
                "gunicorn",
                f"{absent.group(1)} is not installed where gunicorn runs: run deploy/setup-venv, then deploy/check",
                tool_missing=False,
            )
        return Result("FAIL", "gunicorn", f"--check-config rejects {conf}", said)
    version = run([*gunicorn, "--version"]).stdout.split()[-1].rstrip(")")
    return Result("ok", "gunicorn", f"--check-config loads {conf} and {layout.APP} (gunicorn {version})")


def sites() -> list[Path]:
    return [site for site in (layout.NGINX_SITE, layout.NGINX_ACME_SITE) if site]


def check_nginx(site_text: str | None = None) -> Result:
    """nginx -t on the project's sites; with `site_text`, on that version of the site instead (a
    load balancer's, whose upstream names the app hosts)."""
    nginx = find_nginx()
    if nginx is None:
        return parse_with_crossplane()
    names = ", ".join(str(site.relative_to(layout.PROJECT_DIR)) for site in sites())
    if site_text is not None:
        names += " (with the upstream as installed)"
    # Ports are never bound by -t; unprivileged ones let a normal user run the check.
    app_ports = [int(server.rsplit(":", 1)[1]) for server in layout.UPSTREAM_SERVERS if not server.startswith("unix:")]
    for site in sites():
        prefix = scratch_dir("check")
        try:
            if site_text is not None and site == layout.NGINX_SITE:
                site = prefix / "given" / site.name
                site.parent.mkdir()
                site.write_text(site_text)
            main = write_main_conf(
                prefix, nginx, LocalPorts(http=8080, app=app_ports), foreground=False, site_source=site
            )
            result = run([nginx, "-t", "-p", str(prefix), "-c", str(main)])
        finally:
            shutil.rmtree(prefix)
        said = [line for line in result.stderr.splitlines() if "[warn]" in line or "[emerg]" in line]
        if result.returncode or said:
            relative = site.relative_to(layout.PROJECT_DIR) if site.is_relative_to(layout.PROJECT_DIR) else site.name
            return Result("FAIL", "nginx", f"nginx -t rejects {relative}", "\n".join(said) or result.stderr.strip())
    version = run([nginx, "-v"]).stderr.strip().removeprefix("nginx version: ")
    tls = " (TLS with a throwaway self-signed certificate)" if layout.TLS_MODE != "none" else ""
    return Result("ok", "nginx", f"nginx -t accepts {names}{tls} ({version})")


def parse_with_crossplane() -> Result:
    missing = "nginx not installed (apt-get install nginx, or dnf install nginx)"
    names = ", ".join(str(site.relative_to(layout.PROJECT_DIR)) for site in sites())
    try:
        import crossplane  # type: ignore[import-untyped]
    except ImportError:
        return Result("skip", "nginx", f"{missing}; crossplane not installed either, {names} not parsed")
    errors = []
    for site in sites():
        parsed = crossplane.parse(str(site), single=True, check_ctx=False)
        errors += [f"{error['file']}:{error['line']}: {error['error']}" for error in parsed["errors"]]
    if errors:
        return Result("FAIL", "nginx", f"crossplane cannot parse {names}", "\n".join(errors))
    return Result("skip", "nginx", f"{missing}; parsed {names} with crossplane instead (syntax only)")


def systemd_analyze() -> str | None:
    return shutil.which("systemd-analyze") or shutil.which("systemd-analyze", path="/usr/bin:/bin")


def unit_tree(root: Path, drop_ins: dict[str, str] | None = None) -> Path:
    """A root folder in which systemd-analyze finds the units (with `drop_ins`: relative path ->
    content, e.g. my_app.service.d/x.conf), their programs and systemd's own units."""
    units = root / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for relative, text in (drop_ins or {}).items():
        (units / relative).parent.mkdir(exist_ok=True)
        (units / relative).write_text(text)
    for name in layout.UNITS:
        shutil.copy(layout.SYSTEMD_DIR / name, units / name)
        for program in EXEC_LINE.findall((units / name).read_text()):
            inside = root / program.lstrip("/")
            inside.parent.mkdir(parents=True, exist_ok=True)
            if program.startswith(layout.APP_DIR + "/") or program in layout.METRICS_PROGRAMS:
                # The release (its venv, its deploy/ scripts) exists only once installed, the
                # exporters only on the server (packages deploy/install asks for): a stub stands in
                # for their programs.
                inside.write_text("#!/bin/sh\n")
                inside.chmod(0o755)
            elif Path(program).exists():
                shutil.copy(program, inside)
    for system_units in (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system")):
        if system_units.is_dir():
            shutil.copytree(system_units, root / "usr" / "lib" / "systemd" / "system", symlinks=True)
            break
    return units


def units_to_verify() -> list[str]:
    """Template units (name@.service) are verified as their first instance."""
    first = layout.INSTANCES[0] if layout.INSTANCES else ""
    return [name.replace("@.", f"@{first}.") for name in layout.UNITS]


def check_systemd(analyze: str, units: Path, chosen: list[str] | None = None) -> Result:
    verified = chosen or units_to_verify()
    names = ", ".join(verified)
    result = run([analyze, "verify", "--man=no", f"--root={units.parents[2]}", *verified])
    # Unknown keys and bad values are only warnings with exit 0: any output is a finding.
    said = (result.stdout + result.stderr).strip()
    if result.returncode or said:
        return Result("FAIL", "systemd", f"systemd-analyze verify rejects {names}", said)
    return Result("ok", "systemd", f"systemd-analyze verify accepts {names}")


def check_sandbox(analyze: str, units: Path) -> Result:
    """systemd-analyze security of the app's service and of each exporter (metrics on)."""
    scores, failed = [], []
    for name in [layout.SERVICE_UNIT, *layout.METRICS_UNITS]:
        result = run([analyze, "security", "--offline=true", str(units / name)])
        found = EXPOSURE.search(result.stdout)
        if not found:
            said = f"systemd-analyze security gave no exposure level for {name}"
            return Result("FAIL", "sandbox", said, result.stderr.strip())
        exposure = float(found.group(1))
        scores.append(f"{name} exposure {exposure}")
        if exposure > EXPOSURE_LIMIT:
            failed.append(result.stdout.strip())
    summary = f"{', '.join(scores)} (at most {EXPOSURE_LIMIT})"
    if failed:
        return Result("FAIL", "sandbox", summary, "\n".join(failed))
    return Result("ok", "sandbox", summary)


def check_units(drop_ins: dict[str, str] | None = None, chosen: list[str] | None = None) -> list[Result]:
    """systemd-analyze verify and security on the units; with `drop_ins` among them, verifying the
    `chosen` units (every instance: each may have drop-ins of its own)."""
    analyze = systemd_analyze()
    if analyze is None:
        reason = "systemd-analyze not installed (apt-get install systemd)"
        return [Result("skip", "systemd", reason), Result("skip", "sandbox", reason)]
    with tempfile.TemporaryDirectory(prefix=f"{layout.SLUG}-units-") as scratch:
        units = unit_tree(Path(scratch), drop_ins)
        return [check_systemd(analyze, units, chosen), check_sandbox(analyze, units)]


# PostgreSQL's own defaults: what a server admits unless its configuration says otherwise.
POSTGRESQL_MAX_CONNECTIONS = 100
POSTGRESQL_RESERVED = 3


def check_database() -> list[Result]:
    """database=postgresql: the connections one app host may open, against PostgreSQL's defaults.
    The server's real max_connections, and its cores when workers is auto, are counted by
    deploy/install there."""
    if not layout.DATABASE:
        return []
    env = read_env_file(layout.ENV_SOURCE) if layout.ENV_SOURCE.exists() else {}
    need = database.connections(env)
    where = f" (workers auto, on this machine's {os.cpu_count()} cores)" if layout.WORKERS == "auto" else ""
    problem = database.capacity_problem(need, 1, POSTGRESQL_MAX_CONNECTIONS, POSTGRESQL_RESERVED)
    if problem:
        # Not a failure here: the server's max_connections may be raised; deploy/install refuses there.
        said = f"one app host, with PostgreSQL's defaults: {problem}{where}"
        return [Result("skip", "database", said, tool_missing=False)]
    available = POSTGRESQL_MAX_CONNECTIONS - POSTGRESQL_RESERVED
    return [
        Result(
            "ok",
            "database",
            f"one app host opens at most {need.needed(1)} PostgreSQL connections ({need.explain(1)}){where}, of the"
            f" {available} PostgreSQL admits by default",
        )
    ]


CHECKS: list[Callable[[], Result | list[Result]]] = [
    check_python,
    check_gunicorn,
    check_nginx,
    check_units,
    check_database,
]


# Set to 1 where a missing tool must fail the check (a CI job that installs them all). Not `CI`:
# that one is set by every CI service, also for jobs that only bake.
STRICT_VARIABLE = "WSGI_DEPLOY_STRICT"


def strict_from_environment() -> bool:
    return os.environ.get(STRICT_VARIABLE, "").lower() in {"1", "true", "yes"}


def count(number: int, thing: str) -> str:
    return f"{number} {thing}" if number == 1 else f"{number} {thing}s"


def run_checks(strict: bool) -> int:
    """Run every check, print one line each, and return the exit status."""
    failed = 0
    for check in CHECKS:
        try:
            outcome = check()
        except Exception as error:  # a broken check is reported like a failed one
            outcome = Result("FAIL", check.__name__.removeprefix("check_"), f"the check itself failed: {error!r}")
        for result in outcome if isinstance(outcome, list) else [outcome]:
            status = result.status
            if status == "skip" and strict and result.tool_missing:
                status, result.summary = "FAIL", result.summary + " [strict: a missing tool is a failure]"
            print(f"{status:<5} {result.name:<9} {result.summary}")
            if result.details:
                print("\n".join("      " + line for line in result.details.splitlines()))
            failed += status == "FAIL"
    print(f"{'all checks passed' if not failed else f'{failed} check(s) failed'} for {layout.PROJECT_DIR}")
    return 1 if failed else 0
