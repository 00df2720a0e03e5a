"""The callback requests of the web app benchmarks, sent to the app through Flask's test client.

`benchmarks/webapp.py` and `benchmarks/webapp_load.py` build their `/_dash-update-component` bodies
from the app's `/_dash-dependencies`. These tests fail when a page change breaks those requests, so
the benchmarks do not silently time error responses.
"""

import importlib.util
from pathlib import Path

import pytest
from tiny_store import MODEL, SWEEP, TASK

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
CIRCUIT = (MODEL, TASK, SWEEP, "k_optim")


def _load_requests_module():
    spec = importlib.util.spec_from_file_location(
        "webapp_requests", BENCHMARKS / "webapp_requests.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


calls = _load_requests_module()


@pytest.fixture
def client(webapp_context):
    return webapp_context.server.test_client()


@pytest.fixture
def dependencies(client):
    response = client.get("/_dash-dependencies")
    assert response.status_code == 200
    return response.get_json()


def _post(client, dependencies, output, values):
    body = calls.callback_body(dependencies, output, values)
    response = client.post(calls.UPDATE_PATH, json=body)
    return calls.check_response(response.status_code, response.get_json(), output)


def test_split_outputs_forms():
    assert calls.split_outputs("a.x") == ["a.x"]
    assert calls.split_outputs("..a.x...b-c.y..") == ["a.x", "b-c.y"]
    assert calls.split_outputs("a.data@0123abcd") == ["a.data"]


def test_unknown_output_is_named(dependencies):
    with pytest.raises(calls.CallbackNotFoundError, match="'nosuch.children'"):
        calls.callback_body(dependencies, "nosuch.children", {})


def test_body_lists_every_input(dependencies):
    body = calls.callback_body(dependencies, calls.GRAPH_OUTPUT, calls.circuit_values())
    assert body["output"].startswith("..")
    assert {"id": "circuit-graph", "property": "elements"} in body["outputs"]
    sent = {f"{item['id']}.{item['property']}": item["value"] for item in body["inputs"]}
    assert sent["circuit-model.value"] == calls.MODEL
    assert sent["circuit-threshold.value"] == 0.0
    # Unset inputs (e.g. circuit-block, no single-block view) go as None and did not change.
    assert body["changedPropIds"] == [key for key, value in sent.items() if value is not None]
    assert sent.get("circuit-block.value", None) is None


def test_routing_renders_circuit_page(client, dependencies):
    search = f"?model={MODEL}&task={TASK}&sweep={SWEEP}&k=k_optim"
    updated = _post(
        client, dependencies, calls.ROUTING_OUTPUT, calls.routing_values("/circuit", search)
    )
    assert "circuit-graph" in str(updated["children"])


def test_graph_callback_draws_circuit(client, dependencies):
    updated = _post(client, dependencies, calls.GRAPH_OUTPUT, calls.circuit_values(circuit=CIRCUIT))
    edges = [element for element in updated["elements"] if "source" in element["data"]]
    assert edges


def test_load_and_node_callbacks(client, dependencies):
    values = calls.circuit_values(circuit=CIRCUIT)
    loaded = _post(client, dependencies, calls.CIRCUIT_OUTPUT, values)
    node = loaded["options"][0]["value"]
    node_card = _post(
        client, dependencies, calls.NODE_OUTPUT, calls.circuit_values(node=node, circuit=CIRCUIT)
    )
    assert node in str(node_card["children"])
    sweep = _post(client, dependencies, calls.SWEEP_OUTPUT, values)
    assert sweep["figure"]


def _span_texts(component) -> list[str]:
    """Texts of the html.Span components in a serialised Dash tree, in document order."""
    if isinstance(component, list):
        return [text for child in component for text in _span_texts(child)]
    if not isinstance(component, dict):
        return []
    children = component.get("props", {}).get("children")
    if component.get("type") == "Span":
        return [children]
    return _span_texts(children)


def test_per_token_callback_on_text(client, dependencies):
    text = "x = 'hello'\n"
    values = calls.per_token_values(text=text, model=MODEL)
    body = calls.callback_body(dependencies, calls.PER_TOKEN_OUTPUT, values)
    response = client.post(calls.UPDATE_PATH, json=body).get_json()["response"]
    assert response["tokens-messages"]["children"] == []
    # Token labels show spaces and newlines as visible marks, so compare the word only.
    tokens = _span_texts(response["tokens-heatmap"]["children"])
    assert "'hello'" in "".join(tokens)


def test_failed_callback_is_reported():
    with pytest.raises(ValueError, match="HTTP 500"):
        calls.check_response(500, None, calls.GRAPH_OUTPUT)
    with pytest.raises(ValueError, match="returned no circuit-graph.elements"):
        calls.check_response(200, {"response": {"other": {}}}, calls.GRAPH_OUTPUT)
