"""Per-token page: one node's activation at every token of a task sample or of typed text.

The activations are computed live on the server (`webapp.live`). URL parameters (see
`webapp.url_state`): model, node, source (`task` or `text`), task, sample, text.
"""

from __future__ import annotations

import logging

import dash
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, callback, clientside_callback, dcc, html

from registry.catalogue import CatalogueError
from webapp.components.messages import message_list, notice
from webapp.components.token_heatmap import render_heatmap
from webapp.data import DataFileError, list_models
from webapp.figures import activation_figure, empty_figure
from webapp.live import encode_text, list_task_names, model_locations, node_activation_rows
from webapp.live import task_sample as load_task_sample
from webapp.nodes import parse_node_key
from webapp.url_state import MAX_TEXT_CHARS, parse_query, to_query_string, update_state

logger = logging.getLogger(__name__)

dash.register_page(__name__, path="/per-token", name="Per-token", order=2)

LOAD_ERRORS = (DataFileError, CatalogueError, ValueError, KeyError, OSError)


def _first_or_requested(requested: str | None, options: list[str]) -> str | None:
    if requested in options:
        return requested
    return options[0] if options else None


def _channel(index) -> int:
    """Convert the channel input to an int; raise ValueError naming a value that is not one."""
    try:
        channel = int(index)
    except (TypeError, ValueError) as err:
        raise ValueError(f"channel {index!r} is not a whole number; enter one >= 0") from err
    if channel != index and str(channel) != str(index):
        raise ValueError(f"channel {index!r} is not a whole number; enter one >= 0")
    return channel


def _control(label: str, component, width: int) -> dbc.Col:
    return dbc.Col([dbc.Label(label, html_for=component.id), component], md=width)


def layout(**query) -> html.Div:
    state, messages = parse_query(query)
    try:
        models = list_models()
    except LOAD_ERRORS as err:
        models, messages = [], [*messages, f"Could not list the models: {err}"]
    model = _first_or_requested(state.model, models)
    if state.model and state.model != model:
        messages.append(f"Model {state.model!r} is not in the store; showing {model!r}.")
    location, index = None, 0
    if state.node:
        key = parse_node_key(state.node)
        location, index = key.location, key.index
    try:
        tasks = list_task_names()
    except LOAD_ERRORS as err:
        tasks, messages = [], [*messages, f"Could not list the tasks: {err}"]
    task = _first_or_requested(state.task, tasks)

    controls = dbc.Row(
        [
            _control(
                "model",
                dcc.Dropdown(id="tokens-model", options=models, value=model, clearable=False),
                3,
            ),
            _control(
                "location", dcc.Dropdown(id="tokens-location", value=location, clearable=False), 3
            ),
            _control(
                "channel",
                dcc.Input(
                    id="tokens-index", type="number", min=0, step=1, value=index, debounce=True
                ),
                2,
            ),
            _control(
                "input",
                dbc.RadioItems(
                    id="tokens-source",
                    value=state.source,
                    inline=True,
                    options=[
                        {"label": "task sample", "value": "task"},
                        {"label": "my text", "value": "text"},
                    ],
                ),
                4,
            ),
        ],
        className="mb-2",
    )
    inputs = dbc.Row(
        [
            _control(
                "task",
                dcc.Dropdown(id="tokens-task", options=tasks, value=task, clearable=False),
                4,
            ),
            _control(
                "test pair",
                dcc.Input(
                    id="tokens-sample",
                    type="number",
                    min=0,
                    step=1,
                    value=state.sample,
                    debounce=True,
                ),
                2,
            ),
            _control(
                f"text (at most block_size tokens, {MAX_TEXT_CHARS} characters)",
                dcc.Textarea(
                    id="tokens-text",
                    value=state.text,
                    maxLength=MAX_TEXT_CHARS,
                    style={"width": "100%", "height": "6rem", "fontFamily": "monospace"},
                ),
                6,
            ),
        ],
        className="mb-2",
    )
    return html.Div(
        [
            dcc.Store(id="tokens-query"),
            dcc.Store(id="tokens-query-applied"),
            html.Div(message_list(messages), id="tokens-url-messages"),
            html.H4("Per-token activations"),
            controls,
            inputs,
            html.Div(id="tokens-messages"),
            dcc.Loading(html.Div(id="tokens-heatmap")),
            dcc.Graph(id="tokens-figure", figure=empty_figure("Pick a node.")),
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
)
def show_activations(model, location, index, source, task, sample, text):
    """Run the model on the chosen input and show the node's activation per token."""
    if not model or not location or index is None:
        return notice("Pick a model, a location and a channel."), empty_figure(""), []
    node = f"{location}:{index}"
    try:
        node = f"{location}:{_channel(index)}"
        if source == "text":
            sequences = [("text", encode_text(model, text or ""))]
        else:
            if not task:
                raise ValueError("pick a task")
            sequences = load_task_sample(model, task, int(sample or 0))
        rows = node_activation_rows(model, node, sequences)
    except LOAD_ERRORS as err:
        logger.info("per-token view of %s %s failed: %s", model, node, err)
        return None, empty_figure("No activations."), message_list([str(err)])
    first = rows[0]
    figure = activation_figure(first["tokens"], first["values"], f"{node} on the {first['title']}")
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
)
def serialise_query(model, location, index, source, task, sample, text):
    """Serialise the current view into the query string for the address bar."""
    node = None
    try:
        if location and index is not None:
            node = f"{location}:{_channel(index)}"
        state = update_state(
            parse_query({})[0],
            model=model,
            node=node,
            source=source,
            task=task,
            sample=sample,
            text=text,
        )
    except ValueError as err:
        logger.info("view state not written to the URL: %s", err)
        return dash.no_update
    return to_query_string(state)


clientside_callback(
    ClientsideFunction(namespace="url_state", function_name="replace_query"),
    Output("tokens-query-applied", "data"),
    Input("tokens-query", "data"),
)
