"""What the PostgreSQL server the env file names admits, asked with the app's own driver.

    python3 pgsettings.py   -> {"max_connections": 100, "reserved": 3, "version": "15.10"} on stdout

Run by deploy/install with the release's venv, as the service's account and with the env file's
settings, so that it connects exactly as the app will: a wrong host, password or pg_hba.conf rule
fails here, before the release is switched to. It imports nothing of the project.
"""

import json
import sys

import psycopg


def main() -> int:
    # Every setting from the PG* variables, as libpq reads them (the app's connection too).
    with psycopg.connect(connect_timeout=10) as connection:
        values = dict(
            connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('max_connections', 'superuser_reserved_connections', 'reserved_connections', 'server_version')"
            ).fetchall()
        )
    reserved = int(values.get("superuser_reserved_connections", 0)) + int(values.get("reserved_connections", 0))
    limit = int(values["max_connections"])
    print(json.dumps({"max_connections": limit, "reserved": reserved, "version": values["server_version"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
