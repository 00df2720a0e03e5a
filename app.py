"""Entry point of the web app: `python app.py` serves it; `gunicorn app:server` uses `server`.

    python app.py --host 127.0.0.1 --port 8050          # development server
    gunicorn app:server -c gunicorn.conf.py              # production (see Procfile)

The store is `CIRCUIT_SPARSITY_STORE` (a folder or an http(s) URL), else the embedded `store/`.
Host and port default to `CIRCUIT_VIEWER_HOST` / `CIRCUIT_VIEWER_PORT`, else 127.0.0.1:8050.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

if __name__ == "__main__":
    # Set up logging before create_app, so its startup lines (the malloc setting) are shown.
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)

try:
    from webapp.app_factory import create_app

    app = create_app()
except ValueError as err:
    # registry.store raises StoreConfigError while it is imported, so the class cannot be imported
    # here. create_app raises MallocSettingError for an invalid CIRCUIT_SPARSITY_MALLOC.
    if type(err).__name__ not in ("StoreConfigError", "MallocSettingError"):
        raise
    if __name__ != "__main__":
        # Under gunicorn an exception at import is a worker boot error, which stops the master.
        # After sys.exit it would start new workers, each failing the same way.
        raise
    sys.exit(f"error: {err}")

server = app.server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the circuit sparsity viewer.")
    parser.add_argument(
        "--host",
        default=os.environ.get("CIRCUIT_VIEWER_HOST", "127.0.0.1"),
        help="interface to listen on (default: CIRCUIT_VIEWER_HOST or 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("CIRCUIT_VIEWER_PORT", "8050")),
        help="TCP port (default: CIRCUIT_VIEWER_PORT or 8050)",
    )
    parser.add_argument(
        "--debug",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Dash debug mode: reloader and in-page error reports",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)  # no-op if already set up
    app.run(host=args.host, port=args.port, debug=args.debug)


if __name__ == "__main__":
    main()
