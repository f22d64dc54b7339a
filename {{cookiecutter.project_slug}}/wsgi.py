"""The WSGI entry point: gunicorn loads `wsgi:application` (wsgi_app in gunicorn.conf.py)."""

from {{ cookiecutter.project_slug }}.app import application

__all__ = ["application"]
