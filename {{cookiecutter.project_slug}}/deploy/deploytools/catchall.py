"""The catch-all: nginx's default server, which closes every request for a name no site serves.

One server holds it for all the projects on it: `listen 80 default_server` may appear once per
port in a whole nginx, and two sites with a catch-all of their own would make nginx warn
(`conflicting server name "" on 0.0.0.0:80, ignored`) and keep only the first. So it is not part
of any site: deploy/install places it as its own file with the first project and keeps a list of
the projects that use it in the file itself; the last project's uninstall removes it. deploy/check
and deploy/run-local put the same server in front of the site.

The file's header is its state, readable by whoever opens it:

    # Used by: my_app, shop (https)
    # Replaces: /etc/nginx/sites-enabled/default -> /etc/nginx/sites-available/default
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from . import layout

NAME = "catch-all.conf"
# Debian's and Ubuntu's nginx packages enable a site that is the default server of port 80.
STOCK_DEFAULT_SITE = "default"
USED_BY = re.compile(r"^# Used by: (.*)$", re.MULTILINE)
REPLACES = re.compile(r"^# Replaces: (\S+) -> (\S+)$", re.MULTILINE)

HTTP_SERVER = """\
# Any name that no site on this server serves, no Host header, or an IP address as Host: the
# connection is closed without an answer (444), so that no app ever answers a forged Host.
server {
    listen 80 default_server;
    listen [::]:80 default_server;
    server_name _;
    # Its 400 for a request without Host or with a garbage request line names no nginx version.
    server_tokens off;
    return 444;
}
"""
# Mozilla's intermediate profile, as in the sites' tls.conf.
CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)
HTTPS_SERVER = """
# The same on 443: no certificate is shown for a name that is not ours. Before the name is known
# this server also sets the TLS versions offered (Mozilla's intermediate profile, like the sites).
server {
    listen 443 ssl default_server;
    listen [::]:443 ssl default_server;
    server_name _;
    server_tokens off;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_ciphers @CIPHERS@;
    # The session settings of the sites: a client's resumed session is looked up here first.
    ssl_session_timeout 1d;
    ssl_session_cache shared:wsgi_deploy_tls:10m;
    ssl_session_tickets off;
    ssl_reject_handshake on;
    # A request that shook hands with a site's name but asks for another Host ends here too.
    return 444;
}
""".replace("@CIPHERS@", CIPHERS)


@dataclass
class CatchAll:
    """Who uses the catch-all (slug -> whether over HTTPS too), and the stock site it replaces."""

    users: dict[str, bool] = field(default_factory=dict)
    replaces: tuple[str, str] | None = None  # (link, its target)

    @classmethod
    def parse(cls, text: str) -> CatchAll:
        found = cls()
        if used := USED_BY.search(text):
            for entry in filter(None, (part.strip() for part in used[1].split(","))):
                name, _, rest = entry.partition(" ")
                found.users[name] = "https" in rest
        if replaced := REPLACES.search(text):
            found.replaces = (replaced[1], replaced[2])
        return found

    @property
    def https(self) -> bool:
        return any(self.users.values())

    def render(self) -> str:
        used = ", ".join(f"{name} (https)" if https else name for name, https in sorted(self.users.items()))
        lines = [
            "# nginx's default server on this machine, shared by the projects below: deploy/install",
            "# keeps this list and removes the file with the last of them. Edits are overwritten.",
            f"# Used by: {used}",
        ]
        if self.replaces:
            lines.append(f"# Replaces: {self.replaces[0]} -> {self.replaces[1]}")
            lines.append("# (the package's default site, disabled while this file is here and enabled again after)")
        return "\n".join(lines) + "\n\n" + server_blocks(self.https)


def server_blocks(https: bool) -> str:
    return HTTP_SERVER + (HTTPS_SERVER if https else "")


def this_project_https() -> bool:
    return layout.TLS_MODE != "none"


def path() -> str:
    """Beside the sites: sites-available on Debian and Ubuntu, conf.d on RHEL."""
    return str(PurePosixPath(layout.NGINX_SITE_PATH).parent / NAME)


def link() -> str | None:
    """Its sites-enabled link, where the platform enables sites that way."""
    if not layout.NGINX_SITE_LINK:
        return None
    return str(PurePosixPath(layout.NGINX_SITE_LINK).parent / NAME)


def stock_default_link() -> str | None:
    if not layout.NGINX_SITE_LINK:
        return None
    return str(PurePosixPath(layout.NGINX_SITE_LINK).parent / STOCK_DEFAULT_SITE)
