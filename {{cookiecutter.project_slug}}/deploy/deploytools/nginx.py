"""Run the generated nginx site outside /etc/nginx: for `nginx -t` in deploy/check and for
deploy/run-local.

The site file is used as it is, with only the server's paths and ports swapped for local ones
(`localize`), inside a small main configuration that keeps pid, logs and temporary files in a
scratch folder (`write_main_conf`), behind the same catch-all default server as on the server
(catchall.py). No second copy of the site exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from . import catchall, layout

# A path nginx reads as one word, unquoted: no spaces, quotes, `;`, `$` (a variable) or braces.
NGINX_WORD = re.compile(r"[A-Za-z0-9_./+@%,:=-]+")
LISTEN = re.compile(r"^(?P<indent>[ \t]*)listen[ \t]+(?P<address>[^\s;]+)(?P<rest>[^;]*);[ \t]*\n", re.MULTILINE)
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def find_nginx() -> str | None:
    """$NGINX if set, else nginx on PATH or in /usr/sbin (not on every user's PATH)."""
    if "NGINX" in os.environ:
        return shutil.which(os.environ["NGINX"])
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")


def conf_dir(nginx: str) -> Path:
    """The folder of nginx's own configuration (for mime.types), as built in."""
    built = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=False).stderr
    found = re.search(r"--conf-path=(\S+)", built)
    return Path(found.group(1)).parent if found else Path("/etc/nginx")


def version(nginx: str) -> tuple[int, ...]:
    """The nginx binary's version, e.g. (1, 22, 1)."""
    said = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False).stderr
    found = re.search(r"nginx/(\d+(?:\.\d+)*)", said)
    return tuple(int(part) for part in found.group(1).split(".")) if found else (0,)


def http2_for(site: str, nginx_version: tuple[int, ...]) -> str:
    """The site's HTTP/2 switch spelled the way this machine's nginx wants it.

    The site is written for the server's nginx: `http2 on;` from 1.25.1, `listen ... http2` before
    (deprecated, with a warning, after). A workstation's nginx may be older or newer than the
    server's; only the spelling changes, never what is served.
    """
    if nginx_version >= (1, 25, 1):
        if re.search(r"^[ \t]*listen[^;]* http2[ ;]", site, re.MULTILINE) and "http2 on;" not in site:
            site = re.sub(r"^([ \t]*listen[^;]*) http2(?=[ ;])", r"\1", site, flags=re.MULTILINE)
            site = re.sub(r"^([ \t]*)(ssl_certificate )", r"\1http2 on;\n\1\2", site, count=1, flags=re.MULTILINE)
        return site
    if "http2 on;" not in site:
        return site
    site = re.sub(r"^[ \t]*http2 on;\n", "", site, flags=re.MULTILINE)
    return re.sub(r"^([ \t]*listen[^;]* ssl)(?=[ ;])", r"\1 http2", site, flags=re.MULTILINE)


@dataclass
class LocalPorts:
    """Where the local copy listens: `http` for port 80, `https` for 443, `app` for gunicorn on TCP."""

    http: int
    https: int = 8443
    app: list[int] = field(default_factory=list)


def local_upstreams(prefix: Path, ports: LocalPorts) -> list[str]:
    """The local stand-in for each of the site's upstream servers, in the same order."""
    local = []
    for number, server in enumerate(layout.UPSTREAM_SERVERS, start=1):
        if server.startswith("unix:"):
            local.append(f"unix:{prefix}/sockets/gunicorn-{number}.sock")
        else:
            local.append(f"127.0.0.1:{ports.app[number - 1]}")
    return local


def local_static_root(prefix: Path) -> Path:
    """Where Django's collectstatic writes locally; other apps ship their static folder."""
    return layout.STATIC_SOURCE or prefix / "static"


def scratch_dir(kind: str) -> Path:
    """A new private folder for nginx's prefix, at a path nginx can read unquoted.

    The site names files only inside it: the project's own folders are linked in, so a project
    under "~/my projects" or "/tmp/a$b" works without quoting every path nginx sees.
    """
    parent = tempfile.gettempdir()
    if not NGINX_WORD.fullmatch(parent):
        parent = "/tmp"
    return Path(tempfile.mkdtemp(prefix=f"{layout.SLUG}-{kind}-", dir=parent))


def link_project_folders(prefix: Path) -> None:
    """prefix/static and prefix/errors: the project's folders, under the prefix's plain path."""
    links = {prefix / "errors": layout.ERROR_PAGES}
    if layout.STATIC_SOURCE:
        links[prefix / "static"] = layout.STATIC_SOURCE
    else:
        (prefix / "static").mkdir(exist_ok=True)
    for link, target in links.items():
        if not link.is_symlink():
            link.symlink_to(target)


def tls_files(prefix: Path) -> tuple[Path, Path]:
    return prefix / "tls" / "certificate.pem", prefix / "tls" / "key.pem"


def make_self_signed(prefix: Path) -> None:
    """A throwaway certificate for the site's name, so that nginx loads the TLS site for real."""
    certificate, key = tls_files(prefix)
    certificate.parent.mkdir(exist_ok=True)
    names = f"subjectAltName=DNS:{layout.DOMAIN},DNS:localhost,IP:127.0.0.1"
    command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    command += ["-days", "2", "-subj", f"/CN={layout.DOMAIN}", "-addext", names]
    subprocess.run([*command, "-keyout", str(key), "-out", str(certificate)], check=True, capture_output=True)


def localize(site: str, prefix: Path, ports: LocalPorts, nginx_version: tuple[int, ...] = (1, 25, 1)) -> str:
    """The site with the server's paths and ports replaced by local ones on 127.0.0.1."""
    site = http2_for(site, nginx_version)
    certificate, key = tls_files(prefix)
    swaps = {
        layout.STATIC_ROOT + "/": f"{prefix / 'static'}/",
        layout.ERRORS_ROOT + ";": f"{prefix / 'errors'};",
        f"-f {layout.MAINTENANCE_FLAG})": f"-f {prefix / 'maintenance'})",
        layout.ACME_ROOT + ";": f"{prefix / 'acme'};",
        f"ssl_certificate {layout.TLS_CERTIFICATE};": f"ssl_certificate {certificate};",
        f"ssl_certificate_key {layout.TLS_CERTIFICATE_KEY};": f"ssl_certificate_key {key};",
        # The site's access log and its cache folder (with the cache answer) live under nginx's folders.
        f"access_log {layout.ACCESS_LOG} ": f"access_log {prefix}/logs/access.log ",
        f"proxy_cache_path {layout.CACHE_DIR} ": f"proxy_cache_path {prefix}/tmp/{Path(layout.CACHE_DIR or '').name} ",
    }
    # The redirect to HTTPS names the local HTTPS port, which is not 443.
    swaps["return 301 https://$host$request_uri;"] = f"return 301 https://$host:{ports.https}$request_uri;"
    for old, new in swaps.items():
        site = site.replace(old, new)
    for server, local in zip(layout.UPSTREAM_SERVERS, local_upstreams(prefix, ports), strict=True):
        site = re.sub(rf"^([ \t]*server ){re.escape(server)}(?=[ ;])", rf"\g<1>{local}", site, flags=re.MULTILINE)
    # The other machines' app servers are not reachable from here.
    for remote in layout.REMOTE_APP_SERVERS:
        site = re.sub(rf"^[ \t]*server {re.escape(remote)} [^;]*;\n", "", site, flags=re.MULTILINE)

    def listen(match: re.Match[str]) -> str:
        address = match["address"]
        if address.startswith("["):
            return ""  # IPv6 may be missing on a workstation; the IPv4 line stays.
        port = int(address.rsplit(":", 1)[-1])
        local = ports.https if port == 443 else ports.http
        return f"{match['indent']}listen 127.0.0.1:{local}{match['rest']};\n"

    site = LISTEN.sub(listen, site)
    # Browsers on this machine say localhost or 127.0.0.1 in Host; the server answers both too.
    names = " ".join(dict.fromkeys([layout.DOMAIN, "localhost", "127.0.0.1"]))
    return site.replace(f"server_name {layout.DOMAIN};", f"server_name {names};")


def address_port(address: str, port: int) -> str:
    """host:port as nginx, gunicorn and systemd spell it: [2001:db8::5]:8081 for IPv6."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


APP_HOSTS_COMMENT = """\
    # From deploy/install --role lb --app-host: each app host's gunicorn ports. Their gunicorn
    # trusts X-Forwarded-* from the load balancers only (FORWARDED_ALLOW_IPS). One that fails
    # (refuses, resets, or does not accept within the connect timeout) gets no request for 10s,
    # then one to see whether it is back. `down` (--drain): nginx sends it nothing while its host
    # is being updated.
"""


def app_hosts_site(site: str, hosts: list[str], drained: Collection[str] = ()) -> str:
    """The site with its upstream pointing at app hosts elsewhere (deploy/install --role lb).

    The `server` lines of the upstream block, with the comments that describe them, give way to
    one server per app host and app port (layout.APP_PORTS), `down` for the hosts in `drained`;
    the rest of the block (keep-alive) and of the site stays as it is.
    """
    # (No doubled braces in this file: cookiecutter renders it with Jinja.)
    opening = f"upstream {layout.UPSTREAM} " + "{\n"
    block = re.search(r"^((?:#[^\n]*\n)*)" + re.escape(opening) + r"(.*?)^\}", site, re.M | re.S)
    if block is None:
        raise ValueError(f"the site has no upstream block named {layout.UPSTREAM}")
    kept, comments = [], []
    for line in block[2].splitlines(keepends=True):
        if line.lstrip().startswith("#"):
            comments.append(line)
            continue
        if not line.lstrip().startswith("server "):
            kept += comments
            kept.append(line)
        comments = []
    kept += comments
    servers = [
        f"    server {address_port(host, port)} max_fails=1 fail_timeout=10s{' down' if host in drained else ''};\n"
        for host in hosts
        for port in layout.APP_PORTS
    ]
    if len(servers) > 1:
        heading = (
            "# The app servers, on the app hosts. An idempotent request that fails on one is retried on the\n"
            "# next (proxy_next_upstream in the proxy snippet).\n"
        )
    else:
        heading = "# The app server, on the app host.\n"
    body = APP_HOSTS_COMMENT + "".join(servers) + "".join(kept)
    replaced = heading + opening + body + "}"
    return site[: block.start()] + replaced + site[block.end() :]


def main_conf(prefix: Path, nginx: str, site: Path, *, foreground: bool, catch_all: Path | None = None) -> str:
    """A main configuration that includes `site` (after `catch_all`, the default server, if given)
    and keeps pid, logs and temporary files in `prefix`."""
    temp = [f"    {name}_temp_path {prefix}/tmp/{name};" for name in TEMP_PATHS]
    lines = [
        f"# Scratch main configuration: pid, logs and temporary files stay under {prefix}.",
        # As root, workers would drop to `nobody` and could not read a private checkout.
        "user root;" if os.geteuid() == 0 else "",
        "worker_processes auto;",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/logs/error.log;",
        "daemon off;" if foreground else "",
        # Every connection proxied takes two descriptors (client and app server).
        "worker_rlimit_nofile 2048;",
        "events {",
        "    worker_connections 1024;",
        "}",
        "http {",
        f"    include {conf_dir(nginx)}/mime.types;",
        "    default_type application/octet-stream;",
        "    sendfile on;",
        "    tcp_nopush on;",
        f"    access_log {prefix}/logs/access.log;",
        *temp,
        f"    include {catch_all};" if catch_all else "",
        f"    include {site};",
        "}",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def make_prefix(prefix: Path) -> None:
    """The folders nginx -p `prefix` writes to."""
    for folder in ("conf/snippets", "logs", "acme", *(f"tmp/{name}" for name in TEMP_PATHS)):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    # gunicorn's sockets: whoever connects to one is a trusted proxy to gunicorn, so only this user
    # may (nginx's workers run as it, or as root).
    (prefix / "sockets").mkdir(mode=0o700, exist_ok=True)


def write_main_conf(
    prefix: Path, nginx: str, ports: LocalPorts, *, foreground: bool, site_source: Path = layout.NGINX_SITE
) -> Path:
    """Lay out `prefix` for nginx -p and return the main configuration that includes the site."""
    if not NGINX_WORD.fullmatch(str(prefix)):
        raise ValueError(f"{prefix}: nginx's scratch folder needs a plain path (no spaces, quotes, ; or $)")
    make_prefix(prefix)
    link_project_folders(prefix)
    conf = prefix / "conf"
    snippets = conf / "snippets" / layout.NGINX_SNIPPETS_NAME
    if not snippets.exists():
        snippets.symlink_to(layout.NGINX_SNIPPETS)
    if layout.TLS_MODE != "none" and not tls_files(prefix)[0].exists():
        make_self_signed(prefix)
    site = conf / site_source.name
    nginx_version = version(nginx)
    site.write_text(localize(site_source.read_text(), prefix, ports, nginx_version))
    catch_all = conf / catchall.NAME
    catch_all.write_text(localize(catchall.server_blocks(catchall.this_project_https()), prefix, ports, nginx_version))
    main = conf / f"nginx-{site_source.stem}.conf"
    main.write_text(main_conf(prefix, nginx, site, foreground=foreground, catch_all=catch_all))
    return main
