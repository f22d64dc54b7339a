{% if cookiecutter.framework == "flask" %}
"""{{ cookiecutter.project_name }}: a Flask app, served by gunicorn behind nginx."""

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix


def create_app() -> Flask:
    app = Flask(__name__)
    # nginx sets X-Forwarded-For and -Proto (overwriting what clients send): trust exactly that one
    # proxy, so request.remote_addr and request.scheme are the client's.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]

    from .views import pages

    app.register_blueprint(pages)
    return app
{% else %}
"""{{ cookiecutter.project_name }}: the web application served by gunicorn behind nginx."""
{% endif %}
