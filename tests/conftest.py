"""Shared pytest configuration: the web app fixtures and Chrome options for browser tests.

dash[testing] 4.4 has no Selenium Manager, so chromedriver must be on PATH; the browser binary is
Debian's Chromium. The flags keep the headless browser off the network and the GPU. Without
Chromium or chromedriver the browser tests are skipped, unless CIRCUIT_SPARSITY_REQUIRE_BROWSER=1
(set by .ci/run) asks for them to fail instead.

Tests marked `redis` start their own redis-server. Without redis-server on PATH or the `redis`
package they are skipped, unless CIRCUIT_SPARSITY_REQUIRE_SERVICES=1 (set by .ci/run) asks for
them to fail instead.
"""

import importlib.util
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


def redis_missing() -> str | None:
    """Why the Redis tests cannot run here, or None when they can."""
    if shutil.which("redis-server") is None:
        return "redis-server not on PATH (Debian: apt-get install redis-server)"
    if importlib.util.find_spec("redis") is None:
        return "the redis package is not installed (pip install -e '.[test]')"
    return None


def pytest_collection_modifyitems(config, items):
    # (marker, what the tests need, why it is missing or None, variable that forbids the skip)
    needs = (
        ("browser", "Chromium", browser_missing(), "CIRCUIT_SPARSITY_REQUIRE_BROWSER"),
        ("redis", "redis-server", redis_missing(), "CIRCUIT_SPARSITY_REQUIRE_SERVICES"),
    )
    for marker, service, reason, require_variable in needs:
        if reason is None or os.environ.get(require_variable) == "1":
            continue
        skip = pytest.mark.skip(reason=f"{marker} tests need {service}: {reason}")
        for item in items:
            if marker in item.keywords:
                item.add_marker(skip)
