"""The static baseline: a tiny WSGI app that serves the files of one folder, run by gunicorn.

It does what a static-file middleware does at best: no copy through Python, the open file goes
to `wsgi.file_wrapper`, which gunicorn sends with sendfile(2). BENCH_STATIC_DIR names the folder.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

ROOT = Path(os.environ.get("BENCH_STATIC_DIR", ".")).resolve()
PREFIX = "/static/"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    target = (ROOT / path.removeprefix(PREFIX)).resolve()
    if not path.startswith(PREFIX) or target.parent != ROOT or not target.is_file():
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"not found\n"]
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    handle = target.open("rb")
    start_response(
        "200 OK", [("Content-Type", content_type), ("Content-Length", str(os.fstat(handle.fileno()).st_size))]
    )
    return environ["wsgi.file_wrapper"](handle, 65536)
