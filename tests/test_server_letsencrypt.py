"""Let's Encrypt (tls_mode=letsencrypt) for real, on a booted Debian server, with no internet.

Pebble, Let's Encrypt's small ACME test server, runs on this machine at the lab's bridge address;
it resolves names through pebble-challtestsrv's DNS, where the domain is the server's address. So
the first deploy/install serves the challenge site, runs `certbot certonly --webroot`, pebble
fetches the http-01 challenge from the server's nginx on port 80, and the HTTPS site takes the
challenge site's place. certbot on the server is pointed at pebble by /etc/letsencrypt/cli.ini,
the way an operator points it at Let's Encrypt's staging server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import require_tool
from servers import Checkout, Host, copy_project, run

DOMAIN = "example.com"
# One release keeps the suite in its time budget: the default platform's.
RELEASE = "trixie"
LIVE = f"/etc/letsencrypt/live/{DOMAIN}"
ARCHIVE = f"/etc/letsencrypt/archive/{DOMAIN}"
START_SECONDS = 15


@dataclass
class Acme:
    """A running pebble: its ACME directory, the certificate its own HTTPS listener serves (to
    trust), and its management interface (this run's root and intermediate: new at every start)."""

    directory: str
    listener_certificate: Path
    management: str
    log: Path

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.listener_certificate))

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.management + path, context=self.context(), timeout=10) as answer:
            return answer.read().decode()

    @property
    def root(self) -> str:
        return self.get("/roots/0")

    @property
    def intermediate(self) -> str:
        return self.get("/intermediates/0")

    def issued(self) -> list[str]:
        """The serial numbers of the certificates this pebble issued, in order (lower-case hex)."""
        said = self.log.read_text(errors="replace")
        return [serial.lower().lstrip("0") for serial in re.findall(r"Issued certificate serial ([0-9a-f]+)", said)]

    def log_tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def wait_listening(process: subprocess.Popen, address: str, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"{process.args[0]} not listening on {address}:{port} within {START_SECONDS}s:\n{log.read_text()}"
    )


@contextlib.contextmanager
def started(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A process of this machine for the length of a block, stopped however the block ends."""
    with log.open("ab") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def pebble(gateway: str, server_address: str, folder: Path) -> Iterator[Acme]:
    """pebble listening on `gateway` (the servers' way to this machine), its DNS answering
    `server_address` for the domain; both on free ports, both stopped when the block ends."""
    pebble_binary = require_tool("pebble", "apt-get install pebble")
    challtestsrv = require_tool("pebble-challtestsrv", "apt-get install pebble")
    openssl = require_tool("openssl", "apt-get install openssl")
    # Debian's pebble ships no certificate for its own HTTPS listener: one for the addresses it
    # listens on, self-signed, which the server and this process trust.
    certificate, key = folder / "pebble.pem", folder / "pebble.key"
    run(
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "1", "-subj", "/CN=pebble", "-addext", f"subjectAltName=IP:{gateway},IP:127.0.0.1",
        "-keyout", str(key), "-out", str(certificate),
    )  # fmt: skip
    dns_port, dns_management = free_port("127.0.0.1"), free_port("127.0.0.1")
    acme_port, management_port = free_port(gateway), free_port("127.0.0.1")
    # Only DNS and its management interface: the challenges are answered by the server's nginx.
    # No default addresses: a name without a record has none (not this machine's loopback).
    dns_log = folder / "challtestsrv.log"
    dns_command = [
        challtestsrv, "-dns01", f"127.0.0.1:{dns_port}", "-management", f"127.0.0.1:{dns_management}",
        "-http01", "", "-https01", "", "-tlsalpn01", "", "-defaultIPv4", "", "-defaultIPv6", "",
    ]  # fmt: skip
    config = folder / "pebble-config.json"
    config.write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"{gateway}:{acme_port}",
                    "managementListenAddress": f"127.0.0.1:{management_port}",
                    "certificate": str(certificate),
                    "privateKey": str(key),
                    # Where the validation connects on the server: nginx's ports.
                    "httpPort": 80,
                    "tlsPort": 443,
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    environment = {
        **os.environ,
        # No random wait before each validation.
        "PEBBLE_VA_NOSLEEP": "1",
        # Pebble refuses 5% of good nonces to test clients' retries; certbot's one retry can lose.
        "PEBBLE_WFE_NONCEREJECT": "0",
        # Every order validates again (a renewal too), instead of reusing half the authorizations.
        "PEBBLE_AUTHZREUSE": "0",
    }
    pebble_log = folder / "pebble.log"
    pebble_command = [pebble_binary, "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"]
    with started(dns_command, dns_log) as dns:
        wait_listening(dns, "127.0.0.1", dns_management, dns_log)
        record = json.dumps({"host": DOMAIN, "addresses": [server_address]}).encode()
        urllib.request.urlopen(f"http://127.0.0.1:{dns_management}/add-a", data=record, timeout=10).close()
        with started(pebble_command, pebble_log, env=environment) as process:
            wait_listening(process, gateway, acme_port, pebble_log)
            wait_listening(process, "127.0.0.1", management_port, pebble_log)
            yield Acme(
                f"https://{gateway}:{acme_port}/dir", certificate, f"https://127.0.0.1:{management_port}", pebble_log
            )


def use_acme_server(host: Host, acme: Acme) -> None:
    """certbot on `host` talks to pebble, and trusts its HTTPS listener (Let's Encrypt's staging
    server needs no trust step: its certificate is a public one)."""
    host.write("/usr/local/share/ca-certificates/pebble.crt", acme.listener_certificate.read_text())
    host.run("update-ca-certificates")
    # Debian's certbot has its own settings in cli.ini: ours go below them.
    settings = host.read("/etc/letsencrypt/cli.ini") if host.exists("/etc/letsencrypt/cli.ini") else ""
    host.write(
        "/etc/letsencrypt/cli.ini",
        settings + "# The ACME server. An operator tries Let's Encrypt's staging server first with the same line:\n"
        "#   server = https://acme-staging-v02.api.letsencrypt.org/directory\n"
        f"server = {acme.directory}\n",
    )


@dataclass
class Served:
    """The certificate nginx serves for the domain, as a client that trusts only this pebble's root
    sees it (the handshake fails on any other chain, or on another name)."""

    serial: str
    issuer: str
    subject_names: list[str]


def served_certificate(address: str, root: str) -> Served:
    context = ssl.create_default_context(cadata=root)
    with (
        socket.create_connection((address, 443), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=DOMAIN) as tls,
    ):
        seen = tls.getpeercert()
    issuer = dict(part[0] for part in seen["issuer"])
    serial = seen["serialNumber"].lower().lstrip("0")
    return Served(serial, issuer["commonName"], [name for kind, name in seen["subjectAltName"]])


def common_name(pem: str) -> str:
    said = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-nameopt", "sep_multiline,sname"],
        input=pem, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return next(line.strip().removeprefix("CN=") for line in said.splitlines() if line.strip().startswith("CN="))


def challenges_fetched(host: Host) -> list[str]:
    """The lines of nginx's access log on `host` for ACME challenge files."""
    access = host.read("/var/log/nginx/access.log")
    return [line for line in access.splitlines() if "GET /.well-known/acme-challenge/" in line]


def nginx_master(host: Host) -> int:
    return int(host.read("/run/nginx.pid"))


@dataclass
class Server:
    host: Host
    checkout: Checkout
    acme: Acme
    output: str
    returncode: int


@pytest.fixture(scope="module")
def server(lab, server_project, tmp_path_factory) -> Iterator[Server]:
    """A Debian 13 server (the default platform, certbot 4) with certbot pointed at its own pebble,
    and the Let's Encrypt project's first install on it."""
    release = RELEASE
    project = server_project(release, tls_mode="letsencrypt", domain_name=DOMAIN)
    folder = tmp_path_factory.mktemp("pebble")
    with (
        lab.booted(f"letsencrypt-{release}", release=release) as (host,),
        pebble(lab.gateway, host.address, folder) as acme,
    ):
        use_acme_server(host, acme)
        checkout = copy_project(host, project.path, "/root/my_app")
        result = checkout.install()
        yield Server(host, checkout, acme, result.stdout + result.stderr, result.returncode)


@pytest.fixture
def installed(server: Server) -> Server:
    assert server.returncode == 0, f"{server.output}\npebble:\n{server.acme.log_tail()}"
    return server


def test_first_install_gets_a_certificate_from_the_acme_server_and_serves_https_with_it(installed: Server) -> None:
    host, acme = installed.host, installed.acme
    assert "(challenge site until the certificate exists: my_app.acme.conf)" in installed.output, installed.output
    assert f"https: certificate for {DOMAIN} from Let's Encrypt" in installed.output, installed.output
    assert "health: https://" in installed.output, installed.output
    served = served_certificate(host.address, acme.root)
    assert acme.issued() == [served.serial]
    assert served.issuer == common_name(acme.intermediate)
    assert served.subject_names == [DOMAIN]
    # The ACME server itself fetched the challenge from this server's port 80, from this machine.
    fetched = challenges_fetched(host)
    assert fetched and all(line.startswith(f"{host.lab.gateway} ") and '" 200 ' in line for line in fetched), fetched
    health = host.get("/healthz", port=443, tls=True)
    assert health.status == 200, health.text


def test_plain_http_is_redirected_to_https_once_the_certificate_exists(installed: Server) -> None:
    response = installed.host.get("/some/page?x=1")
    assert response.status == 301
    assert response.headers["location"] == f"https://{DOMAIN}/some/page?x=1"


def test_challenge_site_is_no_longer_enabled(installed: Server) -> None:
    enabled = installed.host.run("nginx", "-T").stdout
    assert "the site until the first certificate exists" not in enabled
    assert f"ssl_certificate {LIVE}/fullchain.pem;" in enabled


def test_second_install_changes_nothing_and_requests_no_new_certificate(installed: Server) -> None:
    host = installed.host
    before = served_certificate(host.address, installed.acme.root)
    output = installed.checkout.installed()
    assert output.strip().splitlines()[-1] == "install: nothing changed", output
    assert "certbot" not in output
    assert host.run("ls", ARCHIVE).stdout.split() == ["cert1.pem", "chain1.pem", "fullchain1.pem", "privkey1.pem"]
    assert served_certificate(host.address, installed.acme.root).serial == before.serial
    assert installed.acme.issued() == [before.serial]


def test_forced_renewal_reloads_nginx_with_the_new_certificate_without_a_restart(installed: Server) -> None:
    host, acme = installed.host, installed.acme
    before, master = served_certificate(host.address, acme.root), nginx_master(host)
    fetched_before = len(challenges_fetched(host))
    # Without a terminal certbot renew first sleeps up to 8 minutes (to spread cron jobs' load).
    renewal = host.run("certbot", "renew", "--force-renewal", "--no-random-sleep-on-renew", check=False)
    said = renewal.stdout + renewal.stderr
    assert renewal.returncode == 0, f"{said}\npebble:\n{acme.log_tail()}"
    assert f"nginx reloaded with the renewed certificate for {DOMAIN}" in said, said
    # A reload starts new workers and lets the old ones finish: wait for a handshake with a new one.
    deadline = time.monotonic() + 10
    after = served_certificate(host.address, acme.root)
    while after.serial == before.serial and time.monotonic() < deadline:
        time.sleep(0.2)
        after = served_certificate(host.address, acme.root)
    assert after.serial != before.serial, "nginx still serves the certificate from before the renewal"
    assert acme.issued() == [before.serial, after.serial]
    # The renewal was validated again, through the HTTPS site's plain-HTTP server (not redirected).
    fetched = challenges_fetched(host)[fetched_before:]
    assert fetched and all('" 200 ' in line for line in fetched), fetched
    assert after.issuer == common_name(acme.intermediate)
    assert nginx_master(host) == master
    assert host.get("/healthz", port=443, tls=True).status == 200
