"""The part this machine plays (deploy/install --role): the whole site, or one tier of several.

- server: nginx and gunicorn on this machine (the default);
- app: gunicorn only, on this host's private address, for load balancers elsewhere
  (--listen ADDRESS, --trust ADDRESS...): systemd drop-ins move the listening socket(s) there;
  with --firewall, an nftables table of the project's own lets only the --trust addresses reach
  the app's ports;
- lb: nginx only, proxying to app hosts elsewhere (--app-host ADDRESS..., --drain ADDRESS...):
  the site's upstream lists each app host's ports.

The manifest records the role with its options: a run without --role on an app host or a load
balancer is refused instead of turning it into a whole server.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

from .. import layout
from ..nginx import address_port, app_hosts_site
from .common import InstallError

ROLES = ("server", "app", "lb")
DESCRIBED = {"server": "a whole server", "app": "an app host", "lb": "a load balancer"}
# The drop-in deploy/install --role app writes for each service and socket unit.
DROP_IN = "app-host.conf"
# --role app --firewall: the unit that loads the table, and the table (nftables' inet family).
FIREWALL_UNIT = f"{layout.SLUG}-firewall.service"
FIREWALL_TABLE = f"inet {layout.SLUG}"
NFT = "/usr/sbin/nft"


def address(option: str, value: str) -> str:
    """An IP address as given to `option`, in its canonical spelling; ValueError says what is wrong."""
    try:
        parsed = ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        raise ValueError(
            f"{option} {value}: not an IPv4 or IPv6 address (a name will not do: give the address)"
        ) from None
    if parsed.is_unspecified:
        raise ValueError(
            f"{option} {value}: the wildcard address means every address of a machine; give the one address"
            " on the private network"
        )
    return str(parsed)


def braced(text: str) -> str:
    """`{ text }`, as nftables groups (no f-string braces: cookiecutter renders this file with Jinja)."""
    return "{ " + text + " }"


def unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Role:
    name: str = "server"
    listen: str | None = None
    trust: tuple[str, ...] = ()
    app_hosts: tuple[str, ...] = ()
    drain: tuple[str, ...] = ()
    firewall: bool = False

    @classmethod
    def from_options(
        cls,
        name: str,
        listen: str | None,
        trust: list[str],
        app_hosts: list[str],
        drain: list[str],
        firewall: bool = False,
    ) -> Role:
        """The role the command line asks for; ValueError names the option at fault."""
        given = {
            "--listen": listen,
            "--trust": trust,
            "--firewall": firewall,
            "--app-host": app_hosts,
            "--drain": drain,
        }
        allowed = {"server": (), "app": ("--listen", "--trust", "--firewall"), "lb": ("--app-host", "--drain")}[name]
        for option, value in given.items():
            if value and option not in allowed:
                raise ValueError(f"{option} does not go with --role {name}")
        if name == "app":
            if not listen:
                raise ValueError("--role app needs --listen ADDRESS: this host's address on the private network")
            here = address("--listen", listen)
            if not trust:
                raise ValueError("--role app needs --trust ADDRESS for each load balancer (their nginx connects)")
            return cls("app", here, unique([address("--trust", value) for value in trust]), firewall=firewall)
        if name == "lb":
            if not app_hosts:
                raise ValueError("--role lb needs --app-host ADDRESS for each app host")
            hosts = unique([address("--app-host", value) for value in app_hosts])
            drained = unique([address("--drain", value) for value in drain])
            strays = [host for host in drained if host not in hosts]
            if strays:
                raise ValueError(f"--drain {strays[0]}: not one of the --app-host addresses ({', '.join(hosts)})")
            return cls("lb", app_hosts=hosts, drain=drained)
        return cls()

    # In the manifest --------------------------------------------------------------------------
    def record(self) -> dict[str, object]:
        data: dict[str, object] = {"name": self.name}
        if self.name == "app":
            data |= {"listen": self.listen, "trust": list(self.trust)}
            if self.firewall:
                data["firewall"] = True
        elif self.name == "lb":
            data |= {"app_hosts": list(self.app_hosts), "drain": list(self.drain)}
        return data

    @classmethod
    def recorded(cls, data: dict) -> Role:
        """The role of an earlier run (a manifest without one: a whole server)."""
        name = data.get("name", "server")
        if name not in ROLES:
            raise InstallError(f"the manifest records an unknown role {name!r}: give --role explicitly")
        return cls(
            name,
            data.get("listen"),
            tuple(data.get("trust", ())),
            tuple(data.get("app_hosts", ())),
            tuple(data.get("drain", ())),
            bool(data.get("firewall", False)),
        )

    def command(self) -> str:
        """The deploy/install command line that asks for this role."""
        words = ["deploy/install", "--role", self.name]
        if self.listen:
            words += ["--listen", self.listen]
        words += [word for host in self.trust for word in ("--trust", host)]
        words += ["--firewall"] if self.firewall else []
        words += [word for host in self.app_hosts for word in ("--app-host", host)]
        words += [word for host in self.drain for word in ("--drain", host)]
        return shlex.join(words)

    # What it installs -------------------------------------------------------------------------
    @property
    def runs_app(self) -> bool:
        """gunicorn runs here: the account, the units, migrations."""
        return self.name != "lb"

    @property
    def runs_nginx(self) -> bool:
        return self.name != "app"

    @property
    def installs_code(self) -> bool:
        """The app, its env file and venv: where it runs, and on a Django load balancer, whose static
        files come from collectstatic."""
        return self.runs_app or layout.FRAMEWORK == "django"

    @property
    def describe(self) -> str:
        return DESCRIBED[self.name]

    def app_servers(self) -> list[str]:
        """Where this machine's gunicorn answers, one per service (layout.APP_SERVICES' order)."""
        if self.name == "app" and self.listen:
            return [address_port(self.listen, port) for port in layout.APP_PORTS]
        return list(layout.UPSTREAM_SERVERS)

    def active_units(self) -> list[str]:
        """The units this role keeps running: the app's, its firewall's, and where nginx runs the
        exporters (metrics on)."""
        exporters = layout.METRICS_UNITS if self.runs_nginx else []
        if not self.runs_app:
            return list(exporters)
        return [*layout.ACTIVE_UNITS, *([FIREWALL_UNIT] if self.firewall else []), *exporters]

    @property
    def all_drained(self) -> bool:
        return self.name == "lb" and set(self.app_hosts) <= set(self.drain)

    def site(self) -> bytes:
        """The nginx site as installed: the project's, with the app hosts' upstream on a load balancer."""
        baked = layout.NGINX_SITE.read_text()
        if self.name != "lb":
            return baked.encode()
        return app_hosts_site(baked, list(self.app_hosts), set(self.drain)).encode()

    def drop_ins(self) -> dict[str, str]:
        """Server path -> content of the systemd drop-ins of an app host (none for the other roles)."""
        if self.name != "app" or not self.listen:
            return {}
        found = {}
        # The same words whatever the options: only a changed address rewrites (and rebinds) a socket.
        header = (
            "# Written by deploy/install --role app (from its --listen and --trust addresses).\n"
            "# This host runs the app only; nginx runs on the load balancers, which connect over the private\n"
            "# network. deploy/install writes this file again on every run (another role removes it): change\n"
            "# its options, not the file.\n"
        )
        trusted = ",".join(self.trust)
        # What listens on the private address comes up after the firewall that guards it.
        guarded = (
            [
                "# Only after the firewall admits the load balancers alone.",
                f"Wants={FIREWALL_UNIT}",
                f"After={FIREWALL_UNIT}",
            ]
            if self.firewall
            else []
        )
        for service, port in zip(layout.APP_SERVICES, layout.APP_PORTS, strict=True):
            bind = address_port(self.listen, port)
            lines = [header.rstrip("\n")]
            if layout.BIND == "tcp":
                lines += [
                    "[Unit]",
                    "# gunicorn binds the private address itself: it must be configured before the start.",
                    "Wants=network-online.target",
                    "After=network-online.target",
                    *guarded,
                    "",
                ]
                where = "gunicorn listens on the private address instead of loopback."
            else:
                where = "The socket unit hands gunicorn its listening socket there; this is for a start without it."
            lines += [
                "[Service]",
                f"# {where}",
                f"Environment=GUNICORN_BIND={bind}",
                "# X-Forwarded-* (the client's address and scheme) is believed from the load balancers only.",
                f"Environment=FORWARDED_ALLOW_IPS={trusted}",
            ]
            found[f"{layout.SYSTEMD_UNIT_DIR}/{service}.d/{DROP_IN}"] = "\n".join(lines) + "\n"
            if layout.BIND == "unix":
                socket = service.removesuffix(".service") + ".socket"
                found[f"{layout.SYSTEMD_UNIT_DIR}/{socket}.d/{DROP_IN}"] = (
                    header + ("[Unit]\n" + "\n".join(guarded) + "\n\n" if guarded else "") + "[Socket]\n"
                    "# TCP on the private address in place of the unix socket: the load balancers are other\n"
                    "# machines. systemd still holds it across restarts, so connections wait instead of failing.\n"
                    "ListenStream=\n"
                    f"ListenStream={bind}\n"
                    "# Bound even before the network has configured the address at boot.\n"
                    "FreeBind=yes\n"
                )
        if self.firewall:
            found[f"{layout.SYSTEMD_UNIT_DIR}/{FIREWALL_UNIT}"] = self.firewall_unit()
        return found

    def firewall_unit(self) -> str:
        """The oneshot unit that loads the app host's table: the app's ports admit the load balancers
        (and this host itself), and drop every other address; other traffic is not this table's."""
        ports = "tcp dport " + braced(", ".join(str(port) for port in layout.APP_PORTS))
        v4 = [host for host in self.trust if ":" not in host]
        v6 = [host for host in self.trust if ":" in host]
        rules = ["type filter hook input priority filter; policy accept;", "iifname lo accept;"]
        rules += [f"{ports} ip saddr {braced(', '.join(v4))} accept;"] if v4 else []
        rules += [f"{ports} ip6 saddr {braced(', '.join(v6))} accept;"] if v6 else []
        rules += [f"{ports} drop;"]
        # One transaction: an empty table first, so that the delete never fails, then the table anew.
        table = f"table {FIREWALL_TABLE} " + braced("chain input " + braced(" ".join(rules)) + ";")
        ruleset = f"add table {FIREWALL_TABLE}; delete table {FIREWALL_TABLE}; {table}"
        return "\n".join(
            [
                "# Written by deploy/install --role app --firewall (from its --trust addresses and the app's",
                f"# ports). Only the load balancers reach gunicorn on this host: the nftables table {FIREWALL_TABLE}",
                "# drops every other address's connections to the app's ports, and nothing else; other tables",
                "# (the distribution's firewall, rules for ssh) are left alone. Stopped, the table goes.",
                "[Unit]",
                f"Description={layout.SLUG}: only the load balancers reach gunicorn's port(s)",
                "# Early at boot, before the app's sockets: not after basic.target as units are by default.",
                "DefaultDependencies=no",
                "Wants=network-pre.target",
                "Before=network-pre.target shutdown.target",
                "Conflicts=shutdown.target",
                "",
                "[Service]",
                "Type=oneshot",
                "RemainAfterExit=yes",
                f'ExecStart={NFT} "{ruleset}"',
                "# New addresses replace the table in one transaction: never a moment without it.",
                f'ExecReload={NFT} "{ruleset}"',
                f"ExecStop={NFT} delete table {FIREWALL_TABLE}",
                "",
            ]
        )
