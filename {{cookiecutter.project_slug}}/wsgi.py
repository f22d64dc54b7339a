"""The WSGI entry point: gunicorn loads `wsgi:application` (wsgi_app in gunicorn.conf.py)."""
{% if cookiecutter.framework == "flask" %}

from {{ cookiecutter.project_slug }} import create_app

application = create_app()
{% elif cookiecutter.framework == "django" %}

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{{ cookiecutter.project_slug }}.settings")
application = get_wsgi_application()
{% else %}

from {{ cookiecutter.project_slug }}.app import application

__all__ = ["application"]
{% endif %}
