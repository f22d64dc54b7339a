{% if cookiecutter.framework == "asgi" %}
"""The app answers as nginx and the install command expect. Run: {{ cookiecutter.project_slug }}_venv/bin/python -m unittest -v"""

import asyncio
import unittest

from asgi import application


def call(path: str, method: str = "GET", **headers: str) -> tuple[int, bytes]:
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "scheme": "http",
        "client": ("127.0.0.1", 50000),
        "headers": [(name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()],
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(application(scope, receive, send))
    return sent[0]["status"], b"".join(message.get("body", b"") for message in sent[1:])


def websocket_echo(text: str) -> list[dict]:
    incoming = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": text},
        {"type": "websocket.disconnect"},
    ]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(application({"type": "websocket", "path": "/ws", "headers": []}, receive, send))
    return sent


class AppTest(unittest.TestCase):
    def test_health_check_answers_ok(self) -> None:
        self.assertEqual(call("/healthz"), (200, b"ok\n"))

    def test_home_page_links_the_static_stylesheet(self) -> None:
        status, body = call("/")
        self.assertEqual(status, 200)
        self.assertIn(b'href="/static/style.css"', body)

    def test_home_page_shows_the_client_address_nginx_forwarded(self) -> None:
        _, body = call("/", x_forwarded_for="203.0.113.7")
        self.assertIn(b'<dd id="client-addr">203.0.113.7</dd>', body)

    def test_unknown_path_is_404(self) -> None:
        self.assertEqual(call("/nope")[0], 404)

    def test_websocket_echoes(self) -> None:
        sent = websocket_echo("hello")
        self.assertEqual([m["type"] for m in sent], ["websocket.accept", "websocket.send"])
        self.assertEqual(sent[1]["text"], "hello")


if __name__ == "__main__":
    unittest.main()
{% elif cookiecutter.framework == "django" %}
"""The app answers as nginx and the install command expect, and its admin works behind nginx.

Run: {{ cookiecutter.project_slug }}_venv/bin/python -m unittest -v (the tests make a database of their own)
"""

import os
import secrets
import shutil
import tempfile
import unittest

import django
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.http import HttpResponse
from django.test import Client

# The real key lives in the env file; the tests need one of their own, and a state folder
# (database) of their own instead of the service's or run-local's.
os.environ["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
os.environ["STATE_DIRECTORY"] = tempfile.mkdtemp(prefix="{{ cookiecutter.project_slug }}-tests-")
os.environ["DJANGO_SETTINGS_MODULE"] = "{{ cookiecutter.project_slug }}.settings"
django.setup()

{% if cookiecutter.tls_mode != "none" %}
SCHEME = "https"
{% else %}
SCHEME = "http"
{% endif %}
# What nginx sets on each request it passes on (deploy/nginx/snippets/proxy.conf). Its
# X-Forwarded-Proto becomes the request's scheme in gunicorn (FromNginx below).
FROM_NGINX = {"HTTP_HOST": "testserver", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
PASSWORD = "a-long-test-password-42"


def setUpModule() -> None:
    call_command("migrate", verbosity=0)
    get_user_model().objects.create_superuser("admin", "admin@example.com", PASSWORD)


def tearDownModule() -> None:
    shutil.rmtree(os.environ["STATE_DIRECTORY"])


class FromNginx(Client):
    """Requests as gunicorn hands them to Django from nginx: with the scheme the client used, which
    gunicorn takes from nginx's X-Forwarded-Proto (trusted from nginx only)."""

    def generic(self, method: str, path: str, *args: object, **kwargs: object) -> HttpResponse:
        kwargs["secure"] = SCHEME == "https"
        return super().generic(method, path, *args, **kwargs)


class AppTest(unittest.TestCase):
    def setUp(self) -> None:
        # As a browser: the CSRF checks apply (Django's test client skips them by default).
        self.client = FromNginx(enforce_csrf_checks=True, **FROM_NGINX)

    def test_gunicorn_loads_the_wsgi_application(self) -> None:
        from wsgi import application

        self.assertTrue(callable(application))

    def test_health_check_answers_ok(self) -> None:
        answer = self.client.get("/healthz")
        self.assertEqual((answer.status_code, answer.content), (200, b"ok\n"))

    def test_home_page_links_the_static_stylesheet(self) -> None:
        answer = self.client.get("/")
        self.assertEqual(answer.status_code, 200)
        self.assertIn(b'href="/static/style.css"', answer.content)

    def test_home_page_shows_the_client_address_nginx_forwarded(self) -> None:
        self.assertIn(b'<dd id="client-addr">203.0.113.7</dd>', self.client.get("/").content)

    def test_home_page_knows_the_scheme_nginx_forwarded(self) -> None:
        self.assertIn(f'<dd id="scheme">{SCHEME}</dd>'.encode(), self.client.get("/").content)

    def test_unknown_path_is_404(self) -> None:
        self.assertEqual(self.client.get("/nope").status_code, 404)

    def test_post_without_csrf_token_is_refused_on_a_page_within_the_sites_policy(self) -> None:
        answer = self.client.post("/")
        self.assertEqual(answer.status_code, 403)
        self.assertIn(b"CSRF verification failed", answer.content)
        # The Content-Security-Policy allows the site's stylesheet, and no inline style.
        self.assertIn(b'href="/static/style.css"', answer.content)
        self.assertNotIn(b"<style", answer.content)
        self.assertNotIn(b"style=", answer.content)

    def test_admin_asks_for_a_login(self) -> None:
        answer = self.client.get("/admin/")
        self.assertEqual((answer.status_code, answer["Location"]), (302, "/admin/login/?next=/admin/"))

    def log_in(self, origin: str) -> int:
        """The login form sent as a browser sends it: its CSRF token, the page's Origin."""
        self.client.get("/admin/login/")
        token = self.client.cookies["csrftoken"].value
        form = {"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": token, "next": "/admin/"}
        return self.client.post("/admin/login/", form, headers={"Origin": origin}).status_code

    def test_superuser_logs_into_the_admin(self) -> None:
        self.assertEqual(self.log_in(f"{SCHEME}://testserver"), 302)
        self.assertIn(b"Site administration", self.client.get("/admin/").content)
{% if cookiecutter.tls_mode != "none" %}
        self.assertTrue(self.client.cookies["sessionid"]["secure"])
{% endif %}

    def test_login_from_another_site_is_refused(self) -> None:
        self.assertEqual(self.log_in(f"{SCHEME}://attacker.example"), 403)
        self.assertNotIn("sessionid", self.client.cookies)

    def test_admin_pages_cannot_be_framed_by_other_sites(self) -> None:
        self.assertEqual(self.client.get("/admin/login/")["X-Frame-Options"], "SAMEORIGIN")
{% if cookiecutter.tls_mode != "none" %}

    def test_deployment_checklist_has_no_warning(self) -> None:
        call_command("check", deploy=True, fail_level="WARNING", verbosity=0)
{% endif %}


if __name__ == "__main__":
    unittest.main()
{% else %}
"""The app answers as nginx and the install command expect. Run: {{ cookiecutter.project_slug }}_venv/bin/python -m unittest -v"""

import io
import unittest
from wsgiref.util import setup_testing_defaults

from wsgi import application


def call(path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    """The status code, headers and body the app answers (reason phrases differ between frameworks)."""
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": method, "wsgi.input": io.BytesIO()}
    environ.update({"HTTP_" + name.upper(): value for name, value in headers.items()})
    setup_testing_defaults(environ)
    answer: dict = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(response_headers))

    body = b"".join(application(environ, start_response))
    return int(answer["status"].split()[0]), answer["headers"], body


class AppTest(unittest.TestCase):
    def test_health_check_answers_ok(self) -> None:
        status, _, body = call("/healthz")
        self.assertEqual((status, body), (200, b"ok\n"))

    def test_home_page_links_the_static_stylesheet(self) -> None:
        status, _, body = call("/")
        self.assertEqual(status, 200)
        self.assertIn(b'href="/static/style.css"', body)

    def test_home_page_shows_the_client_address_nginx_forwarded(self) -> None:
        _, _, body = call("/", x_forwarded_for="203.0.113.7")
        self.assertIn(b'<dd id="client-addr">203.0.113.7</dd>', body)

    def test_unknown_path_is_404(self) -> None:
        self.assertEqual(call("/nope")[0], 404)

    def test_post_is_refused(self) -> None:
        status, headers, _ = call("/", method="POST")
        self.assertEqual(status, 405)
        self.assertIn("GET", headers["Allow"])


if __name__ == "__main__":
    unittest.main()
{% endif %}
