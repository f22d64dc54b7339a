"""The part this machine plays (deploy/install --role): the whole site, or one tier of several.

- server: nginx and gunicorn on this machine (the default);
- app: gunicorn only, on this host's private address, for load balancers elsewhere
  (--listen ADDRESS, --trust ADDRESS...): systemd drop-ins move the listening socket(s) there;
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


def unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


@dataclass(frozen=True)
class Role:
    name: str = "server"
    listen: str | None = None
    trust: tuple[str, ...] = ()
    app_hosts: tuple[str, ...] = ()
    drain: tuple[str, ...] = ()

    @classmethod
    def from_options(
        cls, name: str, listen: str | None, trust: list[str], app_hosts: list[str], drain: list[str]
    ) -> Role:
        """The role the command line asks for; ValueError names the option at fault."""
        given = {"--listen": listen, "--trust": trust, "--app-host": app_hosts, "--drain": drain}
        allowed = {"server": (), "app": ("--listen", "--trust"), "lb": ("--app-host", "--drain")}[name]
        for option, value in given.items():
            if value and option not in allowed:
                raise ValueError(f"{option} does not go with --role {name}")
        if name == "app":
            if not listen:
                raise ValueError("--role app needs --listen ADDRESS: this host's address on the private network")
            here = address("--listen", listen)
            if not trust:
                raise ValueError("--role app needs --trust ADDRESS for each load balancer (their nginx connects)")
            return cls("app", here, unique([address("--trust", value) for value in trust]))
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
        )

    def command(self) -> str:
        """The deploy/install command line that asks for this role."""
        words = ["deploy/install", "--role", self.name]
        if self.listen:
            words += ["--listen", self.listen]
        words += [word for host in self.trust for word in ("--trust", host)]
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
        for service, port in zip(layout.APP_SERVICES, layout.APP_PORTS, strict=True):
            bind = address_port(self.listen, port)
            lines = [header.rstrip("\n")]
            if layout.BIND == "tcp":
                lines += [
                    "[Unit]",
                    "# gunicorn binds the private address itself: it must be configured before the start.",
                    "Wants=network-online.target",
                    "After=network-online.target",
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
                    header + "[Socket]\n"
                    "# TCP on the private address in place of the unix socket: the load balancers are other\n"
                    "# machines. systemd still holds it across restarts, so connections wait instead of failing.\n"
                    "ListenStream=\n"
                    f"ListenStream={bind}\n"
                    "# Bound even before the network has configured the address at boot.\n"
                    "FreeBind=yes\n"
                )
        return found
