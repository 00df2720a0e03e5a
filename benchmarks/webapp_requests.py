"""HTTP requests that the web app benchmarks send: page loads and Dash callback POSTs.

A browser runs a Dash callback by POSTing to `/_dash-update-component` a body naming the callback's
outputs, its inputs and state with their current values, and the inputs that changed. The helpers
here build that body from the app's own `/_dash-dependencies` listing, so the benchmarks keep
working when a page adds an input or output, and fail with a clear error when a callback is gone.

`benchmarks/webapp.py` (timings) and `benchmarks/webapp_load.py` (locust load test) both use them.
"""

from __future__ import annotations

from typing import Any

# The circuit the benchmarks draw: the embedded store's largest kept circuit (for_while k_optim,
# 376 nodes and 697 edges), the budget's "1,000 nodes and edges".
MODEL = "sparse_stdlib"
TASK = "for_while"
SWEEP = "prune_v4"
K = "k_optim"

# A callback is named by one of its outputs, "<component id>.<property>".
ROUTING_OUTPUT = "_pages_content.children"  # Dash pages: renders the page for a URL
GRAPH_OUTPUT = "circuit-graph.elements"  # circuit page: draws the graph
CIRCUIT_OUTPUT = "circuit-node.options"  # circuit page: loads the circuit (losses, node list)
NODE_OUTPUT = "circuit-node-card.children"  # circuit page: the selected node's card and heatmaps
PER_TOKEN_OUTPUT = "tokens-heatmap.children"  # per-token page: runs the model live
SWEEP_OUTPUT = "circuit-sweep-figure.figure"  # circuit page: the sweep's loss against k

UPDATE_PATH = "/_dash-update-component"


class CallbackNotFoundError(LookupError):
    """No callback of the app has the requested output."""


def split_outputs(output: str) -> list[str]:
    """Split a callback's output string into "<id>.<property>" items.

    Dash joins several outputs as "..a.x...b.y.." and marks a duplicate output with "@<hash>"
    after the property; a single output is plain "a.x".
    """
    if output.startswith("..") and output.endswith(".."):
        items = output[2:-2].split("...")
    else:
        items = [output]
    return [item.split("@", 1)[0] for item in items]


def find_callback(dependencies: list[dict[str, Any]], output: str) -> dict[str, Any]:
    """Return the server-side callback of `dependencies` that has `output` among its outputs."""
    for dependency in dependencies:
        if dependency.get("clientside_function"):
            continue
        if output in split_outputs(dependency["output"]):
            return dependency
    raise CallbackNotFoundError(
        f"no server callback has the output {output!r}. The page has changed: update "
        f"benchmarks/webapp_requests.py to match the callbacks that /_dash-dependencies lists"
    )


def _with_values(items: list[dict[str, Any]], values: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": item["id"],
            "property": item["property"],
            "value": values.get(f"{item['id']}.{item['property']}"),
        }
        for item in items
    ]


def callback_body(
    dependencies: list[dict[str, Any]],
    output: str,
    values: dict[str, Any],
    changed: list[str] | None = None,
) -> dict[str, Any]:
    """Build the `/_dash-update-component` body of the callback that has `output`.

    `values` maps "<id>.<property>" to the value of an input or state; missing ones are sent as
    None, as the browser does for an unset property. `changed` lists the inputs that triggered
    the call (default: every input with a value).
    """
    dependency = find_callback(dependencies, output)
    outputs = [
        {"id": item.rsplit(".", 1)[0], "property": item.rsplit(".", 1)[1]}
        for item in split_outputs(dependency["output"])
    ]
    inputs = _with_values(dependency["inputs"], values)
    if changed is None:
        changed = [
            f"{item['id']}.{item['property']}" for item in inputs if item["value"] is not None
        ]
    return {
        "output": dependency["output"],
        "outputs": outputs if dependency["output"].startswith("..") else outputs[0],
        "inputs": inputs,
        "state": _with_values(dependency["state"], values),
        "changedPropIds": changed,
    }


def check_response(status: int, payload: Any, output: str) -> dict[str, Any]:
    """Return the new property values of `output`'s component; raise ValueError on a failed call.

    Dash returns HTTP 200 with {"response": {<id>: {<property>: value}}}, 204 when the callback
    prevented the update, and 500 when it raised.
    """
    component, prop = output.rsplit(".", 1)
    if status != 200:
        raise ValueError(f"callback for {output} failed: HTTP {status}")
    response = payload.get("response") if isinstance(payload, dict) else None
    updated = response.get(component) if isinstance(response, dict) else None
    if not isinstance(updated, dict) or prop not in updated:
        raise ValueError(f"callback for {output} returned no {output}: {str(payload)[:200]}")
    return updated


def circuit_values(
    threshold: float = 0.0,
    node: str | None = None,
    circuit: tuple[str, str, str, str] = (MODEL, TASK, SWEEP, K),
) -> dict[str, Any]:
    """Input values of the circuit page's callbacks for a (model, task, sweep, k) circuit."""
    model, task, sweep, k = circuit
    return {
        "circuit-model.value": model,
        "circuit-task.value": task,
        "circuit-sweep.value": sweep,
        "circuit-k.value": k,
        "circuit-threshold.value": threshold,
        "circuit-selected-node.data": node,
        "circuit-fraction.value": "0.001",
    }


def per_token_values(
    location: str = "0.attn.q",
    index: int = 0,
    text: str | None = None,
    sample: int = 0,
    model: str = MODEL,
) -> dict[str, Any]:
    """Input values of the per-token callback: typed `text` when given, else a task sample."""
    return {
        "tokens-model.value": model,
        "tokens-location.value": location,
        "tokens-index.value": index,
        "tokens-source.value": "text" if text is not None else "task",
        "tokens-task.value": TASK,
        "tokens-sample.value": sample,
        "tokens-text.value": text,
    }


def routing_values(path: str, search: str = "") -> dict[str, Any]:
    """Input values of Dash's page routing callback for the URL `path` + `search`."""
    return {"_pages_location.pathname": path, "_pages_location.search": search}


def circuit_query() -> str:
    """Return the query string of the circuit page showing the benchmark circuit."""
    return f"?model={MODEL}&task={TASK}&sweep={SWEEP}&k={K}"
