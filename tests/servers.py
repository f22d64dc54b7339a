"""Real Debian servers for the tests: systemd as PID 1 in containers, on a private network.

A root filesystem per Debian release is built once with mmdebstrap and cached outside the
repository (WSGI_DEPLOY_ROOTS, default /var/cache/cookiecutter-wsgi-deploy-roots), keyed by the
release and the package list. Each host boots an overlay of it with systemd-nspawn in a network
namespace of its own, joined by a veth pair to a bridge this process creates on a private /24
(10.77.N.0/24, N free on this machine). The bridge holds the .254 address, so the test process
reaches every host directly; the hosts have no route anywhere else.

Everything made here carries the prefix `wdl` and the creating process's id (base 36): the
containers, namespaces, links, overlay mounts and work folders are removed by `Lab.close()`, by an
atexit handler when a test run ends early, and, for a process that died without either, by the
next lab that starts on this machine.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import LoadResult, bounded_load

# Debian releases the servers run, and the Python each ships.
RELEASES = {"bookworm": "3.11", "trixie": "3.13"}
# The template's platform answer for each release.
PLATFORMS = {"bookworm": "debian-12", "trixie": "debian-13"}
# What a fresh server of ours has: systemd booting it, nginx, Python with venv, certbot (what
# tls_mode=letsencrypt needs; the servers reach no package index, so it comes with the root), an
# ssh server and sudo (Ansible comes in over ssh), nftables for the app hosts' firewall, and the
# tools the tests use inside it (curl, ip, ps, openssl for a self-signed certificate).
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "nginx",
    "python3",
    "python3-venv",
    "certbot",
    "openssh-server",
    "sudo",
    "curl",
    "iproute2",
    "procps",
    "openssl",
    # The app hosts' opt-in firewall (deploy/install --role app --firewall).
    "nftables",
    # The generated README brings the project to a server with git, and a wheelhouse with rsync.
    "git",
    "rsync",
    # metrics=prometheus: the exporters' programs, and a Prometheus the test scrapes them with.
    "prometheus-nginx-exporter",
    "mtail",
    "prometheus",
    # backup=restic: snapshots sent to a repository on another host, over sftp.
    "restic",
    # database=postgresql: the distribution's PostgreSQL (its cluster starts at boot), with psql,
    # pg_dump and pg_restore.
    "postgresql",
)
# Timers that would run apt on an idle test server, and the units Debian's Prometheus packages start
# on installation (every address, ports of their own, an exporter scraping port 8080 for nothing):
# the project runs its own exporter units, and the metrics test its own Prometheus.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "prometheus.service",
    "prometheus-nginx-exporter.service",
)
ROOTS_DIR = Path(os.environ.get("WSGI_DEPLOY_ROOTS", "/var/cache/cookiecutter-wsgi-deploy-roots"))
HOSTS_DIR = Path(os.environ.get("WSGI_DEPLOY_HOSTS", "/var/tmp/cookiecutter-wsgi-deploy-hosts"))
LOCK = Path("/run/lock/cookiecutter-wsgi-deploy-lab.lock")
PREFIX = "wdl"
SUBNET = "10.77"
BUILD_SECONDS = 900
BOOT_SECONDS = 90
POWEROFF_SECONDS = 30
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def tag(number: int) -> str:
    """A process id in base 36: short enough for interface names (15 characters at most)."""
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if not number:
            return text


def untag(text: str) -> int:
    return int(text, 36)


def run(*command: str, check: bool = True, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# Root filesystems ------------------------------------------------------------------------------
def root_key(release: str) -> str:
    recipe = "\n".join([release, *PACKAGES, *MASKED_UNITS])
    return f"{release}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def root_filesystem(release: str) -> Path:
    """The cached root of `release`, built first if missing (one builder at a time per release)."""
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}: one of {', '.join(RELEASES)}")
    target = ROOTS_DIR / root_key(release)
    if (target / "etc" / "os-release").exists():
        return target
    with locked(ROOTS_DIR / f".{target.name}.lock"):
        if (target / "etc" / "os-release").exists():
            return target
        building = ROOTS_DIR / f".{target.name}.building"
        if building.exists():
            shutil.rmtree(building)  # an interrupted build
        run(
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            f"--customize-hook=chroot $1 systemctl mask {' '.join(MASKED_UNITS)}",
            # The host's name would be copied in; each server gets its own at boot. So do ssh host keys:
            # every server gets its own (Lab.create), known to the lab's known_hosts.
            "--customize-hook=rm -f $1/etc/hostname $1/etc/ssh/ssh_host_*",
            release,
            str(building),
            timeout=BUILD_SECONDS,
        )
        building.rename(target)
    return target


def prepare_roots(releases: Sequence[str]) -> dict[str, Path]:
    """Build the roots of several releases at once (each download waits on the network)."""
    with ThreadPoolExecutor(max_workers=len(releases) or 1) as pool:
        return dict(zip(releases, pool.map(root_filesystem, releases), strict=True))


# Hosts -----------------------------------------------------------------------------------------
@dataclass
class Host:
    """One booted server: its name, its address on the lab's bridge, and a way in (nsenter)."""

    lab: Lab
    name: str
    release: str
    address: str
    netns: str
    folder: Path
    process: subprocess.Popen | None = None
    leader: int = 0

    @property
    def python(self) -> str:
        return RELEASES[self.release]

    @property
    def root(self) -> Path:
        """The server's filesystem as this machine sees it (an overlay of the cached root)."""
        return self.folder / "root"

    # Boot and power ----------------------------------------------------------------------------
    def start(self) -> None:
        """Boot the server (again): systemd-nspawn in its network namespace, output to boot.log."""
        log = (self.folder / "boot.log").open("ab")
        self.process = subprocess.Popen(
            [
                "systemd-nspawn",
                "--quiet",
                f"--directory={self.root}",
                f"--machine={self.name}",
                # No systemd on the test machine: no registration, no scope unit of its own.
                "--register=no",
                "--keep-unit",
                f"--network-namespace-path=/run/netns/{self.netns}",
                # As root on a real server: its own firewall rules (nftables) in its own network.
                "--capability=CAP_NET_ADMIN",
                "--console=read-only",
                "--link-journal=no",
                "--resolv-conf=off",
                "--timezone=off",
                "--boot",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.leader = 0

    def wait_booted(self, seconds: float = BOOT_SECONDS) -> str:
        """Wait for systemd in the container to say running (or degraded); its answer."""
        deadline = time.monotonic() + seconds
        state = "no container"
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} stopped while booting:\n{self.boot_log()}")
            if not self.leader:
                self.leader = self.find_leader()
            if self.leader:
                result = self.run("systemctl", "is-system-running", check=False, timeout=10)
                state = result.stdout.strip() or result.stderr.strip()
                if state in {"running", "degraded"}:
                    return state
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} not booted within {seconds}s (last state: {state}):\n{self.boot_log()}")

    def find_leader(self) -> int:
        """The container's PID 1 as this machine numbers it: systemd-nspawn's child running systemd."""
        assert self.process is not None
        for child in children(self.process.pid):
            try:
                if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                    return child
            except OSError:
                continue
        return 0

    def boot_log(self) -> str:
        text = (self.folder / "boot.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-30:])

    def poweroff(self) -> None:
        """systemctl poweroff, then whatever is left is killed."""
        process = self.process
        if process is None:
            return
        if process.poll() is None and self.leader:
            self.run("systemctl", "poweroff", "--no-block", check=False, timeout=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=POWEROFF_SECONDS)
        if process.poll() is None:
            # Killing PID 1 of the container ends every process in it.
            if self.leader:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.leader, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=POWEROFF_SECONDS)
        self.process = None
        self.leader = 0

    def reboot(self) -> str:
        """Power off and boot again, as after a power cut that ended cleanly; systemd's state."""
        self.poweroff()
        self.start()
        return self.wait_booted()

    # Commands ----------------------------------------------------------------------------------
    def command(self, *command: str, cwd: str | None = None, env: dict[str, str] | None = None) -> list[str]:
        """A command line that runs `command` inside the server as root, with a clean environment."""
        variables = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "TERM": "dumb", **(env or {})}
        where = ["-C", cwd] if cwd else []
        return [
            "nsenter",
            f"--target={self.leader}",
            "--all",
            "--",
            "/usr/bin/env",
            "-i",
            *where,
            *(f"{key}={value}" for key, value in variables.items()),
            *command,
        ]

    def run(
        self,
        *command: str,
        check: bool = True,
        timeout: float = 300,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        if not self.leader:
            raise RuntimeError(f"{self.name} is not running")
        result = subprocess.run(
            self.command(*command, cwd=cwd, env=env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
        )
        if check and result.returncode:
            raise AssertionError(
                f"{self.name}: {' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def sh(self, script: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return self.run("/bin/sh", "-ec", script, **kwargs)

    def popen(self, *command: str, cwd: str | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*command, cwd=cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def copy_in(self, source: Path, destination: str, owner: str = "root") -> None:
        """Copy a folder of this machine to `destination` in the server, owned by `owner` there."""
        self.run("mkdir", "-p", destination)
        extract = subprocess.Popen(
            self.command("tar", "--extract", "--no-same-owner", "--directory", destination),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert extract.stdin is not None
        with tarfile.open(fileobj=extract.stdin, mode="w|") as archive:
            for path in sorted(source.iterdir()):
                archive.add(path, arcname=path.name)
        extract.stdin.close()
        output = extract.stdout.read() if extract.stdout else b""
        if extract.wait(timeout=120):
            raise AssertionError(f"{self.name}: copying {source} to {destination} failed:\n{output.decode()}")
        if owner != "root":
            self.run("chown", "-R", f"{owner}:", destination)

    def write(self, path: str, content: str, mode: int = 0o644) -> None:
        self.run("install", "-D", "-m", f"{mode:o}", "/dev/stdin", path, input=content)

    def read(self, path: str) -> str:
        return self.run("cat", path).stdout

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path, check=False).returncode == 0

    def clock(self) -> str:
        """The server's time now, as journalctl's --since takes it."""
        return self.run("date", "+%Y-%m-%d %H:%M:%S.%N").stdout.strip()[:-3]

    def journal(self, since: str, *units: str) -> str:
        """What `units` logged since `since` (clock()): for a failure message."""
        selected = [f"--unit={unit}" for unit in units]
        said = self.run(
            "journalctl", "--no-pager", "--output=short-precise", f"--since={since}", *selected, check=False
        )
        return said.stdout[-8000:]

    def is_active(self, unit: str) -> bool:
        return self.run("systemctl", "is-active", "--quiet", unit, check=False).returncode == 0

    # HTTP from the test process, over the bridge ------------------------------------------------
    def get(self, path: str = "/", **options: Any) -> Response:
        """GET `path` from the test process over the bridge; `options` as http_get takes them."""
        return http_get(self.address, path, **options)


def children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


# The lab: a bridge, hosts on it, and the way everything goes away ------------------------------
class Lab:
    """Servers on one private network. `lab.boot(["app1", "app2", "lb"], release="bookworm")`."""

    def __init__(self) -> None:
        self.id = tag(os.getpid())
        self.bridge = f"{PREFIX}{self.id}b"
        self.folder = HOSTS_DIR / f"{PREFIX}-{self.id}"
        self.hosts: dict[str, Host] = {}
        self.subnet = ""
        self.next_address = 1
        self.lock = threading.Lock()
        self.closed = False
        clean_leftovers()
        with locked(LOCK):
            self.subnet = free_subnet()
            run("ip", "link", "add", self.bridge, "type", "bridge")
            run("ip", "address", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
        self.folder.mkdir(parents=True, exist_ok=True)
        # The way in over ssh: one client key for every host, and each host's own key, known ahead.
        (self.folder / "ssh").mkdir(mode=0o700)
        self.ssh_key = self.folder / "ssh" / "id_ed25519"
        self.known_hosts = self.folder / "ssh" / "known_hosts"
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{PREFIX}-{self.id}", "-f", str(self.ssh_key))
        self.known_hosts.touch(mode=0o600)
        atexit.register(self.close)
        # A plain SIGTERM (a CI runner cancelling the job) would skip atexit: make it an exit.
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
            signal.SIG_DFL,
            None,
        ):
            signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))

    @property
    def gateway(self) -> str:
        """This machine's address on the bridge, as the servers see it."""
        return f"{self.subnet}.254"

    def boot(self, names: Sequence[str], release: str = "bookworm") -> list[Host]:
        """Boot one server per name, all at once; each answers on its own address once systemd is up."""
        root = root_filesystem(release)
        hosts = [self.create(name, release, root) for name in names]
        for host in hosts:
            host.start()
        with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
            list(pool.map(Host.wait_booted, hosts))
        return hosts

    @contextlib.contextmanager
    def booted(self, *names: str, release: str = "bookworm") -> Iterator[list[Host]]:
        """The servers of `boot` for the length of a block, removed when it ends, however it ends."""
        hosts = self.boot(names, release=release)
        try:
            yield hosts
        finally:
            for host in hosts:
                self.remove(host)

    def create(self, name: str, release: str, root: Path) -> Host:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", name):
            raise ValueError(f"host name {name!r}: lower-case letters, digits and hyphens, up to 24")
        with self.lock:
            if name in self.hosts:
                raise ValueError(f"{name} is booted already in this lab")
            index = self.next_address
            self.next_address += 1
            host = Host(self, name, release, f"{self.subnet}.{index}", f"{PREFIX}-{self.id}-{name}", self.folder / name)
            self.hosts[name] = host
        for part in ("upper", "work", "root"):
            (host.folder / part).mkdir(parents=True, exist_ok=True)
        run(
            "mount", "-t", "overlay", "overlay", "-o",
            f"lowerdir={root},upperdir={host.folder / 'upper'},workdir={host.folder / 'work'}",
            str(host.root),
        )  # fmt: skip
        (host.root / "etc" / "hostname").write_text(f"{name}\n")
        # As Debian's installer writes it: the host's own name resolves (sudo asks for it).
        (host.root / "etc" / "hosts").write_text(
            f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost\n"
        )
        self.allow_ssh(host)
        veth = f"{PREFIX}{self.id}v{index}"
        run("ip", "netns", "add", host.netns)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        run("ip", "link", "set", veth, "master", self.bridge, "up")
        run("ip", "-n", host.netns, "address", "add", f"{host.address}/24", "dev", "eth0")
        run("ip", "-n", host.netns, "link", "set", "eth0", "up")
        run("ip", "-n", host.netns, "link", "set", "lo", "up")
        return host

    def allow_ssh(self, host: Host) -> None:
        """Give the host an ssh host key of its own, add it to known_hosts, let the lab's key in as root."""
        key = host.root / "etc" / "ssh" / "ssh_host_ed25519_key"
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", str(key))
        public = key.with_name(key.name + ".pub").read_text().split()[:2]
        with self.lock, self.known_hosts.open("a") as known:
            known.write(f"{host.address} {' '.join(public)}\n")
        ssh_dir = host.root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        authorized = ssh_dir / "authorized_keys"
        authorized.write_text(self.ssh_key.with_suffix(".pub").read_text())
        authorized.chmod(0o600)

    @property
    def ssh_options(self) -> list[str]:
        """ssh options that reach every host of the lab as root, checking its host key."""
        return [
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=10",
            "-i", str(self.ssh_key),
        ]  # fmt: skip

    def remove(self, host: Host) -> None:
        """Power the host off and remove everything it had: mount, namespace, link, files."""
        try:
            host.poweroff()
        finally:
            with self.lock:
                self.hosts.pop(host.name, None)
            remove_host_parts(host.folder, host.netns)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for host in list(self.hosts.values()):
            with contextlib.suppress(Exception):
                self.remove(host)
        remove_lab_parts(self.id)


def free_subnet() -> str:
    """10.77.N with N unused by any address on this machine (called with LOCK held)."""
    used = run("ip", "-o", "-4", "address", "show").stdout
    for number in range(0, 254):
        if f" {SUBNET}.{number}." not in used:
            return f"{SUBNET}.{number}"
    raise RuntimeError(f"no free /24 left in {SUBNET}.0.0/16")


def remove_host_parts(folder: Path, netns: str) -> None:
    root = folder / "root"
    kill_processes_in(root)
    if os.path.ismount(root) and run("umount", str(root), check=False).returncode:
        run("umount", "--lazy", str(root), check=False)
    run("ip", "netns", "delete", netns, check=False)
    shutil.rmtree(folder, ignore_errors=True)


def remove_lab_parts(lab_id: str) -> None:
    """Whatever is left of lab `lab_id`: hosts' folders and namespaces, links, the bridge."""
    folder = HOSTS_DIR / f"{PREFIX}-{lab_id}"
    netns_prefix = f"{PREFIX}-{lab_id}-"
    if folder.is_dir():
        for host in folder.iterdir():
            remove_host_parts(host, netns_prefix + host.name)
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if name.startswith(netns_prefix):
            run("ip", "netns", "delete", name, check=False)
    links = run("ip", "-o", "link", "show", check=False).stdout
    for name in re.findall(rf"^\d+: ({PREFIX}{lab_id}[bv]\d*)[@:]", links, re.MULTILINE):
        run("ip", "link", "delete", name, check=False)
    shutil.rmtree(folder, ignore_errors=True)


def kill_processes_in(root: Path) -> None:
    """SIGKILL every process whose root is `root` (a container left running), and its nspawn."""
    target = str(root)
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(entry / "root") == target or target in (entry / "cmdline").read_text():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_leftovers() -> None:
    """Remove the labs of processes that ended without cleaning up (killed, crashed)."""
    ids = set()
    if HOSTS_DIR.is_dir():
        ids |= {p.name.split("-", 1)[1] for p in HOSTS_DIR.iterdir() if p.name.startswith(f"{PREFIX}-")}
    if os.path.isdir("/run/netns"):
        ids |= {n.split("-")[1] for n in os.listdir("/run/netns") if n.startswith(f"{PREFIX}-")}
    links = run("ip", "-o", "link", "show", check=False).stdout
    ids |= set(re.findall(rf"^\d+: {PREFIX}([0-9a-z]+?)[bv]\d*[@:]", links, re.MULTILINE))
    for lab_id in ids:
        with contextlib.suppress(ValueError):
            if not alive(untag(lab_id)) or untag(lab_id) == os.getpid():
                remove_lab_parts(lab_id)


# HTTP clients ----------------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    alpn: str | None = None

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def http_get(
    address: str,
    path: str = "/",
    *,
    host: str | None = "example.com",
    port: int = 80,
    tls: bool = False,
    server_name: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> Response:
    """GET over HTTP/1.1; `host` None sends no Host header at all (HTTP/1.0 style)."""
    if tls:
        # A self-signed certificate: the name is checked by SNI, not the chain.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_alpn_protocols(["http/1.1"])
        sock = socket.create_connection((address, port), timeout=timeout)
        wrapped = context.wrap_socket(sock, server_hostname=server_name or host)
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(address, port, timeout=timeout)
        connection.sock = wrapped
    else:
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        if host is None:
            connection.putrequest("GET", path, skip_host=True)
            for key, value in (headers or {}).items():
                connection.putheader(key, value)
            connection.endheaders()
        else:
            connection.request("GET", path, headers={"Host": host, **(headers or {})})
        answer = connection.getresponse()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    finally:
        connection.close()


def tls_alpn(address: str, server_name: str, port: int = 443, protocols: Sequence[str] = ("h2", "http/1.1")) -> str:
    """The protocol the server picks by ALPN for `server_name`, e.g. "h2" for HTTP/2."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(list(protocols))
    with (
        socket.create_connection((address, port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=server_name) as wrapped,
    ):
        return wrapped.selected_alpn_protocol() or ""


TIME_WAIT_SECONDS = 60  # Linux's TCP_TIMEWAIT_LEN, fixed at build time


def load_rate() -> float:
    """Requests a second that a load on one server may send: half of what this machine's local
    ports allow. Each request is a new connection, which this side closes first, so its port stays
    in TIME_WAIT for 60 s; off loopback, Linux reuses none of them for the same server (tcp_tw_reuse
    defaults to loopback only), and faster than ports / 60 s connect() fails with EADDRNOTAVAIL."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return (high - low + 1) / TIME_WAIT_SECONDS / 2


LOAD_RATE = load_rate()


@contextlib.contextmanager
def load(
    address: str,
    *,
    host: str = "example.com",
    path: str = "/",
    seconds: float = 60,
    max_requests: int = 20000,
    concurrency: int = 4,
    tls: bool = False,
    port: int = 80,
    timeout: float = 15,
    marker: str | None = None,
) -> Iterator[LoadResult]:
    """`concurrency` clients sending GET `path` to `address` until the block ends, `seconds` pass or
    `max_requests` are sent: bounded in count and in time, and paced by `LOAD_RATE`. A client gives
    up on a request after `timeout` seconds. With a `marker`, the result counts the answers whose
    body holds it (`marked`, once the block ends)."""
    hits: list[None] = []  # list.append is atomic: the clients are threads

    def fetch() -> int:
        response = http_get(address, path, host=host, tls=tls, port=port, timeout=timeout)
        if marker is not None and marker in response.text:
            hits.append(None)
        return response.status

    with bounded_load(
        fetch,
        seconds=seconds,
        max_requests=max_requests,
        concurrency=concurrency,
        stop_with_block=True,
        rate=LOAD_RATE,
    ) as result:
        yield result
    result.marked = len(hits)


# Projects on servers ---------------------------------------------------------------------------
def platform_answer(release: str) -> dict[str, str]:
    """{"platform": ...}: the answer that makes a project for `release`."""
    return {"platform": PLATFORMS[release]}


def make_wheelhouse(project: Path, python: str, cache: Path) -> None:
    """The project's own deploy/wheelhouse for `python`, run once per requirements.txt and Python
    (kept in `cache`), then copied into the project's wheels/ as a user's run would leave it."""
    requirements = (project / "requirements.txt").read_bytes()
    key = f"{hashlib.sha256(requirements).hexdigest()[:16]}"
    made = cache / key / f"py{python}"
    with locked(cache / f".{key}.lock"):
        if not (made / "requirements.txt").exists():
            run(
                str(project / "deploy" / "wheelhouse"), "--python", python, "--dir", str(cache / key),
                env={**os.environ, "PYTHON": sys.executable}, timeout=300,
            )  # fmt: skip
    shutil.copytree(made, project / "wheels" / f"py{python}", dirs_exist_ok=True)


# deploy/install's watch waits 30 s after each switch by default; tests that watch nothing skip it.
NO_WATCH = ("--watch", "0")


@dataclass
class Checkout:
    """A baked project copied onto a server, installed from there with its own deploy/install."""

    host: Host
    path: str

    def install(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """deploy/install `args`; a deploy watches its answers only when a test asks (--watch)."""
        watched = any(arg.startswith("--watch") for arg in args) or {"--uninstall", "--releases"} & set(args)
        return self.host.run(
            "deploy/install", *args, *([] if watched else NO_WATCH), cwd=self.path, check=False, timeout=timeout
        )

    def installed(self, *args: str) -> str:
        """deploy/install's output; a failure with its output when it exits non-zero."""
        result = self.install(*args)
        assert result.returncode == 0, f"deploy/install {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
        return result.stdout

    def edit(self, relative: str, old: str, new: str) -> str:
        """Replace `old` by `new` in a file of the checkout; the file as it was, to put back."""
        path = f"{self.path}/{relative}"
        before = self.host.read(path)
        assert old in before, f"{old!r} not in {path}"
        self.host.run("/bin/sh", "-c", f'cat > "{path}"', input=before.replace(old, new, 1))
        return before

    def put_back(self, relative: str, content: str) -> None:
        self.host.run("/bin/sh", "-c", f'cat > "{self.path}/{relative}"', input=content)


@contextlib.contextmanager
def other_requirements(checkout: Checkout, local: Path, cache: Path) -> Iterator[None]:
    """For the block: the checkout's requirements.txt with the same pins and one more comment line
    (a venv of its own for deploy/install), and a wheelhouse made for it as a user makes one, by
    deploy/wheelhouse in `local` (a bake of the same project on this machine). Both put back after."""
    host = checkout.host
    changed = "# The same pins, another requirements.txt: a venv of its own.\n"
    requirements = checkout.edit("requirements.txt", "gunicorn==", changed + "gunicorn==")
    (local / "requirements.txt").write_text(requirements.replace("gunicorn==", changed + "gunicorn==", 1))
    shutil.rmtree(local / "wheels", ignore_errors=True)
    make_wheelhouse(local, RELEASES[host.release], cache)
    wheels = f"{checkout.path}/wheels"
    host.run("mv", wheels, f"{wheels}.before")
    host.copy_in(local / "wheels", wheels)
    try:
        yield
    finally:
        host.run("rm", "-rf", wheels)
        host.run("mv", f"{wheels}.before", wheels)
        checkout.put_back("requirements.txt", requirements)


def copy_project(host: Host, project: Path, destination: str, owner: str = "root") -> Checkout:
    host.copy_in(project, destination, owner=owner)
    return Checkout(host, destination)
