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
NGINX_USER = {{ cookiecutter.__nginx_user | tojson }}

# In this project.
NGINX_SITE = DEPLOY_DIR / "nginx" / "{{ cookiecutter.__service }}.conf"
NGINX_SNIPPETS = DEPLOY_DIR / "nginx" / "snippets"
# Included by the site as snippets/<this>/..., relative to nginx's configuration folder.
NGINX_SNIPPETS_NAME = {{ cookiecutter.__service | tojson }}
ERROR_PAGES = DEPLOY_DIR / "nginx" / "errors"
STATIC_SOURCE = PROJECT_DIR / SLUG / "static"
SYSTEMD_DIR = DEPLOY_DIR / "systemd"
SERVICE_UNIT = "{{ cookiecutter.__service }}.service"
UNITS = sorted(p.name for p in SYSTEMD_DIR.iterdir() if p.suffix in {".service", ".socket"})
GUNICORN_CONF = PROJECT_DIR / "gunicorn.conf.py"
LOCAL_VENV = PROJECT_DIR / "{{ cookiecutter.project_slug }}_venv"
