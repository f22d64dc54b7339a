{% set derived = cookiecutter | derive %}
"""Django settings for {{ cookiecutter.project_name }}: startproject's, set up for production behind nginx.

Everything that differs between machines comes from the environment: on the server from
{{ derived.env_file }} (systemd's EnvironmentFile=, mode 0600), locally from
{{ cookiecutter.project_slug }}.env, made at bake time with a fresh secret key and never committed.
"""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent


def env_list(name: str) -> list[str]:
    """A comma-separated setting from the environment, e.g. DJANGO_ALLOWED_HOSTS=a.example,b.example."""
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
# nginx answers only for this name (any other Host is closed at nginx); extra local names come
# from DJANGO_ALLOWED_HOSTS (deploy/run-local sets localhost).
ALLOWED_HOSTS = [{{ cookiecutter.domain_name | tojson }}, *env_list("DJANGO_ALLOWED_HOSTS")]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "{{ cookiecutter.project_slug }}.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [PACKAGE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]
WSGI_APPLICATION = "wsgi.application"

# SQLite in the service's state folder, the one folder the service may write: systemd makes
# /var/lib/{{ derived.service }} for the unit's StateDirectory= and passes its path in STATE_DIRECTORY.
# Local runs (deploy/run-local, deploy/manage) keep the database in .state/ of the project.
STATE_DIR = Path(os.environ.get("STATE_DIRECTORY") or PROJECT_DIR / ".state")
{% if derived.database %}
# PostgreSQL wherever PGDATABASE is set: on the server deploy/install writes it into the env file,
# with PGHOST (the local socket folder: peer authentication, no password) and PGUSER; with several
# app hosts Ansible writes the db host's address and PGPASSWORD there instead. libpq reads the PG*
# variables itself, as psql and pg_dump do, so all three reach the same database. Without
# PGDATABASE (local runs, the project's tests), SQLite in the state folder.
if os.environ.get("PGDATABASE"):
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ["PGDATABASE"],
            # Connections are kept between requests for this many seconds: a new one costs a fork
            # on the server (and, over TCP, a SCRAM exchange): the template's benchmark served 2.3 to
            # 2.9 times as many requests with them kept. Each worker thread holds one at most.
            "CONN_MAX_AGE": int(os.environ.get("DJANGO_CONN_MAX_AGE", "60")),
            # A kept connection the server closed (a restart) is noticed before a request uses it.
            "CONN_HEALTH_CHECKS": True,
        }
    }
{% if derived.worker_class == "gevent" %}
    # gevent: each request in flight is a greenlet, and Django would give each a connection of its
    # own, kept until the greenlet is collected. A pool in each worker holds DJANGO_DB_POOL_SIZE at
    # most and lends one to a request at a time (psycopg-pool; 0: no pool).
    POOL_SIZE = int(os.environ.get("DJANGO_DB_POOL_SIZE", "{{ derived.database.pool_size }}"))
    if POOL_SIZE:
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django's pool takes the connection back after each request
        DATABASES["default"]["OPTIONS"] = {"pool": {"min_size": 1, "max_size": POOL_SIZE, "timeout": 10}}
{% endif %}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": STATE_DIR / "db.sqlite3"}}
{% else %}
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": STATE_DIR / "db.sqlite3",
    }
}
{% endif %}
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# collectstatic gathers the app's and the admin's files into the folder nginx serves at /static/.
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT", "{{ derived.static_root }}")
STATICFILES_DIRS = [PACKAGE_DIR / "static"]

# Behind nginx, which sets X-Forwarded-Proto from the real connection. gunicorn believes it from
# the proxies it trusts only (FORWARDED_ALLOW_IPS) and sets the request's scheme from it, so
# request.is_secure() is true for HTTPS: CSRF's origin check and secure cookies rely on it. No
# SECURE_PROXY_SSL_HEADER: Django would believe that header from any peer.
{% if cookiecutter.tls_mode != "none" %}
# Session and CSRF cookies travel over HTTPS only (nginx redirects plain HTTP to HTTPS).
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# POSTs must come from pages of this site. deploy/run-local adds its HTTPS port with each name it
# answers to (localhost, 127.0.0.1, {{ cookiecutter.domain_name }}): the Host nginx passes on leaves the port out.
CSRF_TRUSTED_ORIGINS = ["https://{{ cookiecutter.domain_name }}", *env_list("DJANGO_CSRF_TRUSTED_ORIGINS")]
{% else %}
# POSTs must come from pages of this site (the Host nginx passes on); deploy/run-local adds its port
# with each name it answers to (localhost, 127.0.0.1, {{ cookiecutter.domain_name }}): nginx's Host leaves the port out.
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
{% endif %}
# Django's own page for a refused POST has an inline style that the site's Content-Security-Policy
# blocks: this one uses the site's stylesheet.
CSRF_FAILURE_VIEW = "{{ cookiecutter.project_slug }}.views.csrf_failure"

# nginx's security headers snippet sends these too: the same values, so the two never disagree.
X_FRAME_OPTIONS = "SAMEORIGIN"
SECURE_REFERRER_POLICY = "strict-origin-when-cross-origin"
# What `manage.py check --deploy` would flag but the site does on purpose: its pages may frame one
# another (X-Frame-Options and the CSP's frame-ancestors say 'self'){% if cookiecutter.tls_mode != "none" %}, and nginx, not Django, sends
# HSTS and redirects plain HTTP to HTTPS{% endif %}.
{% if cookiecutter.tls_mode != "none" %}
SILENCED_SYSTEM_CHECKS = ["security.W019", "security.W004", "security.W008"]
{% else %}
SILENCED_SYSTEM_CHECKS = ["security.W019"]
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
