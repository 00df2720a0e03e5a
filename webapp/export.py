"""Export of the selected circuit as a JSON document (the circuit page's "Download JSON" button).

Format `circuit-sparsity-circuit/1`, one JSON object:

    format        "circuit-sparsity-circuit/1"
    model, task, sweep, k          the catalogue ids of the circuit
    n_layer, n_head, d_head        the model's shape
    loss, interv_loss              per-sequence task loss of the full model and of the circuit alone
    num_total_nodes                nodes in the whole model
    block_deltas                   "<i>.attn" / "<i>.mlp" -> loss rise when that block's nodes are ablated
    nodes   [{id, location, index, importance}]   id is "<location>:<index>", e.g. "1.attn.q:17";
            importance is the loss rise when the node is ablated too (null where not stored)
    edges   [{source, target, weight}]            nonzero weights between kept nodes inside a block
"""

from __future__ import annotations

import json
import logging
from typing import Any

from dash import Input, Output, State, callback, dcc, no_update

from registry.catalogue import CatalogueError
from webapp.circuit_data import load_circuit
from webapp.components.messages import message_list
from webapp.data import DataFileError
from webapp.selection import LEVELS

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "circuit-sparsity-circuit/1"
EXPORTED_FIELDS = (
    "n_layer",
    "n_head",
    "d_head",
    "loss",
    "interv_loss",
    "num_total_nodes",
    "block_deltas",
    "nodes",
    "edges",
)


def circuit_document(model: str, task: str, sweep: str, k: str) -> dict[str, Any]:
    """Build the export document of one circuit (ids are checked against the catalogue)."""
    circuit = load_circuit(model, task, sweep, k)
    document = {"format": EXPORT_FORMAT, "model": model, "task": task, "sweep": sweep, "k": k}
    document.update({field: circuit[field] for field in EXPORTED_FIELDS})
    return document


@callback(
    Output("circuit-json-download", "data"),
    Output("circuit-json-messages", "children"),
    Input("circuit-json-button", "n_clicks"),
    *(State(f"circuit-{level}", "value") for level in LEVELS),
    prevent_initial_call=True,
)
def download_json(n_clicks, model, task, sweep, k):
    """Send the selected circuit to the browser as `circuit-<model>-<task>-<sweep>-<k>.json`.

    A missing choice or a circuit that fails to load gives a message under the graph and no file.
    """
    chosen = dict(zip(LEVELS, (model, task, sweep, k), strict=True))
    missing = [level for level, value in chosen.items() if value in (None, "")]
    if missing:
        message = f"Cannot export the circuit: pick a {', '.join(missing)} first."
        return no_update, message_list([message], color="danger")
    try:
        document = circuit_document(model, task, sweep, k)
    except (DataFileError, CatalogueError, ValueError, OSError) as err:
        logger.info("JSON export of %s/%s/%s/%s failed: %s", model, task, sweep, k, err)
        message = f"Cannot export the circuit {model}/{task}/{sweep}/k={k}: {err}"
        return no_update, message_list([message], color="danger")
    name = "-".join(str(part) for part in (model, task, sweep, k))
    sent = dcc.send_string(json.dumps(document, indent=1), filename=f"circuit-{name}.json")
    return sent, []
