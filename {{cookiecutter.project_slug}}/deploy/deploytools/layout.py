"""Where everything of {{ cookiecutter.project_name }} lives, in the project and on the server.

Rendered once from the template's answers; deploy/check and deploy/run-local take every name and
path from here instead of spelling them again.
"""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEPLOY_DIR = PROJECT_DIR / "deploy"

SLUG = {{ cookiecutter.project_slug | tojson }}
DOMAIN = {{ cookiecutter.domain_name | tojson }}
BIND = {{ cookiecutter.bind | tojson }}

# On the server.
INSTALL_DIR = {{ cookiecutter.install_dir | tojson }}
APP_DIR = {{ cookiecutter.__app_dir | tojson }}
VENV_DIR = {{ cookiecutter.__venv_dir | tojson }}
STATIC_ROOT = {{ cookiecutter.__static_root | tojson }}
ERRORS_ROOT = {{ cookiecutter.__errors_root | tojson }}
{% if cookiecutter.bind == "unix" %}
SOCKET_PATH = {{ cookiecutter.__socket_path | tojson }}
APP_ADDRESSES: list[str] = []
{% else %}
SOCKET_PATH = None
APP_ADDRESSES = ["127.0.0.1:{{ cookiecutter.app_port }}"]
{% endif %}
SERVICE_USER = {{ cookiecutter.server_user | tojson }}
# Settings and secrets for the service (systemd's EnvironmentFile=), created once, mode 0600.
ENV_FILE = {{ cookiecutter.__env_file | tojson }}
SYSTEMD_UNIT_DIR = "/etc/systemd/system"

# The platform's nginx: {{ cookiecutter.platform }}.
PLATFORM = {{ cookiecutter.platform | tojson }}
NGINX_USER = {{ cookiecutter.__nginx_user | tojson }}
NGINX_SITE_PATH = {{ cookiecutter.__nginx_site_path | tojson }}
# The sites-enabled link, where the platform enables sites that way (None: conf.d is read as is).
{% if cookiecutter.__nginx_site_link %}
NGINX_SITE_LINK: str | None = {{ cookiecutter.__nginx_site_link | tojson }}
{% else %}
NGINX_SITE_LINK: str | None = None
{% endif %}
NGINX_SNIPPETS_DIR = {{ cookiecutter.__nginx_snippets_dir | tojson }}

# In this project.
NGINX_SITE = DEPLOY_DIR / "nginx" / "{{ cookiecutter.__service }}.conf"
NGINX_SNIPPETS = DEPLOY_DIR / "nginx" / "snippets"
# Included by the site as snippets/<this>/..., relative to nginx's configuration folder.
NGINX_SNIPPETS_NAME = {{ cookiecutter.__service | tojson }}
ERROR_PAGES = DEPLOY_DIR / "nginx" / "errors"
STATIC_SOURCE = PROJECT_DIR / SLUG / "static"
SYSTEMD_DIR = DEPLOY_DIR / "systemd"
SERVICE_UNIT = "{{ cookiecutter.__service }}.service"
# The units systemctl starts, reloads and stops, in that order (sockets first).
{% if cookiecutter.bind == "unix" %}
ACTIVE_UNITS = ["{{ cookiecutter.__service }}.socket", SERVICE_UNIT]
{% else %}
ACTIVE_UNITS = [SERVICE_UNIT]
{% endif %}
# The gunicorn services a code update reloads, one at a time.
APP_SERVICES = [SERVICE_UNIT]
UNITS = sorted(p.name for p in SYSTEMD_DIR.iterdir() if p.suffix in {".service", ".socket"})
GUNICORN_CONF = PROJECT_DIR / "gunicorn.conf.py"
LOCAL_VENV = PROJECT_DIR / "{{ cookiecutter.project_slug }}_venv"
