{% if cookiecutter.framework == "flask" %}
"""The pages of {{ cookiecutter.project_name }}. Keep `/healthz`: nginx and deploy/install use it."""

from flask import Blueprint, render_template, request

pages = Blueprint("pages", __name__)


@pages.get("/")
def home() -> str:
    return render_template("index.html", client_addr=request.remote_addr, scheme=request.scheme, host=request.host)


@pages.get("/healthz")
def healthz() -> tuple[str, int, dict[str, str]]:
    return "ok\n", 200, {"Content-Type": "text/plain; charset=utf-8"}
{% else %}
"""The pages of {{ cookiecutter.project_name }}. Keep `/healthz`: nginx and deploy/install use it."""

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import REASON_NO_CSRF_COOKIE
from django.shortcuts import render
from django.views.decorators.http import require_safe

from .proxy import client_address


def client_of(request: HttpRequest) -> str:
    """The client's address, from nginx's X-Forwarded-For when a trusted proxy connected."""
    return client_address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    context = {"client_addr": client_of(request), "scheme": request.scheme, "host": request.get_host()}
    return render(request, "index.html", context)


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok\n", content_type="text/plain; charset=utf-8")


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """The page of a POST the CSRF check refused (settings.CSRF_FAILURE_VIEW).

    Django's own page has an inline style, which the site's Content-Security-Policy blocks; this
    one uses the site's stylesheet. As Django's, it names the reason only with DEBUG on: the log
    has it always.
    """
    context = {"no_cookie": reason == REASON_NO_CSRF_COOKIE, "reason": reason if settings.DEBUG else ""}
    return render(request, "403_csrf.html", context, status=403)
{% endif %}
