"""The I/O-bound case: a page that waits 20 ms, as a view waiting on its database would.

bench/run writes this file as the wsgi.py of projects baked with each worker class. Under gevent
workers time.sleep is the cooperative one (gunicorn patches the standard library), as a
database driver's socket would be. /healthz answers at once, for the readiness checks.
"""

import time

WAIT_SECONDS = 0.020
BODY = b"done waiting\n"


def application(environ, start_response):
    if environ.get("PATH_INFO") != "/healthz":
        time.sleep(WAIT_SECONDS)
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    return [BODY]
