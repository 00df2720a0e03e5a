"""Browser test of the circuit page (dash[testing], headless Chromium): deep link, tap, URL state.

Run with `pytest -m browser tests/test_browser_circuit.py`; needs /usr/bin/chromium and chromedriver
on PATH (see tests/conftest.py).
"""

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import torch
from tiny_store import MODEL, SWEEP, TASK

pytestmark = pytest.mark.browser

SHARED_QUERY = f"?model={MODEL}&task={TASK}&sweep={SWEEP}&k=k_optim&threshold=0.1"
CY = "document.querySelector('#circuit-graph')._cyreg.cy"


def _start(dash_duo, app) -> str:
    dash_duo.server.host = "127.0.0.1"  # the runner's URL; Dash itself binds 127.0.0.1
    dash_duo.start_server(app, host="127.0.0.1")
    return dash_duo.server.url


def _wait_for_graph(dash_duo) -> int:
    """Wait until cytoscape contains the circuit's nodes, and return how many it has."""
    count_js = (
        "var el = document.querySelector('#circuit-graph');"
        f"return el && el._cyreg ? {CY}.nodes().not('.row-label').length : 0;"
    )
    dash_duo.wait_for_element("#circuit-summary-text", timeout=20)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        count = dash_duo.driver.execute_script(count_js)
        if count:
            return count
        time.sleep(0.2)
    raise AssertionError("the circuit graph never showed any nodes")


def _query(dash_duo) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(dash_duo.driver.current_url).query).items()}


def _severe_logs(dash_duo) -> list:
    return [entry for entry in dash_duo.get_logs() or [] if entry.get("level") == "SEVERE"]


def test_shared_circuit_url_tap_node(dash_duo, webapp_app, webapp_store):
    base = _start(dash_duo, webapp_app)
    dash_duo.wait_for_page(url=f"{base}/circuit{SHARED_QUERY}", timeout=20)

    node_count = _wait_for_graph(dash_duo)
    assert node_count == 72

    # Tap the first q node through cytoscape, as a click on the canvas would.
    node = dash_duo.driver.execute_script(
        f"var node = {CY}.nodes('[id ^= \"0.attn.q:\"]')[0]; node.emit('tap'); return node.id();"
    )
    dash_duo.wait_for_text_to_equal("#node-card-title", node, timeout=20)
    dash_duo.wait_for_element("#circuit-task-heatmap .token", timeout=20)
    tokens = dash_duo.find_elements("#circuit-task-heatmap pre")
    assert len(tokens) == 2

    dash_duo.driver.execute_script(f"{CY}.getElementById('{node}').emit('mouseover');")
    dash_duo.wait_for_contains_text("#circuit-hover", "ablation delta", timeout=10)

    query = _query(dash_duo)
    assert query["node"] == node
    assert query["k"] == "k_optim"
    assert query["threshold"] == "0.1"
    assert _severe_logs(dash_duo) == []


def test_copied_url_restores_node(dash_duo, webapp_app, webapp_store):
    viz = torch.load(
        webapp_store / f"viz/{MODEL}/{TASK}/{SWEEP}/k_optim/viz_data.pt", weights_only=True
    )
    node = f"1.mlp.post_act:{int(viz['circuit_data']['1.mlp.post_act'][-1])}"
    base = _start(dash_duo, webapp_app)
    dash_duo.wait_for_page(url=f"{base}/circuit{SHARED_QUERY}&node={node}", timeout=20)

    _wait_for_graph(dash_duo)
    dash_duo.wait_for_text_to_equal("#node-card-title", node, timeout=20)
    dash_duo.wait_for_element("#circuit-task-heatmap .token", timeout=20)
    assert _query(dash_duo)["node"] == node
    selected = dash_duo.driver.execute_script(
        f"return {CY}.getElementById('{node}').style('border-color');"
    )
    assert selected == "rgb(255,127,14)"
    assert _severe_logs(dash_duo) == []
