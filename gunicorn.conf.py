"""gunicorn settings for the web app: `gunicorn app:server -c gunicorn.conf.py`.

Each worker imports app.py itself (preload_app is off, because torch state forked from a preloaded
parent can hang workers) and loads models lazily. Every worker gets an equal share of the CPU
cores for torch, so workers do not oversubscribe the machine. Environment overrides:
`WEB_CONCURRENCY` (workers), `CIRCUIT_VIEWER_HOST` / `CIRCUIT_VIEWER_PORT` (bind address).
"""

import os

bind = f"{os.environ.get('CIRCUIT_VIEWER_HOST', '127.0.0.1')}:{os.environ.get('CIRCUIT_VIEWER_PORT', '8050')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
preload_app = False
# The first request for a model or circuit reads it from the store (a download if remote).
timeout = 120
accesslog = "-"
# gunicorn's maximum request line (its default is 4094). The per-token page keeps typed text in the
# URL, and webapp/url_state.py sizes MAX_TEXT_URL_BYTES so that its longest valid URL fits.
limit_request_line = 8190
# gunicorn 25.1+ opens a control socket at one default path per user, so a second instance on the
# same host would contend for it. The app needs no runtime control. Older versions ignore this.
control_socket_disable = True
# Send the app's own log lines (webapp, registry, inference) to stderr beside gunicorn's. gunicorn
# merges this into its default logging config; its loggers stop propagating, so no line is doubled.
logconfig_dict = {
    "root": {"level": "INFO", "handlers": ["error_console"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}


def post_fork(server, worker):
    import torch

    threads = max(1, (os.cpu_count() or 1) // workers)
    torch.set_num_threads(threads)
    server.log.info("worker %s: torch uses %d threads", worker.pid, threads)
