"""Django settings for {{ cookiecutter.project_name }}.

Everything that differs between machines comes from the environment: on the server from
{{ cookiecutter.__env_file }} (systemd's EnvironmentFile=, mode 0600), locally from
{{ cookiecutter.project_slug }}.env, made at bake time with a fresh secret key and never committed.
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
# nginx answers only for this name (any other Host is closed at nginx); extra local names come
# from DJANGO_ALLOWED_HOSTS (deploy/run-local sets localhost).
ALLOWED_HOSTS = [{{ cookiecutter.domain_name | tojson }}, *filter(None, os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","))]

INSTALLED_APPS = ["django.contrib.staticfiles"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "{{ cookiecutter.project_slug }}.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [PACKAGE_DIR / "templates"],
    }
]

# SQLite in systemd's StateDirectory (/var/lib/{{ cookiecutter.__service }}), the one folder the service may write.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB_PATH", "/var/lib/{{ cookiecutter.__service }}/db.sqlite3"),
    }
}

# collectstatic gathers the files into the folder nginx serves at /static/.
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", "{{ cookiecutter.__static_root }}")
STATICFILES_DIRS = [PACKAGE_DIR / "static"]

# nginx sets X-Forwarded-Proto from the real connection and clears what clients send.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
{% if cookiecutter.tls_mode != "none" %}
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = ["https://{{ cookiecutter.domain_name }}"]
{% endif %}

USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Errors go to stderr: journald on the server, gunicorn.log under run-local.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
