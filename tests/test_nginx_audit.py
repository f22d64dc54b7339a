"""gixy (gixy-ng) audits the generated nginx site for known misconfigurations: none may be found.

The site is wrapped in the same small main configuration that deploy/check and run-local use
(deploytools.nginx.write_main_conf), as nginx itself would read it inside http {}.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool

GIXY = Path(sys.executable).with_name("gixy")
# default_server_flag: the catch-all servers leave `default_server` out on purpose. A Debian or
# Ubuntu nginx has one already (sites-enabled/default), and two make nginx -t fail; the first
# server of a port is its default anyway.
SKIPPED = "default_server_flag"


def main_conf(project: Path, tmp_path: Path) -> Path:
    nginx = require_tool("nginx", "apt-get install nginx")
    code = (
        "import sys; from pathlib import Path; from deploytools.nginx import LocalPorts, write_main_conf; "
        "print(write_main_conf(Path(sys.argv[1]), sys.argv[2], LocalPorts(http=8080), foreground=False))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "prefix"), nginx],
        cwd=project / "deploy",
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(done.stdout.strip())


def gixy_findings(conf: Path) -> list[dict]:
    if not GIXY.exists():
        pytest.fail(f"{GIXY} is missing: pip install -r requirements-dev.txt")
    done = subprocess.run(
        [str(GIXY), "--format", "json", "--skips", SKIPPED, str(conf)], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip().startswith("["), done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    "answers",
    [
        {},
        {"tls_mode": "existing"},
        {"cache": "on"},
        {"tls_mode": "letsencrypt", "instances": "2", "cache": "on"},
        {"metrics": "prometheus"},
    ],
    ids=["default", "tls", "cache", "letsencrypt-instances-cache", "metrics"],
)
def test_gixy_finds_nothing_in_the_site(bake, tmp_path: Path, answers: dict[str, str]) -> None:
    findings = gixy_findings(main_conf(bake(**answers).path, tmp_path))
    assert findings == [], [(f["plugin"], f["reason"]) for f in findings]


def test_gixy_would_see_a_version_leak(bake, tmp_path: Path) -> None:
    """The audit can fail: the site with server_tokens on gets a finding."""
    project = bake().path
    site = project / "deploy" / "nginx" / "my_app.conf"
    site.write_text(site.read_text().replace("server_tokens off;", "server_tokens on;"))
    assert gixy_findings(main_conf(project, tmp_path))
