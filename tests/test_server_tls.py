"""HTTPS with a certificate the user already has (tls_mode=existing), on real Debian servers.

The certificate is self-signed for the domain and made on the server, where the project expects
it; deploy/install's health check must reach the site by its name (SNI) to pass at all.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from servers import RELEASES, Checkout, Host, copy_project, tls_alpn

DOMAIN = "example.com"
CERTIFICATE = f"/etc/ssl/certs/{DOMAIN}.pem"
KEY = f"/etc/ssl/private/{DOMAIN}.key"


@dataclass
class Installed:
    host: Host
    checkout: Checkout
    output: str
    returncode: int


def self_signed(host: Host) -> None:
    host.run(
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "2", "-subj", f"/CN={DOMAIN}", "-addext", f"subjectAltName=DNS:{DOMAIN}",
        "-keyout", KEY, "-out", CERTIFICATE,
    )  # fmt: skip
    host.run("chmod", "0600", KEY)


@contextmanager
def tls_project(lab, server_project, release: str, name: str, **answers: str) -> Iterator[Installed]:
    """A server of `release` with a self-signed certificate for the domain, and the HTTPS project
    made with `answers` (the release's platform unless they say otherwise) installed on it."""
    project = server_project(release, tls_mode="existing", **answers)
    with lab.booted(name, release=release) as (host,):
        self_signed(host)
        checkout = copy_project(host, project.path, "/root/my_app")
        result = checkout.install()
        yield Installed(host, checkout, result.stdout + result.stderr, result.returncode)


@pytest.fixture(scope="module", params=list(RELEASES))
def server(request, lab, server_project) -> Iterator[Installed]:
    """The HTTPS project made for the server's release, installed there."""
    release = request.param
    with tls_project(lab, server_project, release, f"tls-{release}") as installed:
        yield installed


@pytest.fixture
def installed(server: Installed) -> Installed:
    assert server.returncode == 0, server.output
    return server


def test_https_site_installs_and_passes_its_health_check(installed: Installed) -> None:
    assert "health: https://" in installed.output, installed.output
    assert installed.output.strip().splitlines()[-1].startswith("install: done")


def test_https_answers_with_http2_for_the_domain(installed: Installed) -> None:
    host = installed.host
    assert tls_alpn(host.address, DOMAIN) == "h2"
    response = host.get("/", port=443, tls=True)
    assert response.status == 200
    assert response.headers["strict-transport-security"] == "max-age=63072000"


def test_plain_http_is_redirected_to_https(installed: Installed) -> None:
    response = installed.host.get("/some/page?x=1")
    assert response.status == 301
    assert response.headers["location"] == f"https://{DOMAIN}/some/page?x=1"


def test_handshake_for_another_name_is_refused(installed: Installed) -> None:
    with pytest.raises(ssl.SSLError):
        tls_alpn(installed.host.address, "evil.com")


def test_nginx_configuration_with_https_passes_without_warnings(installed: Installed) -> None:
    result = installed.host.run("nginx", "-t", check=False)
    assert result.returncode == 0 and "[warn]" not in result.stderr, result.stderr


def test_site_made_for_debian_12_is_refused_on_debian_13_and_the_server_is_unchanged(lab, server_project) -> None:
    """nginx 1.26 deprecates the `listen ... http2` that Debian 12's nginx 1.22 needs: the preflight
    stops before any change and names the command that bakes the project for this server."""
    with tls_project(lab, server_project, "trixie", "tls-mismatch", platform="debian-12") as server:
        print(f"debian-12 HTTPS project on Debian 13: {server.output.strip().splitlines()[-1]}")
        assert server.returncode == 1, server.output
        said = "preflight: FAILED: this machine is debian-13 but the project was made for debian-12"
        assert said in server.output, server.output
        assert "cookiecutter --no-input -f -o .. " in server.output and " platform=debian-13 " in server.output
        assert not server.host.exists("/etc/nginx/sites-enabled/my_app.conf")
        assert server.host.exists("/etc/nginx/sites-enabled/default")
        assert "Welcome to nginx" in server.host.get("/").text
