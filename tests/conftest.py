"""Shared pytest configuration: the web app fixtures and Chrome options for browser tests.

dash[testing] 4.4 has no Selenium Manager, so chromedriver must be on PATH; the browser binary is
Debian's Chromium. The flags keep the headless browser off the network and the GPU.
"""

# webapp_store, webapp_app, webapp_context, webapp_cache_dir: see tests/webapp_fixtures.py.
pytest_plugins = ["webapp_fixtures"]


def pytest_setup_options():
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = "/usr/bin/chromium"
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
