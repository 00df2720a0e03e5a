"""Shared pytest configuration: the web app fixtures and Chrome options for browser tests.

dash[testing] 4.4 has no Selenium Manager, so chromedriver must be on PATH; the browser binary is
Debian's Chromium. The flags keep the headless browser off the network and the GPU. Without
Chromium or chromedriver the browser tests are skipped, unless CIRCUIT_SPARSITY_REQUIRE_BROWSER=1
(set by .ci/run) asks for them to fail instead.
"""

import os
import shutil

import pytest

# webapp_store, webapp_app, webapp_context, webapp_cache_dir: see tests/webapp_fixtures.py.
pytest_plugins = ["webapp_fixtures"]


def pytest_setup_options():
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(flag)
    return options


CHROMIUM = "/usr/bin/chromium"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} not found (Debian: apt-get install chromium)"
    if shutil.which("chromedriver") is None:
        return "chromedriver not on PATH (Debian: apt-get install chromium-driver)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = browser_missing()
    if reason is None or os.environ.get("CIRCUIT_SPARSITY_REQUIRE_BROWSER") == "1":
        return
    skip = pytest.mark.skip(reason=f"browser tests need Chromium: {reason}")
    for item in items:
        if "browser" in item.keywords:
            item.add_marker(skip)
