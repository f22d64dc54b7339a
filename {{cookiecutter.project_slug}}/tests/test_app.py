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
{% else %}
"""The app answers as nginx and the install command expect. Run: {{ cookiecutter.project_slug }}_venv/bin/python -m unittest -v"""

import io
{% if cookiecutter.framework == "django" %}
import os
{% endif %}
import unittest
from wsgiref.util import setup_testing_defaults

{% if cookiecutter.framework == "django" %}
# The real key lives in the env file; the tests need one of their own.
os.environ.setdefault("DJANGO_SECRET_KEY", "only-for-tests")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "127.0.0.1")
{% endif %}
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
