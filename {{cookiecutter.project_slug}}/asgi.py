"""The ASGI entry point: gunicorn's asgi worker loads `asgi:application` (gunicorn.conf.py)."""

from {{ cookiecutter.project_slug }}.app import application

__all__ = ["application"]
