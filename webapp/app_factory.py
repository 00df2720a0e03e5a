"""Create the Dash app: pages from `webapp/pages`, assets from the repository's `assets/` folder.

Every file the browser loads comes from this server: Bootstrap's CSS (5.3.6, the version
dash-bootstrap-components 2.0 targets) is vendored as `assets/bootstrap.min.css`, not a CDN link.

One app per process. Page modules register their callbacks when Dash imports them here, so tests
create the app first and import page modules afterwards (as `webapp.pages.<name>`).
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import dash
import dash_bootstrap_components as dbc
import plotly.io as pio
from dash import Dash, html

from inference.allocator import keep_freed_memory
from webapp.cache import init_cache
from webapp.components.navbar import navbar
from webapp.data import configure_store

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = REPO_ROOT / "assets"


def create_app(store_root: str | None = None, cache_config: dict[str, Any] | None = None) -> Dash:
    """Build the app reading `store_root` (default: `CIRCUIT_SPARSITY_STORE` or the embedded store).

    `cache_config` is a Flask-Caching config (default: from the `CIRCUIT_VIEWER_CACHE_*` variables).
    """
    configure_store(store_root)
    # Forward passes reuse freed activation memory instead of faulting it in again (inference.allocator).
    keep_freed_memory()
    # plotly's validators look numpy up in sys.modules without importing it. If a callback thread
    # meets numpy half-imported by another thread (torch imports it on first use), the validator
    # raises AttributeError, as seen with the threaded development server. Importing numpy here,
    # before any request, closes that window.
    importlib.import_module("numpy")
    # Dash serialises callback results with plotly's JSON encoder. With orjson installed, plotly
    # first walks every value in Python, which made a 2,000-node graph update take 63 ms instead
    # of 33 ms with the standard json engine (Flask test client, shared 2-core machine).
    pio.json.config.default_engine = "json"
    app = Dash(
        "webapp",
        use_pages=True,
        pages_folder="pages",
        assets_folder=str(ASSETS_DIR),
        title="Circuit sparsity viewer",
        # Page layouts build their components from the catalogue; callbacks are unit-tested.
        suppress_callback_exceptions=True,
    )
    init_cache(app.server, cache_config)
    app.layout = html.Div([navbar(), dbc.Container(dash.page_container, fluid=True)])
    logger.info("created the app with pages: %s", ", ".join(dash.page_registry))
    return app
