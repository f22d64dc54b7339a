"""A WSGI app the live tests put in front of a baked project's own app, to see what nginx passes on.

`wrap(app)` answers three paths itself and hands every other request to `app`:
  /probe/echo     the request's headers as gunicorn gave them (JSON)
  /probe/slow     sleeps ?seconds=N, after a line "probe-slow-start pid=P" on stderr (gunicorn's log)
  /probe/status   answers with ?code=N (an app that fails: 500)
  /probe/page     a page that says how many times the app made it, with the headers asked for in the
                  query: ?cache-control=...&set-cookie=1&vary=...
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from urllib.parse import parse_qs

MADE = itertools.count(1)


def wrap(app):
    def application(environ, start_response):
        path = environ.get("PATH_INFO", "")
        query = {key: values[-1] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
        headers = [("Content-Type", "application/json")]
        if path == "/probe/echo":
            seen = {key[5:].replace("_", "-").lower(): val for key, val in environ.items() if key.startswith("HTTP_")}
            body = {"headers": seen, "scheme": environ["wsgi.url_scheme"], "remote_addr": environ.get("REMOTE_ADDR")}
        elif path == "/probe/slow":
            print(f"probe-slow-start pid={os.getpid()}", file=sys.stderr, flush=True)
            time.sleep(float(query.get("seconds", "1")))
            body = {"slept": query.get("seconds", "1")}
        elif path == "/probe/status":
            code = int(query.get("code", "500"))
            data = b"failed on purpose\n"
            start_response(f"{code} Probe", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
            return [data]
        elif path == "/probe/page":
            body = {"made": f"{os.getpid()}-{next(MADE)}-{time.monotonic_ns()}"}
            if "cache-control" in query:
                headers.append(("Cache-Control", query["cache-control"]))
            if query.get("set-cookie"):
                headers.append(("Set-Cookie", "sessionid=abc; HttpOnly"))
        else:
            return app(environ, start_response)
        data = json.dumps(body).encode()
        start_response("200 OK", [*headers, ("Content-Length", str(len(data)))])
        return [data]

    return application
