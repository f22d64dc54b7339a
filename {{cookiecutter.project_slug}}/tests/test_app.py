"""The app answers as nginx and the install command expect. Run: python3 -m unittest -v"""

import io
import unittest
from wsgiref.util import setup_testing_defaults

from wsgi import application


def call(path: str, method: str = "GET", **headers: str) -> tuple[str, dict[str, str], bytes]:
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": method, "wsgi.input": io.BytesIO()}
    environ.update({"HTTP_" + name.upper(): value for name, value in headers.items()})
    setup_testing_defaults(environ)
    answer: dict = {}

    def start_response(status: str, response_headers: list[tuple[str, str]]) -> None:
        answer.update(status=status, headers=dict(response_headers))

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body


class AppTest(unittest.TestCase):
    def test_health_check_answers_ok(self) -> None:
        status, _, body = call("/healthz")
        self.assertEqual((status, body), ("200 OK", b"ok\n"))

    def test_home_page_links_the_static_stylesheet(self) -> None:
        status, headers, body = call("/")
        self.assertEqual(status, "200 OK")
        self.assertIn(b'href="/static/style.css"', body)
        self.assertEqual(headers["Content-Length"], str(len(body)))

    def test_home_page_shows_the_client_address_nginx_forwarded(self) -> None:
        _, _, body = call("/", x_forwarded_for="203.0.113.7")
        self.assertIn(b'<dd id="client-addr">203.0.113.7</dd>', body)

    def test_unknown_path_is_404(self) -> None:
        self.assertEqual(call("/nope")[0], "404 Not Found")

    def test_post_is_refused(self) -> None:
        status, headers, _ = call("/", method="POST")
        self.assertEqual((status, headers["Allow"]), ("405 Method Not Allowed", "GET, HEAD"))


if __name__ == "__main__":
    unittest.main()
