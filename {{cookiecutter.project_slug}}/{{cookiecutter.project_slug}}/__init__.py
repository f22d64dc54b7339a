{% if cookiecutter.framework == "flask" %}
"""{{ cookiecutter.project_name }}: a Flask app, served by gunicorn behind nginx."""

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from .proxy import client_address

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]


def behind_nginx(wsgi_app: WsgiApp) -> WsgiApp:
    """request.remote_addr is the client's: nginx's X-Forwarded-For, believed from a trusted proxy
    only (proxy.py). request.scheme needs nothing here: gunicorn sets it from X-Forwarded-Proto,
    from the same proxies."""

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["REMOTE_ADDR"] = client_address(environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"))
        return wsgi_app(environ, start_response)

    return app


def create_app() -> Flask:
    app = Flask(__name__)
    app.wsgi_app = behind_nginx(app.wsgi_app)  # type: ignore[method-assign]

    from .views import pages

    app.register_blueprint(pages)
    return app
{% else %}
"""{{ cookiecutter.project_name }}: the web application served by gunicorn behind nginx."""
{% endif %}
