"""deploy/db-host: PostgreSQL for several app hosts (database=postgresql, Ansible's db group).

On the db host, as root, once per converge; each part is left alone when it is as it should be:

- a password for the app's role, made once and kept in PASSWORD_FILE (root's alone): the app
  hosts get it in their env files (deploy/install --database-host, from Ansible), nowhere else;
- the role (LOGIN, nothing more) and the database it owns, named as on a whole server;
- PostgreSQL listening on this host's private address too (ALTER SYSTEM; a restart);
- a block of pg_hba.conf, first in it, that admits the role to the database from each app host's
  address only, with scram-sha-256; checked through pg_hba_file_rules before PostgreSQL reloads it.
  Every other host of the network finds no rule and is refused.

The data lives where PostgreSQL keeps it (SHOW data_directory; /var/lib/postgresql on Debian).
Nothing here drops or empties it.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import subprocess
import time
from pathlib import Path

from . import layout
from .database import POSTGRES_PSQL, database_exists, quoted, role_exists

PASSWORD_DIR = f"/etc/{layout.SLUG}-db"
PASSWORD_FILE = f"{PASSWORD_DIR}/password"
HBA_BEGIN = f"# BEGIN {layout.SLUG}: its app hosts (deploy/db-host writes this block)"
HBA_END = f"# END {layout.SLUG}"
RESTART_SECONDS = 60


class DbHostError(Exception):
    pass


def identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def psql(sql: str) -> str:
    """SQL as the postgres account (peer authentication), read from stdin: a password in it never
    shows in a process list. Answers unaligned, one per line."""
    done = subprocess.run(
        POSTGRES_PSQL,
        input=sql, capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    if done.returncode:
        raise DbHostError(f"psql failed (status {done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise DbHostError(f"{value!r} is not an IP address") from None


def ensure_password() -> tuple[str, bool]:
    path = Path(PASSWORD_FILE)
    if path.is_file():
        return path.read_text().strip(), False
    os.makedirs(PASSWORD_DIR, mode=0o700, exist_ok=True)
    password = secrets.token_hex(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(password + "\n")
    return password, True


def ensure_role_and_database(password: str, new_password: bool) -> list[str]:
    assert layout.DATABASE and layout.DATABASE_ROLE
    role, name = layout.DATABASE_ROLE, layout.DATABASE
    made = []
    if psql(role_exists(role)) != "1":
        psql(f"CREATE ROLE {identifier(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
        made.append(f"role {role}")
    if made or new_password:
        # Stored as a SCRAM-SHA-256 verifier, never as the password itself.
        psql(f"SET password_encryption = 'scram-sha-256'; ALTER ROLE {identifier(role)} PASSWORD {quoted(password)};")
        made.append("its password")
    if psql(database_exists(name)) != "1":
        psql(
            f"CREATE DATABASE {identifier(name)} OWNER {identifier(role)} ENCODING 'UTF8' LOCALE 'C.UTF-8'"
            " TEMPLATE template0"
        )
        made.append(f"database {name}")
    return made


def wait_for_postgresql() -> None:
    deadline = time.monotonic() + RESTART_SECONDS
    while True:
        try:
            psql("SELECT 1")
            return
        except DbHostError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def ensure_listen(listen: str) -> bool:
    """PostgreSQL listens on `listen` as well as where it did; True when it was restarted for it."""
    now = [part.strip() for part in psql("SHOW listen_addresses").split(",") if part.strip()]
    if listen in now or "*" in now:
        return False
    wanted = ",".join([*now, listen])
    psql(f"ALTER SYSTEM SET listen_addresses = {quoted(wanted)}")
    subprocess.run(["systemctl", "restart", "postgresql"], check=True, capture_output=True, timeout=RESTART_SECONDS)
    wait_for_postgresql()
    return True


def hba_block(clients: list[str]) -> str:
    assert layout.DATABASE and layout.DATABASE_ROLE
    lines = [HBA_BEGIN]
    for client in clients:
        found = address(client)
        width = 32 if found.version == 4 else 128
        lines.append(f"host    {layout.DATABASE}    {layout.DATABASE_ROLE}    {found}/{width}    scram-sha-256")
    lines.append(HBA_END)
    return "\n".join(lines) + "\n"


def without_block(text: str) -> str:
    if HBA_BEGIN not in text:
        return text
    before, _, rest = text.partition(HBA_BEGIN)
    _, _, after = rest.partition(HBA_END + "\n")
    return before + after


def ensure_hba(clients: list[str]) -> bool:
    """The block first in pg_hba.conf (rules match in order); True when it changed."""
    path = Path(psql("SHOW hba_file"))
    old = path.read_text()
    new = hba_block(clients) + without_block(old)
    if new == old:
        return False
    stat = path.stat()
    temporary = path.with_name(f".{path.name}.{layout.SLUG}")
    temporary.write_text(new)
    os.chown(temporary, stat.st_uid, stat.st_gid)
    os.chmod(temporary, stat.st_mode & 0o7777)
    os.replace(temporary, path)
    errors = psql("SELECT line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL")
    if errors:
        path.write_text(old)
        raise DbHostError(f"{path} with the app hosts' rules has errors, put back as it was: {errors}")
    psql("SELECT pg_reload_conf()")
    return True


def setup(listen: str, clients: list[str]) -> dict[str, object]:
    """The db host as it should be; what was done and where everything is."""
    if not clients:
        raise DbHostError("no --client: name each app host's address")
    address(listen)
    try:
        wait_for_postgresql()
    except DbHostError as error:
        raise DbHostError(f"PostgreSQL does not answer here: {layout.PACKAGE_INSTALL} postgresql ({error})") from None
    password, new_password = ensure_password()
    made = ensure_role_and_database(password, new_password)
    restarted = ensure_listen(listen)
    hba = ensure_hba(clients)
    return {
        "changed": bool(made or restarted or hba),
        "made": made,
        "listen_restarted": restarted,
        "hba_changed": hba,
        "clients": clients,
        "database": layout.DATABASE,
        "role": layout.DATABASE_ROLE,
        "password_file": PASSWORD_FILE,
        "data_directory": psql("SHOW data_directory"),
        "max_connections": int(psql("SHOW max_connections")),
    }
