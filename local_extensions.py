"""Everything the template derives from the answers, computed once, in Python.

cookiecutter loads this module through `_extensions` in cookiecutter.json. Templates, file names
and hooks read the derived names from here (`{% set derived = cookiecutter | derive %}`) instead of
assembling strings; nothing here can be set from the command line, because none of it is an
answer. The platform table is the one place that knows what each server operating system differs in.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from jinja2 import Environment
from jinja2.ext import Extension

TEMPLATE_DIR = Path(__file__).resolve().parent

# gunicorn's version in the generated requirements.txt, and the timeouts nginx and systemd follow.
GUNICORN_VERSION = "27.0.1"
# Seconds a sync worker may spend on one request before gunicorn restarts it.
TIMEOUT = 30
# Seconds workers get to finish their requests on a stop or reload.
GRACEFUL_TIMEOUT = 30


@dataclass(frozen=True)
class Platform:
    """What a server operating system decides for the generated files and the installer."""

    name: str
    # As /etc/os-release says it: the installer compares these with the server it runs on.
    os_id: str
    os_version_id: str
    # The nginx release the distribution ships, as (major, minor).
    nginx_version: tuple[int, int]
    nginx_user: str
    # Where sites live; `site_link_dir` is None where nginx reads the folder as it is (conf.d).
    site_dir: str
    site_link_dir: str | None
    # The distribution's own site that answers unknown hosts on port 80, if it has one.
    stock_site: str | None
    # The Python release the server ships (deploy/wheelhouse downloads wheels for it), the
    # interpreter deploy/setup-venv builds the venv with there, and the packages that provide it.
    python: str
    system_python: str
    python_packages: str
    # How the installer tells the operator to add a missing package.
    package_install: str
    selinux: bool

    @property
    def http2_directive(self) -> bool:
        """`http2 on;` exists from nginx 1.25.1; before it, `listen ... http2`."""
        return self.nginx_version >= (1, 25)


PLATFORMS: dict[str, Platform] = {
    platform.name: platform
    for platform in (
        Platform(
            name="debian-13",
            os_id="debian",
            os_version_id="13",
            nginx_version=(1, 26),
            nginx_user="www-data",
            site_dir="/etc/nginx/sites-available",
            site_link_dir="/etc/nginx/sites-enabled",
            stock_site="/etc/nginx/sites-enabled/default",
            python="3.13",
            system_python="python3",
            python_packages="python3 python3-venv",
            package_install="apt-get install",
            selinux=False,
        ),
        Platform(
            name="debian-12",
            os_id="debian",
            os_version_id="12",
            nginx_version=(1, 22),
            nginx_user="www-data",
            site_dir="/etc/nginx/sites-available",
            site_link_dir="/etc/nginx/sites-enabled",
            stock_site="/etc/nginx/sites-enabled/default",
            python="3.11",
            system_python="python3",
            python_packages="python3 python3-venv",
            package_install="apt-get install",
            selinux=False,
        ),
        Platform(
            name="ubuntu-24.04",
            os_id="ubuntu",
            os_version_id="24.04",
            nginx_version=(1, 24),
            nginx_user="www-data",
            site_dir="/etc/nginx/sites-available",
            site_link_dir="/etc/nginx/sites-enabled",
            stock_site="/etc/nginx/sites-enabled/default",
            python="3.12",
            system_python="python3",
            python_packages="python3 python3-venv",
            package_install="apt-get install",
            selinux=False,
        ),
        Platform(
            name="rhel-9",
            os_id="rhel",
            os_version_id="9",
            nginx_version=(1, 20),
            nginx_user="nginx",
            site_dir="/etc/nginx/conf.d",
            site_link_dir=None,
            stock_site=None,
            python="3.11",
            system_python="python3.11",
            python_packages="python3.11",
            package_install="dnf install",
            selinux=True,
        ),
    )
}
DEFAULT_PLATFORM = "debian-13"
# Where the metrics of a project (the metrics answer) are served on its server: nginx's stub_status,
# then its exporter, then mtail, on consecutive loopback ports. Not the Debian packages' own ports
# (9113, 3903): their units start when the package is installed, and would hold them.
METRICS_PORT = 9145
# Seconds a histogram bucket of request times ends at (mtail's latency histogram): from a static
# file's few milliseconds to gunicorn's timeout.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(frozen=True)
class Metrics:
    """Prometheus exporters of a project (metrics=prometheus): names, addresses and files."""

    # Where the three listen: stub_status, then each exporter. Loopback; a drop-in of an exporter's
    # unit may move it to a private address (the generated README says how).
    address: str
    status_port: int
    nginx_exporter_port: int
    mtail_port: int
    status_path: str
    # prometheus-nginx-exporter and mtail, each a hardened unit of the project running the program
    # of Debian's package of the same name.
    nginx_exporter_command: str
    mtail_command: str
    nginx_exporter_unit: str
    mtail_unit: str
    # mtail's program folder on the server (mtail loads every *.mtail in it), and the program.
    mtail_dir: str
    mtail_program: str
    # The release that serves, for nginx: a snippet deploy/install rewrites at every switch, that
    # maps the variable below to the release's id (the access log's release= field).
    release_snippet: str
    release_variable: str
    # One line per deploy and rollback, written by deploy/install, read by mtail (deploy markers).
    deploys_log: str
    # Every metric mtail makes starts with this (the service's name).
    prefix: str
    latency_buckets: tuple[float, ...] = LATENCY_BUCKETS

    @property
    def status_address(self) -> str:
        return f"{self.address}:{self.status_port}"

    @property
    def nginx_exporter_address(self) -> str:
        return f"{self.address}:{self.nginx_exporter_port}"

    @property
    def mtail_target(self) -> str:
        return f"{self.address}:{self.mtail_port}"

    @property
    def targets(self) -> list[str]:
        """What a Prometheus scrapes: the nginx exporter, then mtail."""
        return [self.nginx_exporter_address, self.mtail_target]

    @property
    def ports(self) -> list[int]:
        return [self.status_port, self.nginx_exporter_port, self.mtail_port]

    @property
    def units(self) -> list[str]:
        return [self.nginx_exporter_unit, self.mtail_unit]

    @property
    def commands(self) -> list[str]:
        return [self.nginx_exporter_command, self.mtail_command]


def metrics(answers: Mapping[str, object], slug: str, snippets_dir: str) -> Metrics | None:
    if answers.get("metrics", "off") != "prometheus":
        return None
    return Metrics(
        address="127.0.0.1",
        status_port=METRICS_PORT,
        nginx_exporter_port=METRICS_PORT + 1,
        mtail_port=METRICS_PORT + 2,
        status_path="/stub_status",
        nginx_exporter_command="/usr/bin/prometheus-nginx-exporter",
        mtail_command="/usr/bin/mtail",
        nginx_exporter_unit=f"{slug}-nginx-exporter.service",
        mtail_unit=f"{slug}-mtail.service",
        mtail_dir=f"/etc/{slug}-mtail",
        mtail_program=f"/etc/{slug}-mtail/{slug}.mtail",
        release_snippet=f"{snippets_dir}/release.conf",
        release_variable=f"${slug}_release",
        deploys_log=f"/var/log/{slug}-deploys.log",
        prefix=slug,
    )


# PostgreSQL's unix socket folder on Debian and RHEL: peer authentication over it needs no password.
# Named in the env file because psycopg's own libpq (its binary wheel) looks in /tmp by default.
POSTGRESQL_SOCKET_DIR = "/var/run/postgresql"


@dataclass(frozen=True)
class Database:
    """PostgreSQL for a Django project (database=postgresql): the names the server knows it by."""

    # The database, named for the service; the role, named for the service's account, because peer
    # authentication lets an account in as the role of its own name only.
    name: str
    role: str
    socket_dir: str = POSTGRESQL_SOCKET_DIR
    # gevent: the connections each worker's pool holds at most (psycopg-pool, Django's OPTIONS["pool"]),
    # where Django would give each request in flight one of its own; DJANGO_DB_POOL_SIZE overrides it.
    # bench/run's database page served as many requests with a pool of 10 per worker as without.
    pool_size: int = 10
    # The platform package that gives the server (deploy/install creates role and database in it).
    package: str = "postgresql"


def database(answers: Mapping[str, object]) -> Database | None:
    if answers.get("database", "sqlite") != "postgresql":
        return None
    return Database(name=str(answers["project_slug"]), role=str(answers["server_user"]))


# remote_app_servers when there are none: "none" is the default (a prompt shows an empty default
# as "()"); an empty answer, as replay files from before hold it, means the same.
NO_APP_SERVERS = frozenset({"none", ""})


@dataclass(frozen=True)
class Derived:
    """Names and paths that follow from the answers; templates loop over the lists."""

    service: str
    upstream: str
    app_dir: str  # the link to the running release
    venv_dir: str  # through it, the release's venv
    releases_dir: str
    venvs_dir: str
    shared_dir: str  # what outlives releases: the app's uploads and media, writable by the service
    static_root: str
    errors_root: str
    # While this file exists, nginx answers every request but the health check with 503 and the
    # maintenance page (deploy/maintenance on|off); nginx can see it, the service cannot write it.
    maintenance_flag: str
    acme_root: str
    state_dir: str
    # deploy/backup's snapshots of the app's data (the state folder's databases, shared/): root's alone.
    backup_dir: str
    # The backup answer: local, restic (local, then a copy to a restic repository) or off; the
    # timer that takes the daily snapshot (None: off).
    backup: str
    backup_timer: str | None
    # deploy/install's own records on the server: manifest, journal, backups.
    install_state_dir: str
    runtime_dir: str
    env_file: str
    # nginx's own files for this site: its access log, and the shared cache (with the cache answer).
    access_log: str
    cache_dir: str | None
    # systemd: `my_app` or, with several instances, the template `my_app@` and its instance names.
    unit_stem: str
    instance_names: list[str]
    app_services: list[str]
    socket_units: list[str]
    # The app's TCP ports, one per instance from app_port on: where gunicorn listens with bind=tcp,
    # and on an app host of its own (deploy/install --role app) whatever bind says.
    app_ports: list[int]
    # nginx's upstream servers on this machine, one per gunicorn instance: unix:/path or 127.0.0.1:port.
    upstream_servers: list[str]
    # One app server on TCP, and no other: where deploy/install's bridge answers while it restarts
    # into a release with another venv (nginx's backup server); None otherwise (a socket or another
    # server covers the restart).
    bridge_server: str | None
    # The socket path as the unit spells it (%i: the instance name), when bind is unix.
    socket_path: str | None
    remote_app_servers: list[str]
    worker_class: str
    wsgi_app: str
    tls: bool
    tls_certificate: str
    tls_certificate_key: str
    platform: Platform
    # Every platform the template knows, by name: the installer refuses any other server.
    platforms: list[str]
    nginx_site_path: str
    nginx_site_link: str | None
    nginx_snippets_dir: str
    # The Prometheus exporters (None: metrics off, the default).
    metrics: Metrics | None
    # PostgreSQL (None: SQLite in the state folder, the default).
    database: Database | None
    gunicorn_version: str = GUNICORN_VERSION
    timeout: int = TIMEOUT
    graceful_timeout: int = GRACEFUL_TIMEOUT

    @property
    def several_instances(self) -> bool:
        return bool(self.instance_names)

    @property
    def upstream_size(self) -> int:
        return len(self.upstream_servers) + len(self.remote_app_servers)


def worker_class(answers: Mapping[str, object]) -> str:
    chosen = str(answers["worker_class"])
    if chosen != "auto":
        return chosen
    return "asgi" if answers["framework"] == "asgi" else "sync"


def wsgi_app(answers: Mapping[str, object]) -> str:
    framework = answers["framework"]
    if framework == "existing":
        return str(answers["existing_app"])
    return "asgi:application" if framework == "asgi" else "wsgi:application"


def derive(answers: Mapping[str, object]) -> Derived:
    """The derived names for these answers (assumed valid: the pre-generation hook checked them)."""
    slug = str(answers["project_slug"])
    install_dir = str(answers["install_dir"])
    platform = PLATFORMS[str(answers["platform"])]
    instances = int(str(answers["instances"]))
    tcp = answers["bind"] == "tcp"
    several = instances > 1
    unit_stem = f"{slug}@" if several else slug
    ports = [int(str(answers["app_port"])) + index for index in range(instances)]
    if tcp:
        instance_names = [str(port) for port in ports] if several else []
        upstream_servers = [f"127.0.0.1:{port}" for port in ports]
        socket_path = None
    else:
        instance_names = [str(number) for number in range(1, instances + 1)] if several else []
        socket_path = f"/run/{slug}/gunicorn-%i.sock" if several else f"/run/{slug}/gunicorn.sock"
        upstream_servers = [f"unix:{socket_path.replace('%i', name)}" for name in instance_names or ["1"]]
    app_services = [f"{unit_stem}{name}.service" for name in instance_names] or [f"{slug}.service"]
    letsencrypt = answers["tls_mode"] == "letsencrypt"
    live = f"/etc/letsencrypt/live/{answers['domain_name']}"
    remote_answer = str(answers["remote_app_servers"])
    remote = remote_answer.split(",") if remote_answer not in NO_APP_SERVERS else []
    return Derived(
        service=slug,
        upstream=f"{slug}_app",
        app_dir=f"{install_dir}/current",
        venv_dir=f"{install_dir}/current/venv",
        releases_dir=f"{install_dir}/releases",
        venvs_dir=f"{install_dir}/venvs",
        shared_dir=f"{install_dir}/shared",
        static_root=f"{install_dir}/static",
        errors_root=f"{install_dir}/errors",
        maintenance_flag=f"{install_dir}/maintenance",
        acme_root=f"{install_dir}/acme",
        state_dir=f"/var/lib/{slug}",
        backup_dir=f"/var/backups/{slug}",
        backup=str(answers.get("backup", "local")),
        backup_timer=None if answers.get("backup", "local") == "off" else f"{slug}-backup.timer",
        install_state_dir=f"/var/lib/{slug}-install",
        runtime_dir=f"/run/{slug}",
        env_file=f"/etc/{slug}/{slug}.env",
        access_log=f"/var/log/nginx/{slug}.access.log",
        cache_dir=f"/var/lib/nginx/{slug}-cache" if answers.get("cache") == "on" else None,
        unit_stem=unit_stem,
        instance_names=instance_names,
        app_services=app_services,
        socket_units=[] if tcp else [name.removesuffix(".service") + ".socket" for name in app_services],
        app_ports=ports,
        upstream_servers=upstream_servers,
        bridge_server=f"127.0.0.1:{ports[0] + 1}" if tcp and not several and not remote else None,
        socket_path=socket_path,
        remote_app_servers=remote,
        worker_class=worker_class(answers),
        wsgi_app=wsgi_app(answers),
        tls=answers["tls_mode"] != "none",
        tls_certificate=f"{live}/fullchain.pem" if letsencrypt else str(answers["tls_certificate"]),
        tls_certificate_key=f"{live}/privkey.pem" if letsencrypt else str(answers["tls_certificate_key"]),
        platform=platform,
        platforms=list(PLATFORMS),
        nginx_site_path=f"{platform.site_dir}/{slug}.conf",
        nginx_site_link=f"{platform.site_link_dir}/{slug}.conf" if platform.site_link_dir else None,
        nginx_snippets_dir=f"/etc/nginx/snippets/{slug}",
        metrics=metrics(answers, slug, f"/etc/nginx/snippets/{slug}"),
        database=database(answers),
    )


# This file as it was when Python imported it.
_IMPORTED = Path(__file__).read_bytes()


def as_on_disk() -> ModuleType:
    """This module as its file reads now.

    One process can render two versions of the template from one folder (cruft's update checks
    out the old commit, renders it, then the new one), and Python's import cache would hand the
    second render the first version's code.
    """
    current = Path(__file__).read_bytes()
    if current == _IMPORTED:
        return sys.modules[__name__]
    name = f"{__name__}_{hashlib.sha256(current).hexdigest()[:12]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, __file__)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class DeploymentExtension(Extension):
    """`cookiecutter | derive`, `cookiecutter | unit_stem` (for file names) and `template_dir`."""

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        current = as_on_disk()
        environment.filters["derive"] = current.derive
        environment.filters["unit_stem"] = lambda answers: current.derive(answers).unit_stem
        environment.globals["template_dir"] = str(current.TEMPLATE_DIR)
