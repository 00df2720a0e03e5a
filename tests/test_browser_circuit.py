"""Browser test of the circuit page (dash[testing], headless Chromium): deep link, tap, URL state.

Run with `pytest -m browser tests/test_browser_circuit.py`; needs /usr/bin/chromium and chromedriver
on PATH (see tests/conftest.py).
"""

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import torch
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.keys import Keys
from tiny_store import MODEL, SWEEP, TASK

pytestmark = pytest.mark.browser

SHARED_QUERY = f"?model={MODEL}&task={TASK}&sweep={SWEEP}&k=k_optim&threshold=0.1"
CY = "document.querySelector('#circuit-graph')._cyreg.cy"
EMBEDDED_STORE = Path(__file__).resolve().parents[1] / "store"


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


def _open_circuit(dash_duo, app, query: str = SHARED_QUERY) -> int:
    """Start the app, open the circuit page at `query`, and return the graph's node count."""
    base = _start(dash_duo, app)
    dash_duo.wait_for_page(url=f"{base}/circuit{query}", timeout=20)
    return _wait_for_graph(dash_duo)


def _kept_node(webapp_store, location: str, position: int) -> str:
    """Return the id of the tiny k_optim circuit's kept node at `position` of `location`."""
    viz = torch.load(
        webapp_store / f"viz/{MODEL}/{TASK}/{SWEEP}/k_optim/viz_data.pt", weights_only=True
    )
    return f"{location}:{int(viz['circuit_data'][location][position])}"


def _query(dash_duo) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(dash_duo.driver.current_url).query).items()}


def _severe_logs(dash_duo) -> list:
    return [entry for entry in dash_duo.get_logs() or [] if entry.get("level") == "SEVERE"]


def test_shared_circuit_url_tap_node(dash_duo, webapp_app, webapp_store):
    node_count = _open_circuit(dash_duo, webapp_app)
    assert node_count == 72

    # Tap the first q node through cytoscape, as a click on the canvas would.
    node = dash_duo.driver.execute_script(
        f"var node = {CY}.nodes('[id ^= \"0.attn.q:\"]')[0]; node.emit('tap'); return node.id();"
    )
    dash_duo.wait_for_text_to_equal("#node-card-title", node, timeout=20)
    dash_duo.wait_for_element("#circuit-task-heatmap .token", timeout=20)
    tokens = dash_duo.find_elements("#circuit-task-heatmap pre")
    assert len(tokens) == 3  # inputs, patch_from_inputs, difference

    dash_duo.driver.execute_script(f"{CY}.getElementById('{node}').emit('mouseover');")
    dash_duo.wait_for_contains_text("#circuit-hover", "ablation delta", timeout=10)

    # The q node gets its head's attention pattern and its channel's pattern on task sample 0.
    dash_duo.wait_for_element("#circuit-attention-head .hm", timeout=30)
    dash_duo.wait_for_element("#circuit-attention-channel .hm", timeout=30)
    dash_duo.wait_for_text_to_equal(
        "#circuit-sample-title", "pair 0, inputs of 2 stored samples", timeout=10
    )
    ticks = dash_duo.driver.execute_script(
        "return Array.from(document.querySelectorAll('#circuit-attention-head .xtick text'))"
        ".map(function (t) { return t.textContent; });"
    )
    assert "< 4" in ticks  # the token `<` shows as text, not as markup
    assert "> 6" in ticks
    title = dash_duo.find_element("#circuit-attention-head .gtitle").text
    assert title.startswith("layer 0, head ")

    # Another sample re-draws the patterns and goes into the URL.
    sample_input = dash_duo.find_element("#circuit-sample")
    sample_input.send_keys(Keys.BACKSPACE, "1", Keys.ENTER)
    dash_duo.wait_for_text_to_equal(
        "#circuit-sample-title", "pair 0, patch_from_inputs of 2 stored samples", timeout=30
    )

    query = _query(dash_duo)
    assert query["node"] == node
    assert query["k"] == "k_optim"
    assert query["threshold"] == "0.1"
    assert query["sample"] == "1"
    assert _severe_logs(dash_duo) == []


def _row_label_sizes(dash_duo) -> list[float]:
    """The on-screen font size in px of every row label, at the zoom the page opened with."""
    return dash_duo.driver.execute_script(
        f"return {CY}.nodes('.row-label').map(function (n) {{"
        " return parseFloat(n.renderedStyle('font-size')); });"
    )


def test_top_node_button_selects_node(dash_duo, webapp_app):
    _open_circuit(dash_duo, webapp_app)

    dash_duo.wait_for_element("#circuit-top-nodes-list button", timeout=20)
    button = dash_duo.find_elements("#circuit-top-nodes-list button")[2]
    node = button.text.split(" ", 1)[0]
    dash_duo.driver.execute_script("arguments[0].click();", button)
    dash_duo.wait_for_text_to_equal("#node-card-title", node, timeout=20)
    assert _query(dash_duo)["node"] == node
    assert _severe_logs(dash_duo) == []


def test_row_labels_readable(dash_duo, webapp_app):
    _open_circuit(dash_duo, webapp_app)

    sizes = _row_label_sizes(dash_duo)
    assert len(sizes) == 16
    assert all(11 <= size <= 15 for size in sizes), sizes


def test_row_labels_readable_on_embedded_circuit(dash_duo, webapp_app, webapp_store):
    # A 4-layer circuit with nodes in all 32 rows: a fixed label size read at about 3 px here.
    from webapp.data import configure_store

    configure_store(str(EMBEDDED_STORE))
    try:
        query = "?model=sparse_stdlib&task=for_while&sweep=prune_v4&k=k_optim"
        assert _open_circuit(dash_duo, webapp_app, query) > 100
        sizes = _row_label_sizes(dash_duo)
        view = dash_duo.driver.execute_script(
            f"var cy = {CY}; var node = cy.nodes().not('.row-label')[0];"
            " return {height: cy.container().clientHeight,"
            " node_px: node.renderedBoundingBox().w};"
        )
    finally:
        configure_store(str(webapp_store))
    assert len(sizes) >= 24
    assert all(10 <= size <= 15 for size in sizes), sizes
    # The view grows with the circuit's rows, so nodes stay readable (about 3 px in a fixed
    # 620 px view; 14 px is full size).
    assert view["height"] > 620, view
    assert view["node_px"] >= 7, view


def test_copied_url_restores_node(dash_duo, webapp_app, webapp_store):
    node = _kept_node(webapp_store, "1.mlp.post_act", -1)
    _open_circuit(dash_duo, webapp_app, f"{SHARED_QUERY}&node={node}")
    dash_duo.wait_for_text_to_equal("#node-card-title", node, timeout=20)
    dash_duo.wait_for_element("#circuit-task-heatmap .token", timeout=20)
    assert _query(dash_duo)["node"] == node
    selected = dash_duo.driver.execute_script(
        f"return {CY}.getElementById('{node}').style('border-color');"
    )
    assert selected == "rgb(255,127,14)"

    # Each example's own token keeps its orange outline, also where it is the row's max or min.
    marked = "#circuit-node-examples .token-marked"
    dash_duo.wait_for_element(marked, timeout=20)
    assert dash_duo.find_elements(f"{marked}.token-max, {marked}.token-min")
    outline_colours = dash_duo.driver.execute_script(
        f"return Array.from(document.querySelectorAll('{marked}'))"
        ".map(function (span) { return getComputedStyle(span).outlineColor; });"
    )
    assert set(outline_colours) == {"rgb(255, 127, 14)"}
    legend = dash_duo.find_element("#circuit-node-examples .heatmap-scale").text
    assert "an orange outline marks the token each example was chosen for" in legend
    assert _severe_logs(dash_duo) == []


def test_node_search_filters_with_selection(dash_duo, webapp_app, webapp_store):
    # With a node selected, Dash 4.4.1's Dropdown focuses that option when it opens, so typing
    # did not filter the list. assets/dropdown_search.js sends the keys to the search box.
    node = _kept_node(webapp_store, "0.attn.q", 0)
    _open_circuit(dash_duo, webapp_app, f"{SHARED_QUERY}&node={node}")
    dash_duo.wait_for_text_to_equal("#node-card-title", node, timeout=20)

    dash_duo.find_element("#circuit-node").click()
    dash_duo.wait_for_element(".dash-dropdown-content .dash-dropdown-option", timeout=10)
    time.sleep(0.5)  # the dropdown focuses the selected option in an animation frame
    focused = dash_duo.driver.switch_to.active_element
    focused.send_keys("post_act")

    search = dash_duo.find_element(".dash-dropdown-content input.dash-dropdown-search")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and search.get_attribute("value") != "post_act":
        time.sleep(0.2)
    assert search.get_attribute("value") == "post_act"

    def option_labels() -> list[str]:
        options = dash_duo.find_elements(".dash-dropdown-content .dash-dropdown-option")
        try:
            return [option.text for option in options]
        except StaleElementReferenceException:  # the list re-rendered while it was read
            return []

    deadline = time.monotonic() + 10
    labels = option_labels()
    while time.monotonic() < deadline and not (labels and all("post_act" in x for x in labels)):
        time.sleep(0.2)
        labels = option_labels()
    assert labels
    assert all("post_act" in label for label in labels), labels
    assert _severe_logs(dash_duo) == []


def test_block_view_from_url(dash_duo, webapp_app):
    count = _open_circuit(dash_duo, webapp_app, f"{SHARED_QUERY}&block=1.attn")
    assert 0 < count < 72
    ids = dash_duo.driver.execute_script(
        f"return {CY}.nodes().not('.row-label').map(function (n) {{ return n.id(); }});"
    )
    assert all(node_id.startswith("1.attn.") for node_id in ids), ids

    dash_duo.find_element("#circuit-block-reset").click()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _wait_for_graph(dash_duo) != 72:
        time.sleep(0.2)
    assert _wait_for_graph(dash_duo) == 72
    assert "block" not in _query(dash_duo)
    assert _severe_logs(dash_duo) == []


def test_change_k_then_export_json(dash_duo, webapp_app, webapp_store):
    import json

    viz = torch.load(webapp_store / f"viz/{MODEL}/{TASK}/{SWEEP}/8/viz_data.pt", weights_only=True)
    n_nodes = sum(len(ids) for ids in viz["circuit_data"].values())
    assert _open_circuit(dash_duo, webapp_app) == 72

    # Choose k = 8 in the k selector, as a user would.
    dash_duo.find_element("#circuit-k").click()
    dash_duo.wait_for_element(".dash-dropdown-content .dash-dropdown-option", timeout=10)
    option = next(
        element
        for element in dash_duo.find_elements(".dash-dropdown-content .dash-dropdown-option")
        if element.text.strip() == "8"
    )
    option.click()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _query(dash_duo).get("k") != "8":
        time.sleep(0.2)
    assert _query(dash_duo)["k"] == "8"
    assert _wait_for_graph(dash_duo) == n_nodes

    # Export the circuit now shown as JSON; the file lands in the browser's download folder.
    # A JS click: the node-hover box or a closing dropdown menu can sit over the button for a
    # moment, and selenium then refuses a pointer click ("element click intercepted").
    button = dash_duo.find_element("#circuit-json-button")
    dash_duo.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    dash_duo.driver.execute_script("arguments[0].click();", button)
    folder = Path(dash_duo.download_path)
    deadline = time.monotonic() + 20
    files = []
    while time.monotonic() < deadline and not files:
        files = [path for path in folder.glob("*.json") if path.stat().st_size]
        time.sleep(0.2)
    assert len(files) == 1, list(folder.iterdir())
    exported = json.loads(files[0].read_text())
    assert exported["k"] == "8"
    assert len(exported["nodes"]) == n_nodes
    assert _severe_logs(dash_duo) == []
