"""Per-token page: the activations of chosen nodes at every token of a task sample or of typed text,
and the next-token predictions of the full model and of a circuit alone.

Both are computed live on the server (`webapp.live`, `webapp.live_predictions`). URL parameters
(see `webapp.url_state`): model, node (set by the location and channel controls), nodes (more nodes
to show, comma-separated), source (`task` or `text`), task, sample, text, and for the predictions
sweep, k and position.
"""

from __future__ import annotations

import logging

import dash
import dash_bootstrap_components as dbc
from dash import (
    ClientsideFunction,
    Input,
    Output,
    State,
    callback,
    clientside_callback,
    dcc,
    html,
)

from registry.catalogue import CatalogueError
from webapp.circuit_data import choose_default_k, load_circuit
from webapp.components.messages import message_list, notice
from webapp.components.prediction_panel import (
    circuit_choices,
    circuit_tasks,
    prediction_panel,
    task_options,
)
from webapp.components.token_heatmap import render_heatmap
from webapp.data import DataFileError, get_store, list_models, model_summary
from webapp.figures import activation_figure, empty_figure, nodes_activation_figure
from webapp.graph import top_nodes
from webapp.live import (
    check_channel,
    input_sequences,
    list_task_names,
    model_locations,
    node_activation_rows,
)
from webapp.nodes import parse_node_key
from webapp.selection import resolve_selection
from webapp.url_state import (
    MAX_COMPARED_NODES,
    MAX_TEXT_URL_BYTES,
    check_text,
    parse_query,
    query_string_for,
    whole_number,
)

logger = logging.getLogger(__name__)

dash.register_page(__name__, path="/per-token", name="Per-token", order=2)

LOAD_ERRORS = (DataFileError, CatalogueError, ValueError, KeyError, OSError)


def _first_or_requested(requested: str | None, options: list[str]) -> str | None:
    if requested in options:
        return requested
    return options[0] if options else None


def _circuit_default(models: list[str], model: str | None) -> tuple[str | None, str | None]:
    """Return the model and task the circuit page opens for `model` (None: for any model).

    Returns (None, None) when that model has no circuits or is not in `models`. Sharing
    `resolve_selection` with the circuit page means the predictions get a circuit column.
    """
    if model is not None and not circuit_tasks(model):
        return None, None
    selection = resolve_selection(get_store(), {"model": model}, choose_default_k)
    if selection.values["model"] not in models:
        return None, None
    return selection.values["model"], selection.values["task"]


def _text_limit_label(model: str | None) -> str:
    """Label the text box with the model's block_size, the most tokens the model reads at once."""
    tokens = "block_size"  # the config key, when the model's config cannot be read
    if model:
        try:
            tokens = model_summary(model)["block_size"]
        except LOAD_ERRORS as err:
            logger.info("block_size of %s not shown: %s", model, err)
    return f"text (at most {tokens} tokens and {MAX_TEXT_URL_BYTES} bytes in the URL)"


def _channel(index) -> int:
    """Convert the channel input to an int; raise ValueError naming a value that is not one."""
    return whole_number(index, "channel")


def _control(label, component, width: int) -> dbc.Col:
    return dbc.Col([dbc.Label(label, html_for=component.id), component], md=width)


def _node_controls(
    models: list[str],
    model: str | None,
    locations: list[str],
    location: str | None,
    index: int,
    source: str,
) -> dbc.Row:
    model_dropdown = dcc.Dropdown(id="tokens-model", options=models, value=model, clearable=False)
    # The options come with the layout: Dash 4's Dropdown resets a value missing from its options.
    location_dropdown = dcc.Dropdown(
        id="tokens-location", options=locations, value=location, clearable=False
    )
    channel = dcc.Input(id="tokens-index", type="number", min=0, step=1, value=index, debounce=True)
    source_items = dbc.RadioItems(
        id="tokens-source",
        value=source,
        inline=True,
        options=[
            {"label": "task sample", "value": "task"},
            {"label": "my text", "value": "text"},
        ],
    )
    return dbc.Row(
        [
            _control("model", model_dropdown, 3),
            _control("location", location_dropdown, 3),
            _control("channel", channel, 2),
            _control("input", source_items, 4),
        ],
        className="mb-2",
    )


def _compare_controls(nodes: tuple[str, ...]) -> dbc.Row:
    # The options are the chosen nodes: the button adds the node of the controls above, and the
    # dropdown's x removes one.
    compared = dcc.Dropdown(
        id="tokens-nodes",
        options=list(nodes),
        value=list(nodes),
        multi=True,
        placeholder="Add nodes to compare with the button",
    )
    add = dbc.Button(
        "Add this node", id="tokens-add-node", size="sm", color="secondary", outline=True
    )
    label = f"also show (at most {MAX_COMPARED_NODES} nodes)"
    return dbc.Row(
        [_control(label, compared, 9), dbc.Col(add, md=3, className="align-self-end")],
        className="mb-2",
    )


def _input_controls(
    tasks: list[str], task: str | None, sample: int, text: str, text_label: str
) -> dbc.Row:
    task_dropdown = dcc.Dropdown(id="tokens-task", options=tasks, value=task, clearable=False)
    sample_input = dcc.Input(
        id="tokens-sample", type="number", min=0, step=1, value=sample, debounce=True
    )
    text_area = dcc.Textarea(
        id="tokens-text",
        value=text,
        # A character takes at least 1 byte in the URL; check_text applies the exact limit.
        maxLength=MAX_TEXT_URL_BYTES,
        style={"width": "100%", "height": "6rem", "fontFamily": "monospace"},
    )
    return dbc.Row(
        [
            _control("task", task_dropdown, 4),
            _control("test pair", sample_input, 2),
            _control(html.Span(text_label, id="tokens-text-label"), text_area, 6),
        ],
        className="mb-2",
    )


def _top_circuit_node(model, task, sweep, k, locations: list[str]):
    """Return the NodeKey of the circuit's node with the largest |ablation delta|, or None.

    A page without a node in its URL opens on it: the first location's channel 0 is often silent.
    """
    if None in (model, task, sweep, k):
        return None
    try:
        top = top_nodes(load_circuit(model, task, sweep, k), 1)
    except LOAD_ERRORS as err:
        logger.info("no default node from %s/%s/%s/%s: %s", model, task, sweep, k, err)
        return None
    if not top:
        return None
    key = parse_node_key(top[0]["id"])
    return key if key.location in locations else None


def layout(**query) -> html.Div:
    state, messages = parse_query(query)
    try:
        models = list_models()
    except LOAD_ERRORS as err:
        models, messages = [], [*messages, f"Could not list the models: {err}"]
    requested_model = state.model if state.model in models else None
    try:
        default_model, default_task = _circuit_default(models, requested_model)
    except LOAD_ERRORS as err:
        logger.warning("default circuit of the per-token page failed: %s", err)
        default_model, default_task = None, None
    model = requested_model or default_model or _first_or_requested(None, models)
    if state.model and state.model != model:
        messages.append(f"Model {state.model!r} is not in the store; showing {model!r}.")

    locations: list[str] = []
    if model is not None:
        try:
            locations = model_locations(model)
        except LOAD_ERRORS as err:
            messages.append(str(err))
    location, index = (locations[0] if locations else None), 0
    if state.node:
        key = parse_node_key(state.node)
        location, index = key.location, key.index
        if locations and location not in locations:
            messages.append(f"{location} is not a location of {model}; showing {locations[0]}.")
            location = locations[0]

    try:
        tasks = task_options(model) if model is not None else list_task_names()
    except LOAD_ERRORS as err:
        tasks, messages = [], [*messages, f"Could not list the tasks: {err}"]
    task = _first_or_requested(state.task if state.task in tasks else default_task, tasks)
    if state.task and state.task != task:
        shown = ", ".join(tasks) if tasks else "none"
        messages.append(
            f"Task {state.task!r} is not available; showing {task!r}. Available: {shown}."
        )

    try:
        choices = circuit_choices(model, task, state.sweep, state.k)
    except LOAD_ERRORS as err:
        choices = {"sweeps": [], "sweep": None, "ks": [], "k": None, "messages": [str(err)]}
    messages += choices["messages"]
    if not state.node:
        top = _top_circuit_node(model, task, choices["sweep"], choices["k"], locations)
        if top is not None:
            location, index = top.location, top.index

    controls = _node_controls(models, model, locations, location, index, state.source)
    inputs = _input_controls(tasks, task, state.sample, state.text, _text_limit_label(model))
    compare = _compare_controls(state.nodes)
    predictions = prediction_panel(
        choices["sweeps"], choices["sweep"], choices["ks"], choices["k"], state.position
    )
    return html.Div(
        [
            dcc.Store(id="tokens-query"),
            dcc.Store(id="tokens-query-applied"),
            html.Div(message_list(messages), id="tokens-url-messages"),
            html.H4("Per-token activations"),
            controls,
            compare,
            html.Div(id="tokens-compare-messages"),
            inputs,
            html.Div(id="tokens-messages"),
            dcc.Loading(html.Div(id="tokens-heatmap")),
            dcc.Graph(id="tokens-figure", figure=empty_figure("Pick a node.")),
            *predictions,
        ]
    )


@callback(
    Output("tokens-location", "options"),
    Output("tokens-location", "value"),
    Input("tokens-model", "value"),
    Input("tokens-location", "value"),
)
def fill_locations(model, location):
    """List the selected model's node locations, keeping the chosen one if the model has it."""
    if not model:
        return [], None
    try:
        locations = model_locations(model)
    except LOAD_ERRORS as err:
        logger.warning("locations of %s failed: %s", model, err)
        return [], None
    return locations, location if location in locations else locations[0]


@callback(Output("tokens-text-label", "children"), Input("tokens-model", "value"))
def show_text_limit(model):
    """Name the selected model's block_size in the text box's label."""
    return _text_limit_label(model)


@callback(
    Output("tokens-nodes", "options"),
    Output("tokens-nodes", "value"),
    Output("tokens-compare-messages", "children"),
    Input("tokens-add-node", "n_clicks"),
    Input("tokens-nodes", "value"),
    State("tokens-location", "value"),
    State("tokens-index", "value"),
    prevent_initial_call=True,
)
def update_compared_nodes(n_clicks, nodes, location, index):
    """Add the node of the location and channel controls to the compared nodes, or drop removed ones."""
    nodes = [node for node in nodes or [] if isinstance(node, str)]
    messages, notes = [], []
    if dash.ctx.triggered_id == "tokens-add-node" and location:
        try:
            node = str(parse_node_key(f"{location}:{_channel(index)}"))
        except ValueError as err:
            messages.append(f"Cannot add the node: {err}")
        else:
            if node not in nodes and len(nodes) >= MAX_COMPARED_NODES:
                messages.append(
                    f"Cannot add {node}: at most {MAX_COMPARED_NODES} nodes can be compared; "
                    "remove one first."
                )
            elif node in nodes:
                notes.append(f"{node} is already in the compared nodes.")
            else:
                nodes.append(node)
                # The added node is also the one the controls show, so the heatmap gains no row
                # until the controls move to another node. The message explains this, so the
                # click does not look ignored.
                notes.append(
                    f"Added {node}. Pick another location or channel above to see it next to {node}."
                )
    return nodes, nodes, message_list(messages) + message_list(notes, "info")


def _checked_nodes(model: str, node: str, compared) -> list[str]:
    """Return `node` and the compared nodes, without repeats; raise ValueError naming a bad one."""
    nodes = [node]
    for text in compared or []:
        try:
            key = parse_node_key(text)
            check_channel(model, key.location, key.index)
        except ValueError as err:
            raise ValueError(f"Cannot show compared node {text!r}: {err}; remove it") from err
        if str(key) not in nodes:
            nodes.append(str(key))
    return nodes[: MAX_COMPARED_NODES + 1]


def _activation_rows(model: str, nodes: list[str], sequences: list) -> list[dict]:
    """Build the heatmap rows: for each sequence, one row per node (titled by node if several)."""
    per_node = [node_activation_rows(model, node, sequences) for node in nodes]
    if len(nodes) == 1:
        return per_node[0]
    rows = []
    for number in range(len(sequences)):
        for node, node_rows in zip(nodes, per_node, strict=True):
            row = node_rows[number]
            rows.append({**row, "title": f"{node} on the {row['title']}"})
    return rows


def _activations_chart(nodes: list[str], rows: list[dict], sequence: str):
    """Plot the first sequence: bars for one node, a node-by-position heatmap for several.

    The first sequence's rows are the first `len(nodes)` rows of `_activation_rows`.
    """
    first = rows[0]
    if len(nodes) == 1:
        title = f"{nodes[0]} on the {sequence}"
        return activation_figure(first["tokens"], first["values"], title)
    series = [(node, row["values"]) for node, row in zip(nodes, rows[: len(nodes)], strict=True)]
    title = f"{len(nodes)} nodes on the {sequence}"
    return nodes_activation_figure(first["tokens"], series, title)


@callback(
    Output("tokens-heatmap", "children"),
    Output("tokens-figure", "figure"),
    Output("tokens-messages", "children"),
    Input("tokens-model", "value"),
    Input("tokens-location", "value"),
    Input("tokens-index", "value"),
    Input("tokens-source", "value"),
    Input("tokens-task", "value"),
    Input("tokens-sample", "value"),
    Input("tokens-text", "value"),
    Input("tokens-nodes", "value"),
)
def show_activations(model, location, index, source, task, sample, text, compared=None):
    """Run the model on the chosen input and show each chosen node's activation per token."""
    if not model or not location or index is None:
        return notice("Pick a model, a location and a channel."), empty_figure(""), []
    node = f"{location}:{index}"
    try:
        node = f"{location}:{check_channel(model, location, _channel(index))}"
        nodes = _checked_nodes(model, node, compared)
        if source == "text" and isinstance(text, str):
            check_text(text)
        else:
            sample = whole_number(0 if sample is None else sample, "test pair")
        sequences = input_sequences(model, source, task, sample, text)
        rows = _activation_rows(model, nodes, sequences)
    except LOAD_ERRORS as err:
        logger.info("per-token view of %s %s failed: %s", model, node, err)
        return None, empty_figure("No activations."), message_list([str(err)])
    figure = _activations_chart(nodes, rows, sequences[0][0])
    return render_heatmap(rows, element_id="tokens-heatmap-rows"), figure, []


@callback(
    Output("tokens-query", "data"),
    Input("tokens-model", "value"),
    Input("tokens-location", "value"),
    Input("tokens-index", "value"),
    Input("tokens-source", "value"),
    Input("tokens-task", "value"),
    Input("tokens-sample", "value"),
    Input("tokens-text", "value"),
    Input("tokens-sweep", "value"),
    Input("tokens-k", "value"),
    Input("tokens-position", "value"),
    Input("tokens-nodes", "value"),
)
def serialise_query(
    model, location, index, source, task, sample, text, sweep, k, position, compared=None
):
    """Serialise the current view into the query string for the address bar."""
    node = None
    try:
        if location and index is not None:
            node = f"{location}:{_channel(index)}"
    except ValueError as err:
        logger.info("view state not written to the URL: %s", err)
        return dash.no_update
    query = query_string_for(
        model=model,
        node=node,
        source=source,
        task=task,
        sample=sample,
        text=text,
        sweep=sweep,
        k=k,
        position=position,
        nodes=tuple(compared or ()),
    )
    return dash.no_update if query is None else query


clientside_callback(
    ClientsideFunction(namespace="url_state", function_name="replace_query"),
    Output("tokens-query-applied", "data"),
    Input("tokens-query", "data"),
    State("tokens-query-applied", "data"),
)
