{% set derived = cookiecutter | derive %}
"""gunicorn settings for {{ cookiecutter.project_name }}.

Used as they are by systemd ({{ derived.service }}.service) on the server and by
deploy/run-local on a workstation; only the environment variables below differ between the two.
`gunicorn --print-config -c gunicorn.conf.py` shows the resolved values.
"""

import multiprocessing
import os

# Application -----------------------------------------------------------------
wsgi_app = "{{ derived.wsgi_app }}"
# The app is imported from this file's folder as named, not as resolved: on the server that is
# {{ derived.app_dir }}, the link to the running release, so a graceful reload (HUP) after the link
# moved starts workers with the new release's code.
chdir = os.path.dirname(os.path.abspath(__file__))
{% if cookiecutter.framework == "django" %}
# Settings, the secret key among them, come from the environment (EnvironmentFile= under systemd).
raw_env = ["DJANGO_SETTINGS_MODULE={{ cookiecutter.project_slug }}.settings"]
{% endif %}

# Server socket ---------------------------------------------------------------
{% if cookiecutter.bind == "unix" %}
# Under systemd the listening socket comes from {{ derived.unit_stem }}.socket (socket
# activation) and wins over `bind`; the bind below serves runs without systemd.
{% else %}
# Loopback only: nginx is the one public entry point.{{ " Each instance's unit sets its own port." if cookiecutter.instances | int > 1 }}
{% endif %}
bind = [os.environ.get("GUNICORN_BIND", "{{ derived.upstream_servers[0] }}")]
# Connections the kernel queues while every worker is busy; nginx retries nothing on its own.
backlog = 2048

# Worker processes ------------------------------------------------------------
{% if cookiecutter.workers == "auto" %}
# (2 x cores) + 1 sync workers keeps the CPUs busy while one worker waits on I/O.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * multiprocessing.cpu_count() + 1))
{% else %}
# Chosen at bake time; WEB_CONCURRENCY overrides it without editing this file.
workers = int(os.environ.get("WEB_CONCURRENCY", {{ cookiecutter.workers }}))
{% endif %}
{% if derived.worker_class == "sync" %}
# One request at a time per worker; nginx buffers slow clients so workers never wait on them.
worker_class = "sync"
{% elif derived.worker_class == "gthread" %}
# Each worker serves `threads` requests at once and keeps connections from nginx open.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", {{ cookiecutter.threads }}))
{% elif derived.worker_class == "gevent" %}
# Green threads: thousands of requests waiting on I/O share one worker.
worker_class = "gevent"
worker_connections = 1000
{% else %}
# gunicorn's native asyncio worker: ASGI, HTTP/1.1 keep-alive and websockets.
worker_class = "asgi"
worker_connections = 1000
{% endif %}
{% if derived.worker_class == "sync" %}
# A worker silent for this long, which for a sync worker means stuck in one request, is killed
# and replaced; nginx's proxy_read_timeout is longer, so gunicorn gives up first.
{% else %}
# A worker whose main loop is silent for this long is killed and replaced. A slow request does
# not silence a {{ derived.worker_class }} worker, so this does not bound a request: nginx's
# proxy_read_timeout (the same value) does, with a 504.
{% endif %}
timeout = {{ derived.timeout }}
# Time a worker gets to finish its request on reload or stop; systemd's TimeoutStopSec is longer.
graceful_timeout = {{ derived.graceful_timeout }}
{% if derived.worker_class == "sync" %}
# Sync workers close every connection after the response; nginx keeps the client side alive.
keepalive = 2
{% else %}
# Idle connections from nginx stay open this long. A worker that stops waits for them, so the
# timeout is short (quick reloads and restarts), and longer than nginx's upstream
# keepalive_timeout (4s), so that gunicorn never closes a connection as nginx reuses it.
keepalive = 5
{% endif %}
# Restart each worker after about this many requests so that a slow leak cannot grow forever;
# the jitter keeps the workers from restarting all at once. Each restart forks and imports the
# app again, about 100 ms of CPU (measured): every 20,000 requests, about 1% of the CPU.
max_requests = 20000
max_requests_jitter = 2000
# The heartbeat file workers touch; on a tmpfs a slow disk cannot make workers look dead.
worker_tmp_dir = "/dev/shm"

# Security --------------------------------------------------------------------
{% if cookiecutter.bind == "unix" %}
# gunicorn trusts X-Forwarded-* from every peer on the unix socket, which only nginx can reach
# (mode 0660, group {{ derived.platform.nginx_user }}); these addresses count for TCP runs by hand.
{% else %}
# Trust X-Forwarded-* only from nginx on this machine.
{% endif %}
# On an app server of its own, set FORWARDED_ALLOW_IPS to the nginx host's address.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# nginx sets X-Forwarded-Proto and clears the other two headers gunicorn would also read; trusting
# one header means a client can never make them disagree (gunicorn answers 400 when they do).
secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
# Request line and header sizes as nginx's defaults (8 KB): an oversized one fails at nginx first.
# nginx does not count headers: a request with more than about 94 of its own reaches gunicorn
# with over 100 (nginx adds its X-Forwarded-* and X-Real-IP), and gunicorn answers 431.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# Logging ---------------------------------------------------------------------
# nginx's access log has every request, with gunicorn's time in it ($upstream_response_time); a
# second line per request from gunicorn cost 19-36% of the throughput when measured. Set
# GUNICORN_ACCESSLOG=- to have it in the journal as well (the client address nginx saw, the
# request, status, bytes, referrer, user agent and milliseconds).
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
access_log_format = '%({x-forwarded-for}i)s "%(r)s" %(s)s %(B)s "%(f)s" "%(a)s" %(M)sms'
# Errors and gunicorn's own lines (workers started, reloads, timeouts) go to stderr: journald on
# the server, a log file under run-local.
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")

# Process naming --------------------------------------------------------------
# `ps` and `top` show "gunicorn: master [{{ derived.service }}]" and the workers alike.
proc_name = os.environ.get("GUNICORN_PROC_NAME", "{{ derived.service }}")

# Control socket --------------------------------------------------------------
# gunicorn opens a control socket for `gunicornc`, by default under $HOME, which the sandboxed
# service cannot write and which two apps run by one user would share. systemd gives each
# service a private RuntimeDirectory; without one there is no control socket.
_runtime_dir = os.environ.get("RUNTIME_DIRECTORY")
if _runtime_dir:
    control_socket = os.path.join(_runtime_dir.split(":")[0], "gunicorn.ctl")
else:
    control_socket_disable = True
