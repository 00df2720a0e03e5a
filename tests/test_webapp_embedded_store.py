"""The web app on the repository's embedded store: every circuit loads, draws and shows a node.

Skipped when the embedded store has no circuits yet. Marked slow: it reads every viz_data.pt.
"""

import importlib
from pathlib import Path

import pytest

EMBEDDED_STORE = Path(__file__).resolve().parents[1] / "store"

pytestmark = pytest.mark.slow


def _circuits() -> list[tuple[str, str, str, str]]:
    from registry import catalogue
    from registry.store import Store

    if not (EMBEDDED_STORE / "viz").is_dir():
        return []
    store = Store(EMBEDDED_STORE)
    return [
        (model, task, sweep, str(k))
        for model in catalogue.list_viz_models(store)
        for task in catalogue.list_tasks(model, store)
        for sweep in catalogue.list_sweeps(model, task, store)
        for k in catalogue.list_ks(model, task, sweep, store)
    ]


@pytest.fixture
def embedded_context(webapp_app, webapp_store):
    from webapp.data import configure_store

    configure_store(str(EMBEDDED_STORE))
    with webapp_app.server.app_context():
        yield webapp_app
    configure_store(str(webapp_store))


@pytest.mark.parametrize("circuit", _circuits() or [pytest.param(None, marks=pytest.mark.skip)])
def test_embedded_circuit_renders(embedded_context, circuit):
    page = importlib.import_module("webapp.pages.circuit")
    options, figure, style, messages, _ = page.load_selected_circuit(*circuit)
    assert messages == []
    assert options
    elements, _, summary = page.draw_graph(*circuit, 0.0)
    nodes = [e for e in elements if "source" not in e["data"] and e["classes"] != "row-label"]
    assert len(nodes) == len(options)

    node = options[len(options) // 2]["value"]
    card, heatmap, examples, stylesheet = page.show_node(
        node, "0.001", style, "symmetric", *circuit
    )
    assert heatmap is not None, card
    assert len(heatmap.children) > 1  # task sample rows, then the colour scale line
