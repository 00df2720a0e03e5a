"""Browser tests of the models and per-token pages (dash[testing], headless Chromium): deep links.

Run with `pytest -m browser tests/test_browser_pages.py` (see tests/conftest.py for the browser).
"""

from urllib.parse import parse_qs, quote, urlsplit

import pytest
from tiny_store import MEANS_K, MODEL, SWEEP, TASK

pytestmark = pytest.mark.browser


def _start(dash_duo, app) -> str:
    dash_duo.server.host = "127.0.0.1"  # the runner's URL; Dash itself binds 127.0.0.1
    dash_duo.start_server(app, host="127.0.0.1")
    return dash_duo.server.url


def _query(dash_duo) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(dash_duo.driver.current_url).query).items()}


def _severe_logs(dash_duo) -> list:
    return [entry for entry in dash_duo.get_logs() or [] if entry.get("level") == "SEVERE"]


def test_models_link_restores_metrics(dash_duo, webapp_app):
    base = _start(dash_duo, webapp_app)
    dash_duo.wait_for_page(url=f"{base}/?model={MODEL}&metrics=L0", timeout=20)

    dash_duo.wait_for_element("#models-weights-text", timeout=20)
    dash_duo.wait_for_contains_text("#models-table", "stdlib_2k", timeout=20)
    dash_duo.wait_for_element("#models-curves .annotation-text", timeout=20)
    titles = [element.text for element in dash_duo.find_elements("#models-curves .annotation-text")]
    assert titles == ["L0"]
    assert _query(dash_duo) == {"model": MODEL, "metrics": "L0"}
    assert _severe_logs(dash_duo) == []


def test_per_token_link_shows_text(dash_duo, webapp_app):
    base = _start(dash_duo, webapp_app)
    text = 'print("<b>")\n'
    url = f"{base}/per-token?model={MODEL}&node=1.mlp.post_act:2&source=text&text={quote(text)}"
    dash_duo.wait_for_page(url=url, timeout=20)

    dash_duo.wait_for_element("#tokens-heatmap-rows .token", timeout=20)
    shown = "".join(span.text for span in dash_duo.find_elements("#tokens-heatmap-rows .token"))
    assert "<b>" in shown  # markup in a token shows as text
    query = _query(dash_duo)
    assert query["node"] == "1.mlp.post_act:2"
    assert query["text"] == text
    assert _severe_logs(dash_duo) == []


def test_per_token_shows_both_predictions(dash_duo, webapp_app):
    base = _start(dash_duo, webapp_app)
    query = (
        f"model={MODEL}&node=1.mlp.post_act:2&source=text&text={quote('x = 1')}"
        f"&task={TASK}&sweep={SWEEP}&k={MEANS_K}"
    )
    dash_duo.wait_for_page(url=f"{base}/per-token?{query}", timeout=20)

    dash_duo.wait_for_element("#tokens-prediction-blocks .top-circuit tr.prediction", timeout=30)
    full = dash_duo.find_elements("#tokens-prediction-blocks .top-full tr.prediction")
    circuit = dash_duo.find_elements("#tokens-prediction-blocks .top-circuit tr.prediction")
    assert len(full) == 5
    assert len(circuit) == 5
    heading = dash_duo.find_element("#tokens-prediction-blocks .top-circuit .fw-semibold").text
    assert heading == f"circuit alone ({TASK}, {SWEEP}, k={MEANS_K})"
    assert "text: after position" in dash_duo.find_element("#tokens-prediction-blocks h6").text

    url_query = _query(dash_duo)
    assert url_query["sweep"] == SWEEP
    assert url_query["k"] == MEANS_K
    assert url_query["task"] == TASK
    assert _severe_logs(dash_duo) == []


def test_back_undoes_control_change(dash_duo, webapp_app):
    import time

    from selenium.webdriver.support.ui import WebDriverWait

    base = _start(dash_duo, webapp_app)
    dash_duo.wait_for_page(url=f"{base}/embeddings?model={MODEL}&channel=1", timeout=20)
    dash_duo.wait_for_contains_text("#embeddings-top", "top 20 tokens", timeout=30)
    driver = dash_duo.driver

    def history_length() -> int:
        return driver.execute_script("return window.history.length")

    def wait_for_channel(value: str) -> None:
        WebDriverWait(driver, 30).until(lambda _: _query(dash_duo).get("channel") == value)

    # Rendering and the callbacks that follow it add no history entry.
    loaded = history_length()
    time.sleep(1.5)
    assert history_length() == loaded

    channel = dash_duo.find_element("#embeddings-channel")
    dash_duo.clear_input(channel)
    channel.send_keys("2")
    wait_for_channel("2")
    assert history_length() == loaded + 1  # the cleared box writes nothing; "2" adds one entry

    driver.back()
    wait_for_channel("1")
    dash_duo.wait_for_contains_text("#embeddings-histogram", "channel 1", timeout=30)
    assert dash_duo.find_element("#embeddings-channel").get_attribute("value") == "1"
    time.sleep(1.5)
    assert _query(dash_duo) == {"model": MODEL, "channel": "1"}  # no reload loop, no new entry
    assert history_length() == loaded + 1

    driver.forward()
    wait_for_channel("2")
    dash_duo.wait_for_contains_text("#embeddings-histogram", "channel 2", timeout=30)
    assert _severe_logs(dash_duo) == []


def test_embeddings_link_shows_channel(dash_duo, webapp_app):
    base = _start(dash_duo, webapp_app)
    dash_duo.wait_for_page(url=f"{base}/embeddings?model={MODEL}&channel=3", timeout=20)

    dash_duo.wait_for_element("#embeddings-top table", timeout=20)
    dash_duo.wait_for_element("#embeddings-histogram .main-svg", timeout=20)
    dash_duo.wait_for_element("#embeddings-positions .main-svg", timeout=20)
    top_rows = dash_duo.find_elements("#embeddings-top tbody tr")
    bottom_rows = dash_duo.find_elements("#embeddings-bottom tbody tr")
    assert len(top_rows) == len(bottom_rows) == 20
    assert _query(dash_duo) == {"model": MODEL, "channel": "3"}

    # A bad channel typed into the box gets a message naming it, and the page stays up.
    box = dash_duo.find_element("#embeddings-channel")
    box.clear()
    box.send_keys("99999")
    dash_duo.wait_for_contains_text("#embeddings-messages", "99999", timeout=20)
    assert _severe_logs(dash_duo) == []
