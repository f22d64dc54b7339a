{% set derived = cookiecutter | derive %}
"""Where everything of {{ cookiecutter.project_name }} lives, in the project and on the server.

Rendered once from the template's answers; deploy/check, deploy/run-local and deploy/install take
every name and path from here instead of spelling them again.
"""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEPLOY_DIR = PROJECT_DIR / "deploy"

SLUG = {{ cookiecutter.project_slug | tojson }}
DOMAIN = {{ cookiecutter.domain_name | tojson }}
# The app's health check, through nginx and on each gunicorn directly.
HEALTH_PATH = "/healthz"
FRAMEWORK = {{ cookiecutter.framework | tojson }}
# What gunicorn loads (wsgi_app in gunicorn.conf.py).
APP = {{ derived.wsgi_app | tojson }}
WORKER_CLASS = {{ derived.worker_class | tojson }}
# gunicorn's workers ("auto": 2 x cores + 1 where it starts) and threads per gthread worker, as
# answered; WEB_CONCURRENCY and GUNICORN_THREADS in the env file win over both.
WORKERS = {{ cookiecutter.workers | string | tojson }}
THREADS = {{ cookiecutter.threads | int }}
BIND = {{ cookiecutter.bind | tojson }}

# On the server. Each deploy is a release of its own in RELEASES_DIR, written once; APP_DIR is
# the link to the one that runs, and every unit and command names paths through it. A release's
# venv is a link to VENVS_DIR/<key>, shared by the releases whose requirements are the same.
INSTALL_DIR = {{ cookiecutter.install_dir | tojson }}
RELEASES_DIR = {{ derived.releases_dir | tojson }}
VENVS_DIR = {{ derived.venvs_dir | tojson }}
# What outlives releases (uploads, media): the one folder there the service may write to
# ($SHARED_DIRECTORY in the unit). Created once; a deploy, a rollback or a purge never empties it.
SHARED_DIR = {{ derived.shared_dir | tojson }}
APP_DIR = {{ derived.app_dir | tojson }}
VENV_DIR = {{ derived.venv_dir | tojson }}
STATIC_ROOT = {{ derived.static_root | tojson }}
ERRORS_ROOT = {{ derived.errors_root | tojson }}
# deploy/maintenance on: while this file exists, nginx answers 503 with the maintenance page.
MAINTENANCE_FLAG = {{ derived.maintenance_flag | tojson }}
# The app's TCP ports, one per instance: gunicorn's with bind=tcp, and on an app host of its own
# (deploy/install --role app) whatever bind says, since another machine reaches it over TCP only.
APP_PORTS: list[int] = {{ derived.app_ports | tojson }}
# The name of the site's upstream block, and what it lists: unix:/path or 127.0.0.1:port, one per
# gunicorn instance.
UPSTREAM = {{ derived.upstream | tojson }}
UPSTREAM_SERVERS = [
{% for server in derived.upstream_servers %}
    {{ server | tojson }},
{% endfor %}
]
# One app server on TCP: where deploy/install's bridge answers while the app restarts into a
# release with another venv (the upstream's backup server); None: nothing to bridge.
BRIDGE_SERVER: str | None = {{ derived.bridge_server | tojson if derived.bridge_server else "None" }}
# App servers on other machines, also in the upstream.
{% if derived.remote_app_servers %}
REMOTE_APP_SERVERS: list[str] = [
{% for server in derived.remote_app_servers %}
    {{ server | tojson }},
{% endfor %}
]
{% else %}
REMOTE_APP_SERVERS: list[str] = []
{% endif %}
SERVICE_USER = {{ cookiecutter.server_user | tojson }}
# Settings and secrets for the service (systemd's EnvironmentFile=), created once, mode 0600.
ENV_FILE = {{ derived.env_file | tojson }}
SYSTEMD_UNIT_DIR = "/etc/systemd/system"
# Where systemd makes the app's unix socket(s) (bind=unix); gone with them after an uninstall.
RUNTIME_DIR = {{ derived.runtime_dir | tojson }}
# The service's own data (systemd's StateDirectory=, $STATE_DIRECTORY): Django's SQLite database.
STATE_DIR = {{ derived.state_dir | tojson }}
# PostgreSQL (database=postgresql): the database, named for the service, and its role, named for
# the service's account (peer authentication), made by deploy/install in the server's PostgreSQL;
# its socket folder. None: Django's SQLite database in STATE_DIR.
{% if derived.database %}
DATABASE: str | None = {{ derived.database.name | tojson }}
DATABASE_ROLE: str | None = {{ derived.database.role | tojson }}
DATABASE_SOCKET_DIR: str | None = {{ derived.database.socket_dir | tojson }}
DATABASE_PACKAGE: str | None = {{ derived.database.package | tojson }}
# gevent: the connections each worker's pool holds at most (DJANGO_DB_POOL_SIZE overrides it).
DATABASE_POOL_SIZE = {{ derived.database.pool_size }}
{% else %}
DATABASE: str | None = None
DATABASE_ROLE: str | None = None
DATABASE_SOCKET_DIR: str | None = None
DATABASE_PACKAGE: str | None = None
DATABASE_POOL_SIZE = 0
{% endif %}
# deploy/backup's snapshots of the app's data (STATE_DIR's SQLite databases and SHARED_DIR), and how
# many deploy/backup keeps of each kind (taken by hand, by the timer, before a migration).
BACKUP_DIR = {{ derived.backup_dir | tojson }}
BACKUPS_KEPT = 7
# nginx's access log of this site; the shared cache's folder (None: no cache), emptied on redeploy.
ACCESS_LOG = {{ derived.access_log | tojson }}
CACHE_DIR: str | None = {{ derived.cache_dir | tojson if derived.cache_dir else "None" }}
# deploy/install's own records: the manifest of what it made, its journal, backups.
INSTALL_STATE_DIR = {{ derived.install_state_dir | tojson }}

# HTTPS: "none", "letsencrypt" or "existing".
TLS_MODE = {{ cookiecutter.tls_mode | tojson }}
TLS_CERTIFICATE = {{ derived.tls_certificate | tojson }}
TLS_CERTIFICATE_KEY = {{ derived.tls_certificate_key | tojson }}
TLS_EMAIL = {{ cookiecutter.tls_email | tojson }}
# certbot --webroot writes its challenges here; nginx serves them on port 80.
ACME_ROOT = {{ derived.acme_root | tojson }}

# The server's platform, and the ones the template knows (deploy/install refuses any other).
PLATFORM = {{ cookiecutter.platform | tojson }}
PLATFORMS: list[str] = {{ derived.platforms | tojson }}
# How the platform adds a package, and the packages that give a Python with venv (3.11+).
PACKAGE_INSTALL = {{ derived.platform.package_install | tojson }}
PYTHON_PACKAGES = {{ derived.platform.python_packages | tojson }}
# The interpreter deploy/setup-venv builds the service's venv with on the server.
SYSTEM_PYTHON = {{ derived.platform.system_python | tojson }}
# SELinux labels nginx's folders (RHEL).
SELINUX = {{ derived.platform.selinux }}
# HTTP/2 as `http2 on;` (nginx 1.25.1 and later) rather than `listen ... http2`.
NGINX_HTTP2_DIRECTIVE = {{ derived.platform.http2_directive }}
NGINX_SITE_PATH = {{ derived.nginx_site_path | tojson }}
# The sites-enabled link, where the platform enables sites that way (None: conf.d is read as is).
{% if derived.nginx_site_link %}
NGINX_SITE_LINK: str | None = {{ derived.nginx_site_link | tojson }}
{% else %}
NGINX_SITE_LINK: str | None = None
{% endif %}
NGINX_SNIPPETS_DIR = {{ derived.nginx_snippets_dir | tojson }}

# Prometheus metrics (the metrics answer): nginx's stub_status and its exporter, and mtail reading
# the access log, each a unit of its own on loopback where nginx runs. Empty lists and None: metrics off.
{% if derived.metrics %}
{% set metrics = derived.metrics %}
METRICS_UNITS: list[str] = {{ metrics.units | tojson }}
# Where each answers, as a Prometheus scrape target: the nginx exporter's, then mtail's.
METRICS_TARGETS: list[str] = {{ metrics.targets | tojson }}
# The programs the units run, from Debian's prometheus-nginx-exporter and mtail packages (deploy/check
# verifies the units with stubs of them where they are not installed).
METRICS_PROGRAMS: list[str] = {{ metrics.commands | tojson }}
MTAIL_SOURCE = DEPLOY_DIR / "mtail" / "{{ derived.service }}.mtail"
MTAIL_DIR = {{ metrics.mtail_dir | tojson }}
MTAIL_PROGRAM = {{ metrics.mtail_program | tojson }}
# The snippet that names the serving release to nginx (rewritten at every switch), and the log of
# deploys and rollbacks mtail reads.
RELEASE_SNIPPET = {{ metrics.release_snippet | tojson }}
DEPLOYS_LOG = {{ metrics.deploys_log | tojson }}
{% else %}
METRICS_UNITS: list[str] = []
METRICS_TARGETS: list[str] = []
METRICS_PROGRAMS: list[str] = []
MTAIL_SOURCE: Path | None = None
MTAIL_DIR: str | None = None
MTAIL_PROGRAM: str | None = None
RELEASE_SNIPPET: str | None = None
DEPLOYS_LOG: str | None = None
{% endif %}

# systemd. With several instances the units are templates ({{ derived.service }}@.service).
INSTANCES: list[str] = {{ derived.instance_names | tojson }}
UNIT_STEM = {{ derived.unit_stem | tojson }}
SERVICE_UNIT = UNIT_STEM + ".service"
{% if cookiecutter.instances | int > 1 %}
APP_SERVICES = [f"{UNIT_STEM}{name}.service" for name in INSTANCES]
{% else %}
APP_SERVICES = [SERVICE_UNIT]
{% endif %}
{% if cookiecutter.bind == "unix" %}
SOCKET_UNITS = [name.replace(".service", ".socket") for name in APP_SERVICES]
{% else %}
SOCKET_UNITS: list[str] = []
{% endif %}
# The backup answer: "local" (snapshots on this machine), "restic" (each also sent to the restic
# repository the env file names) or "off" (no timer, no snapshot before migrations).
BACKUP = {{ derived.backup | tojson }}
# The daily snapshot of the app's data (deploy/backup --kind timer), on every machine the app runs on.
BACKUP_TIMER: str | None = {{ derived.backup_timer | tojson if derived.backup_timer else "None" }}
# The units systemctl enables and starts, sockets first; code updates reload APP_SERVICES one by one.
ACTIVE_UNITS = SOCKET_UNITS + APP_SERVICES + ([BACKUP_TIMER] if BACKUP_TIMER else [])

# In this project.
NGINX_SITE = DEPLOY_DIR / "nginx" / "{{ derived.service }}.conf"
{% if cookiecutter.tls_mode == "letsencrypt" %}
# Served until certbot has the first certificate.
NGINX_ACME_SITE: Path | None = DEPLOY_DIR / "nginx" / "{{ derived.service }}.acme.conf"
{% else %}
NGINX_ACME_SITE: Path | None = None
{% endif %}
NGINX_SNIPPETS = DEPLOY_DIR / "nginx" / "snippets"
# Included by the site as snippets/<this>/..., relative to nginx's configuration folder.
NGINX_SNIPPETS_NAME = {{ derived.service | tojson }}
ERROR_PAGES = DEPLOY_DIR / "nginx" / "errors"
{% if cookiecutter.framework == "django" %}
# Django collects static files (manage.py collectstatic) instead of shipping a folder.
STATIC_SOURCE: Path | None = None
# Django's database lives in the service's state folder (STATE_DIR) on the server, in .state/ of
# the project elsewhere (not installed: deploy/install leaves hidden files behind).
LOCAL_STATE_DIR = PROJECT_DIR / ".state"
{% elif cookiecutter.framework == "existing" %}
STATIC_SOURCE: Path | None = PROJECT_DIR / "static"
{% else %}
STATIC_SOURCE: Path | None = PROJECT_DIR / SLUG / "static"
{% endif %}
# Settings made at bake time (Django's secret key), installed once as ENV_FILE.
ENV_SOURCE = PROJECT_DIR / "{{ cookiecutter.project_slug }}.env"
SYSTEMD_DIR = DEPLOY_DIR / "systemd"
UNITS = sorted(p.name for p in SYSTEMD_DIR.iterdir() if p.suffix in {".service", ".socket", ".timer"})
GUNICORN_CONF = PROJECT_DIR / "gunicorn.conf.py"
LOCAL_VENV = PROJECT_DIR / "{{ cookiecutter.project_slug }}_venv"
