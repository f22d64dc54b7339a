"""deploy/release: this project as one archive, the release that deploy/ansible puts on every host.

The archive holds what deploy/install reads on a server: the project's files as the installer
copies them (tests, venvs, caches and hidden files stay behind), the settings made at bake time
(the .env file) and, when deploy/wheelhouse made it, wheels/. It is built the same way every
time (sorted names, no dates, root as owner), so the same files make the same archive. Its name
holds the release's id, the one deploy/install gives its folder on every host (releases/<id>):
an unchanged project makes no new release.

Load balancers get a twin archive without the .env file: they run no app, so its settings and
secrets (Django's secret key) stay on the app hosts, off the machines that face the internet.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import stat
import tarfile
import tempfile
from pathlib import Path

from . import layout
from .install.common import app_files
from .install.releases import release_id

# Hidden: deploy/install and the archive's own tree skip hidden folders, and git ignores it.
RELEASES_DIR = layout.PROJECT_DIR / ".releases"
# Archives kept beside the newest, for a look at what a host ran before.
KEEP = 5


def files() -> dict[str, Path]:
    """Every path of the release by its name in the archive, parents first."""
    found = app_files()
    if layout.ENV_SOURCE.exists():
        # Hidden from the app's copy (it holds secrets), but the installer creates the env file from it.
        found[layout.ENV_SOURCE.name] = layout.ENV_SOURCE
    return dict(sorted(found.items()))


def lb_twin(path: Path) -> Path:
    """Where the load balancers' archive of the release archived at `path` goes: beside it."""
    return path.with_name(path.name.removesuffix(".tar.gz") + ".lb.tar.gz")


def without_settings(paths: dict[str, Path]) -> dict[str, Path]:
    """The release for load balancers: everything but the settings made at bake time."""
    return {name: path for name, path in paths.items() if path != layout.ENV_SOURCE}


def archive(paths: dict[str, Path]) -> bytes:
    """A gzip'd tar of `paths`, byte for byte the same for the same files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in paths.items():
            info = tar.gettarinfo(str(path), arcname=name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            # The mode as git keeps it: executable or not, nothing of this machine's umask. The
            # settings hold secrets: on every host that unpacks a release, root alone reads them.
            executable = info.mode & stat.S_IXUSR
            info.mode = 0o755 if info.isdir() or executable else 0o644
            if path == layout.ENV_SOURCE:
                info.mode = 0o600
            if info.isfile():
                with path.open("rb") as content:
                    tar.addfile(info, content)
            elif info.isdir():
                tar.addfile(info)
            else:
                raise SystemExit(f"release: {path}: only files and folders go into a release")
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as zipped:
        zipped.write(raw.getvalue())
    return packed.getvalue()


def write(path: Path, content: bytes) -> bool:
    """Put `content` at `path` unless it is there already; whether it was written."""
    if path.exists():
        path.touch()  # the newest again: pruning keeps it
        return False
    # It may hold secrets (the .env file): readable by this user only.
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".partial-", delete=False) as partial:
        partial.write(content)
    os.replace(partial.name, path)
    return True


def make(releases: Path) -> dict[str, object]:
    """Write the archives into `releases` unless they are there already; what Ansible needs to know."""
    paths = files()
    content = archive(paths)
    # The id deploy/install gives the release on the server: one name for it everywhere.
    release = release_id()
    path = releases / f"{layout.SLUG}-{release}.tar.gz"
    lb_path = lb_twin(path)
    made = write(path, content)
    made = write(lb_path, archive(without_settings(paths))) or made
    prune(releases)
    return {
        "archive": str(path),
        "lb_archive": str(lb_path),
        "id": release,
        "made": made,
        "slug": layout.SLUG,
        # Where deploy/install keeps the releases on every host, and the link to the running one.
        "current": layout.APP_DIR,
        "domain": layout.DOMAIN,
        "health_path": layout.HEALTH_PATH,
        "app_ports": layout.APP_PORTS,
        "tls": layout.TLS_MODE != "none",
        # database=postgresql: what the db host's play needs (None: SQLite, no db host).
        "database": {"name": layout.DATABASE, "role": layout.DATABASE_ROLE} if layout.DATABASE else None,
    }


def prune(releases: Path) -> None:
    """Keep the KEEP newest releases, each with its load balancers' twin."""
    archives = [path for path in releases.glob(f"{layout.SLUG}-*.tar.gz") if not path.name.endswith(".lb.tar.gz")]
    archives.sort(key=lambda path: path.stat().st_mtime, reverse=True)
    for old in archives[KEEP:]:
        old.unlink()
        lb_twin(old).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="deploy/release", description=__doc__)
    parser.add_argument("--dir", type=Path, default=RELEASES_DIR, help=f"where archives go (default: {RELEASES_DIR})")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (for deploy/ansible)")
    args = parser.parse_args(argv)
    result = make(args.dir.absolute())
    if args.json:
        print(json.dumps(result))
    else:
        verb = "made" if result["made"] else "unchanged"
        print(f"release {result['id']}: {verb}: {result['archive']}")
    return 0
