"""Rules for the answers to the template's prompts.

Every answer ends up inside nginx, systemd, shell and Python files, so each one is checked against
a whitelist before anything is written. The rules are pure functions of the answers; the
pre-generation hook prints what `problems()` returns and refuses the bake if it is not empty.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from collections.abc import Callable, Collection, Mapping

from local_extensions import NO_APP_SERVERS, PLATFORMS, worker_class

# A rule returns None when the value is fine, or the reason it is not.
Rule = Callable[[str], str | None]

PROJECT_NAME = re.compile(r"[\w][\w .,'&()+-]{0,63}")
SLUG = re.compile(r"[a-z][a-z0-9_]{0,31}")
UNIX_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)
SAFE_PATH = re.compile(r"(?:/[A-Za-z0-9._-]+)+")
NGINX_SIZE = re.compile(r"[1-9][0-9]{0,5}[kKmMgG]?")
WHOLE_NUMBER = re.compile(r"[1-9][0-9]{0,4}")
MODULE_CALLABLE = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\(\))?", re.ASCII)
EMAIL_LOCAL_PART = re.compile(r"[A-Za-z0-9._+-]{1,64}")
IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])")

# Names the generated project already uses at its top level, or that would shadow a module.
TAKEN_SLUGS = frozenset({"wsgi", "gunicorn", "deploy", "tests", "static", "app"})
# The slug names a systemd unit, /etc/<slug>, /var/lib/<slug> and (by default) the service's
# account: none of them may be one the system or a common package has already.
SYSTEM_NAMES = frozenset(
    {
        "apache2", "apparmor", "apt", "audit", "avahi", "bind", "bluetooth", "certbot", "chrony", "cloud",
        "containerd", "cron", "cups", "dbus", "default", "dhcp", "dnsmasq", "docker", "dpkg", "firewalld",
        "fonts", "getty", "grub", "haproxy", "httpd", "init", "iptables", "kernel", "letsencrypt", "logrotate",
        "lxd", "mariadb", "memcached", "modules", "mysql", "netplan", "network", "networking", "nftables",
        "nginx", "ntp", "opt", "pam", "php", "polkit", "postfix", "postgres", "postgresql", "profile", "python3",
        "rabbitmq", "redis", "resolvconf", "rsync", "rsyslog", "security", "selinux", "skel", "snapd", "ssh",
        "sshd", "ssl", "sudo", "sysctl", "syslog", "systemd", "udev", "ufw", "varnish", "x11", "xdg",
    }
)  # fmt: skip
# Accounts and groups that belong to the system or grant more than a web app may have (disks,
# memory, logs, password hashes, sudo, containers, the package manager): the app needs its own.
SYSTEM_USERS = frozenset(
    {
        "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy", "www-data",
        "backup", "list", "irc", "gnats", "nobody", "nogroup", "nginx", "http", "adm", "admin", "tty", "disk",
        "kmem", "mem", "dialout", "cdrom", "floppy", "tape", "sudo", "wheel", "audio", "video", "render",
        "input", "kvm", "dip", "operator", "shadow", "utmp", "staff", "users", "plugdev", "netdev", "crontab",
        "docker", "lxd", "libvirt", "messagebus", "sshd", "postgres", "mysql", "redis", "syslog", "polkitd",
        "tss", "uuidd", "tcpdump", "dnsmasq", "ntp", "chrony", "sssd", "ftp", "sasl", "root",
    }
)  # fmt: skip
# Folders of the system itself: neither these nor anything under them (what the system owns,
# what is wiped at boot, what systemd hides from services, nginx's default web root).
SYSTEM_TREES = (
    "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
    "/sbin", "/snap", "/sys", "/tmp", "/usr", "/var/backups", "/var/cache", "/var/lock", "/var/log", "/var/mail",
    "/var/run", "/var/spool", "/var/tmp", "/var/www/html",
)  # fmt: skip
# Shared folders: not these themselves (a folder of one's own inside them is fine: /srv/my_app).
SYSTEM_DIRS = frozenset({"/srv", "/opt", "/var", "/var/lib", "/var/www", "/var/opt", "/var/local", "/mnt", "/media"})
SYSTEM_FOLDER = (
    "is a system folder, lies in one, or holds one: the install folder must be a new folder of its own"
    " that the service can use (e.g. /srv/my_app; not /srv, /opt, /var/lib, /var/www themselves, nor under"
    " /usr, /etc, /var/log, /var/www/html, /home, /tmp, /run or the other folders of the system)"
)
MAX_WORKERS = 512
MAX_THREADS = 64
MAX_INSTANCES = 16


def _full(pattern: re.Pattern[str], value: str) -> bool:
    return pattern.fullmatch(value) is not None


def project_name(value: str) -> str | None:
    if _full(PROJECT_NAME, value) and value == value.strip():
        return None
    return (
        "is not a valid project name (1 to 64 letters, digits, spaces and . , ' & ( ) + - _;"
        " no quotes, %, $, ;, braces or line breaks)"
    )


def python_name(value: str) -> str | None:
    if not _full(SLUG, value):
        return (
            "is not a valid slug (a Python package name: starts with a lowercase letter, then"
            " lowercase letters, digits or underscores, at most 32; no dots, slashes or dashes)"
        )
    if keyword.iskeyword(value) or value in sys.stdlib_module_names or value in TAKEN_SLUGS:
        return "is a name Python or the generated project already uses (pick another slug)"
    if value in SYSTEM_NAMES or value in SYSTEM_USERS or value.startswith("systemd"):
        return (
            "is a name the server already uses: the slug names a systemd unit, /etc/<slug>, /var/lib/<slug>"
            " and the service's account, which would replace the system's own (pick another slug)"
        )
    return None


def host_name(value: str) -> str | None:
    labels = value.split(".")
    if len(value) <= 253 and all(_full(HOST_LABEL, label) for label in labels):
        return None
    return (
        "is not a valid host name (labels of letters, digits and inner hyphens, separated by"
        " single dots; no spaces, wildcards or other characters)"
    )


def service_user(value: str) -> str | None:
    if value == "root":
        return "must not be root (a compromised app would own the whole server)"
    if not _full(UNIX_USER, value):
        return (
            "is not a valid user name (starts with a lowercase letter or _, then lowercase"
            " letters, digits, _ or -, at most 32)"
        )
    if value in SYSTEM_USERS or value.startswith(("systemd-", "_")):
        return (
            "belongs to the system or to nginx, or is a privileged account or group (the app needs a user of"
            " its own that grants nothing else: not shadow, disk, sudo, adm, docker, _apt, systemd-*, ...)"
        )
    return None


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def install_path(value: str) -> str | None:
    if not value.startswith("/"):
        return "must be an absolute path (starting with /)"
    if not _full(SAFE_PATH, value) or any(part in {".", ".."} for part in value.split("/")):
        return (
            "is not a plain absolute path (letters, digits, . _ - between single slashes;"
            " no '..', spaces, trailing slash or other characters)"
        )
    if len(value) > 64:
        return "is too long (at most 64 characters, so that socket paths stay within limits)"
    system = [*SYSTEM_TREES, *SYSTEM_DIRS]
    # A system folder itself, anything in a system tree, or a parent of either (/var holds /var/lib).
    if value in SYSTEM_DIRS or any(_within(value, tree) or _within(tree, value) for tree in SYSTEM_TREES):
        return SYSTEM_FOLDER
    if any(_within(folder, value) for folder in system):
        return SYSTEM_FOLDER
    return None


def worker_count(value: str) -> str | None:
    if value == "auto" or (_full(WHOLE_NUMBER, value) and int(value) <= MAX_WORKERS):
        return None
    return f"is not 'auto' or a whole number from 1 to {MAX_WORKERS}"


def whole_number(upper: int) -> Rule:
    def rule(value: str) -> str | None:
        if _full(WHOLE_NUMBER, value) and int(value) <= upper:
            return None
        return f"is not a whole number from 1 to {upper}"

    return rule


def module_callable(value: str) -> str | None:
    if _full(MODULE_CALLABLE, value):
        return None
    return "is not a module:callable like mysite.wsgi:application (dotted Python names, one colon)"


def email(value: str) -> str | None:
    local, _, domain = value.partition("@")
    if _full(EMAIL_LOCAL_PART, local) and domain and host_name(domain) is None:
        return None
    return "is not an email address like admin@example.com"


def absolute_path(value: str) -> str | None:
    if _full(SAFE_PATH, value) and not any(part in {".", ".."} for part in value.split("/")):
        return None
    return "is not a plain absolute path (letters, digits, . _ - between single slashes)"


def app_servers(value: str) -> str | None:
    """"none" (or empty), or host:port pairs separated by commas."""
    if value in NO_APP_SERVERS:
        return None
    for server in value.split(","):
        host, _, port = server.rpartition(":")
        if not host or host_name(host) is not None or tcp_port(port) is not None:
            return "is not a comma-separated list of host:port (host name or IPv4 address, port 1024 to 65535)"
    return None


def tcp_port(value: str) -> str | None:
    if _full(WHOLE_NUMBER, value) and 1024 <= int(value) <= 65535:
        return None
    return "is not a port number from 1024 to 65535 (digits only; gunicorn runs unprivileged)"


def nginx_size(value: str) -> str | None:
    if _full(NGINX_SIZE, value):
        return None
    return "is not an nginx size (a whole number above 0, optionally followed by k, m or g)"


def one_of(*choices: str) -> Rule:
    def rule(value: str) -> str | None:
        if value in choices:
            return None
        return f"is not one of {', '.join(choices)}"

    return rule


# The answers a user gives, each with its rule.
ANSWER_RULES: dict[str, Rule] = {
    "project_name": project_name,
    "project_slug": python_name,
    "domain_name": host_name,
    "server_user": service_user,
    "install_dir": install_path,
    "framework": one_of("wsgi", "flask", "django", "asgi", "existing"),
    "existing_app": module_callable,
    "worker_class": one_of("auto", "sync", "gthread", "gevent", "asgi"),
    "workers": worker_count,
    "threads": whole_number(MAX_THREADS),
    "bind": one_of("unix", "tcp"),
    "app_port": tcp_port,
    "instances": whole_number(MAX_INSTANCES),
    "remote_app_servers": app_servers,
    "client_max_body_size": nginx_size,
    "database": one_of("sqlite", "postgresql"),
    "cache": one_of("off", "on"),
    "metrics": one_of("off", "prometheus"),
    "backup": one_of("local", "restic", "off"),
    "tls_mode": one_of("none", "letsencrypt", "existing"),
    "tls_email": email,
    "tls_certificate": absolute_path,
    "tls_certificate_key": absolute_path,
    "platform": one_of(*PLATFORMS),
}


# Yes/no answers: cookiecutter turns what the user types (yes, no, true, false, ...) into a boolean;
# a replay file is read as it is written.
YES_NO_ANSWERS = ("git_init",)


# Values the template uses without asking (cookiecutter's own settings): none can be overridden into
# something else, because a command-line value for a key that is not an answer is ignored.
def describe(field: str, value: object, reason: str) -> str:
    """One line a user can act on: the field, the value as they typed it, and the rule."""
    return f"{field}: {json.dumps(value, ensure_ascii=False)} {reason}"


def _check(rules: Mapping[str, Rule], answers: Mapping[str, object]) -> dict[str, str]:
    """field -> the line that refuses its value, for every field that breaks its rule."""
    found = {}
    for field in YES_NO_ANSWERS:
        if field in answers and not isinstance(answers[field], bool):
            found[field] = describe(field, answers[field], "must be yes or no (true or false in a replay file)")
    for field, rule in rules.items():
        if field not in answers:
            continue
        value = answers[field]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            found[field] = describe(field, value, "must be a single value, not a list or yes/no")
            continue
        reason = rule(str(value))
        if reason:
            found[field] = describe(field, value, reason)
    return found


def cross_field(answers: Mapping[str, object], refused: Collection[str] = ()) -> list[str]:
    """Rules that tie two answers together: combinations that cannot work.

    A rule runs only when each answer it reads is there and passed its own rule (`refused` lists
    those that did not), so that one bad answer gives one message and every other problem is still
    reported.
    """
    found = []

    def get(key: str) -> str:
        return str(answers.get(key, ""))

    def usable(*keys: str) -> bool:
        return all(key in answers and key not in refused for key in keys)

    if usable("server_user", "platform") and get("server_user") == PLATFORMS[get("platform")].nginx_user:
        found.append(describe("server_user", get("server_user"), "must differ from nginx's user"))
    worker = worker_class(answers) if usable("worker_class", "framework") else ""
    framework = get("framework")
    if usable("worker_class", "framework"):
        if framework == "asgi" and worker != "asgi":
            found.append(
                describe(
                    "worker_class",
                    get("worker_class"),
                    "cannot serve an ASGI app (use asgi or auto for framework asgi)",
                )
            )
        if worker == "asgi" and framework in ("wsgi", "flask", "django"):
            found.append(
                describe("worker_class", "asgi", f"needs an ASGI app, and framework {framework} generates a WSGI one")
            )
    if usable("database", "framework") and get("database") == "postgresql" and framework != "django":
        found.append(
            describe("database", "postgresql", f"needs framework django (framework {framework} has no database layer)")
        )
    if usable("bind", "instances", "app_port") and get("bind") == "tcp":
        last = int(get("app_port")) + int(get("instances")) - 1
        if last > 65535:
            found.append(describe("instances", get("instances"), f"would need ports up to {last}, above 65535"))
    domain = get("domain_name")
    if (
        usable("tls_mode", "domain_name")
        and get("tls_mode") == "letsencrypt"
        and ("." not in domain or _full(IPV4, domain) or domain.endswith(".localhost"))
    ):
        found.append(
            describe("domain_name", domain, "cannot get a Let's Encrypt certificate (a public domain name is needed)")
        )
    return found


def problems(answers: Mapping[str, object]) -> list[str]:
    """Every reason to refuse these answers, one line each; empty when they are all fine."""
    refused = _check(ANSWER_RULES, answers)
    return [*refused.values(), *cross_field(answers, refused)]
