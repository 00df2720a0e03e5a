"""The circuit page's attention panel: a q/k/v node's head pattern and channel pattern on a task sample.

The sample is one of the circuit file's stored task samples, picked by index (URL parameter
`sample`). The patterns are computed live (`webapp.live_attention`) on the circuit's model. The
callback here registers when `webapp.components.circuit_panels` imports this module.
"""

from __future__ import annotations

import logging

import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html

from registry.catalogue import CatalogueError
from webapp.circuit_data import check_node, load_circuit, task_samples
from webapp.components.messages import message_list, notice
from webapp.components.token_heatmap import render_heatmap
from webapp.data import DataFileError
from webapp.figures import attention_figure, empty_figure
from webapp.heatmap import heatmap_row
from webapp.live_attention import node_attention
from webapp.nodes import QKV_SUFFIXES, parse_node_key
from webapp.selection import LEVELS
from webapp.url_state import parse_query, update_state

logger = logging.getLogger(__name__)

LOAD_ERRORS = (DataFileError, CatalogueError, ValueError, KeyError, OSError)
HIDDEN = {"display": "none"}
_GRAPH_CONFIG = {"displayModeBar": False}


def attention_panel(sample: int) -> list:
    """Build the sample picker and the two pattern figures, filled by `show_attention`."""
    sample_input = dcc.Input(
        id="circuit-sample",
        type="number",
        min=0,
        step=1,
        value=sample,
        debounce=True,
        style={"width": "6rem"},
    )
    figures = dbc.Row(
        [
            dbc.Col(dcc.Graph(id="circuit-attention-head", config=_GRAPH_CONFIG), md=6),
            dbc.Col(dcc.Graph(id="circuit-attention-channel", config=_GRAPH_CONFIG), md=6),
        ]
    )
    return [
        html.H5("Attention on a task sample", className="mt-3"),
        dbc.Row(
            [
                dbc.Col(dbc.Label("task sample", html_for="circuit-sample"), width="auto"),
                dbc.Col(sample_input, width="auto"),
                dbc.Col(html.Span(id="circuit-sample-title", className="text-muted"), width=True),
            ],
            className="align-items-center mb-2",
        ),
        html.Div(id="circuit-attention-messages"),
        dcc.Loading(
            html.Div(
                [figures, html.Div(id="circuit-attention-values")],
                id="circuit-attention-figures",
                style=HIDDEN,
            )
        ),
    ]


def _hidden(messages, title: str = "") -> tuple:
    """Return callback outputs that hide the figures and show `messages` instead."""
    blank = empty_figure("")
    return blank, blank, None, HIDDEN, messages, title


@callback(
    Output("circuit-attention-head", "figure"),
    Output("circuit-attention-channel", "figure"),
    Output("circuit-attention-values", "children"),
    Output("circuit-attention-figures", "style"),
    Output("circuit-attention-messages", "children"),
    Output("circuit-sample-title", "children"),
    Input("circuit-selected-node", "data"),
    Input("circuit-sample", "value"),
    *(Input(f"circuit-{level}", "value") for level in LEVELS),
)
def show_attention(node, sample, model, task, sweep, k):
    """Show the selected q/k/v node's head pattern and channel pattern on the chosen task sample."""
    if None in (model, task, sweep, k):
        return _hidden(notice("Select a circuit."))
    try:
        key = parse_node_key(node) if node else None
    except ValueError as err:
        return _hidden(message_list([str(err)]))
    if key is None or key.suffix not in QKV_SUFFIXES:
        hint = "Select a q, k or v node to see its head's attention on a task sample."
        return _hidden(notice(hint))

    title = ""
    try:
        index = update_state(parse_query({})[0], sample=sample).sample
        check_node(load_circuit(model, task, sweep, k), str(key))
        samples = task_samples(model, task, sweep, k)
        if index >= len(samples):
            raise ValueError(
                f"task sample {index} is out of range: this circuit stores samples 0 to "
                f"{len(samples) - 1}"
            )
        chosen = samples[index]
        title = f"{chosen['title']} of {len(samples)} stored samples"
        if chosen["padded"]:
            title += " (padded: the file stores no sample lengths)"
        attention = node_attention(model, str(key), chosen["token_ids"])
    except LOAD_ERRORS as err:
        logger.info(
            "attention of %s on sample %r of %s/%s/%s/%s not shown: %s",
            node,
            sample,
            model,
            task,
            sweep,
            k,
            err,
        )
        return _hidden(message_list([str(err)]), title)

    head_figure, channel_figure = pattern_figures(attention)
    return head_figure, channel_figure, value_rows(attention), {}, [], title


def pattern_figures(attention: dict) -> tuple:
    """Build the head pattern and the channel pattern figures of `node_attention`'s result."""
    head, channel = attention["head"], attention["channel"]
    layer = parse_node_key(attention["node"]).layer
    head_title = f"layer {layer}, head {head}: attention probabilities p[query, key]"
    if attention["sink"]:
        head_title += " (rows sum to 1 minus the sink's share)"
    if attention["suffix"] == "attn.v":
        channel_title = f"channel {channel}: p[query, key] x v[key, {channel}]"
    else:
        channel_title = f"channel {channel}: q[query, {channel}] x k[key, {channel}] / sqrt(d_head)"
    labels = attention["labels"]
    return (
        attention_figure(labels, attention["head_pattern"], head_title, signed=False),
        attention_figure(labels, attention["channel_pattern"], channel_title, signed=True),
    )


def value_rows(attention: dict) -> html.Div | None:
    """Render a v node's value per token and the head output per token as heatmap rows."""
    if attention["suffix"] != "attn.v":
        return None
    channel = attention["channel"]
    rows = [
        heatmap_row(attention["labels"], attention["values"], f"v[token, {channel}]: the value"),
        heatmap_row(
            attention["labels"],
            attention["outputs"],
            f"y[token, {channel}]: the head output, each row of the matrix summed",
        ),
    ]
    return render_heatmap(rows, element_id="circuit-attention-value-rows")
