"""Embeddings page: a residual channel's top and bottom tokens, its weight histogram, positions.

URL parameters (see `webapp.url_state`): model, channel.
"""

from __future__ import annotations

import logging

import dash
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, dcc, html

from registry.catalogue import CatalogueError
from webapp.components.messages import message_list
from webapp.data import DataFileError, list_models
from webapp.embeddings import embedding_view, position_heatmap, weight_histogram
from webapp.figures import empty_figure
from webapp.heatmap import visible_whitespace
from webapp.url_state import parse_query, query_string_for, whole_number

logger = logging.getLogger(__name__)

dash.register_page(__name__, path="/embeddings", name="Embeddings", order=3)

LOAD_ERRORS = (DataFileError, CatalogueError, ValueError, OSError)


def layout(**query) -> html.Div:
    state, messages = parse_query(query)
    try:
        models = list_models()
    except LOAD_ERRORS as err:
        models, messages = [], [*messages, f"Could not list the models: {err}"]
    if not models:
        messages.append("The store has no models (no models/<name>/beeg_config.json).")
    model = state.model
    if model not in models:
        model = models[0] if models else None
    if state.model and state.model != model:
        messages.append(f"Model {state.model!r} is not in the store; showing {model!r}.")
    controls = dbc.Row(
        [
            dbc.Col(
                [
                    dbc.Label("model", html_for="embeddings-model"),
                    dcc.Dropdown(
                        id="embeddings-model", options=models, value=model, clearable=False
                    ),
                ],
                md=4,
            ),
            dbc.Col(
                [
                    dbc.Label("residual channel", html_for="embeddings-channel"),
                    dbc.Input(
                        id="embeddings-channel", type="number", min=0, step=1, value=state.channel
                    ),
                ],
                md=2,
            ),
        ],
        className="my-3",
    )
    return html.Div(
        [
            dcc.Store(id="embeddings-query"),
            dcc.Store(id="embeddings-query-applied"),
            html.Div(message_list(messages)),
            html.H4("Embeddings"),
            controls,
            html.Div(id="embeddings-messages"),
            dbc.Row(
                [
                    dbc.Col(html.Div(id="embeddings-top"), md=6),
                    dbc.Col(html.Div(id="embeddings-bottom"), md=6),
                ]
            ),
            dcc.Graph(id="embeddings-histogram", figure=empty_figure("Loading ...")),
            dcc.Graph(id="embeddings-positions", figure=empty_figure("Loading ...")),
        ]
    )


def _one_line(token: str) -> str:
    return visible_whitespace(token).replace("\n", "")


def token_table(title: str, rows: list[dict]) -> html.Div:
    """Build a table of (token, id, weight) rows, with each token's whitespace visible.

    A newline shows as its mark alone, so every token stays on one table row.
    """
    body = [
        html.Tr(
            [
                html.Td(html.Code(_one_line(row["token"]), style={"whiteSpace": "pre"})),
                html.Td(row["token_id"]),
                html.Td(f"{row['weight']:.4g}"),
            ]
        )
        for row in rows
    ]
    header = html.Thead(html.Tr([html.Th("token"), html.Th("id"), html.Th("weight")]))
    return html.Div(
        [html.H6(title), dbc.Table([header, html.Tbody(body)], size="sm", striped=True)]
    )


@callback(
    Output("embeddings-top", "children"),
    Output("embeddings-bottom", "children"),
    Output("embeddings-histogram", "figure"),
    Output("embeddings-positions", "figure"),
    Output("embeddings-messages", "children"),
    Input("embeddings-model", "value"),
    Input("embeddings-channel", "value"),
)
def show_channel(model, channel):
    """Fill the tables and figures for the chosen model and residual channel."""
    blank = ([], [], empty_figure("No channel selected."), empty_figure(""))
    if not model:
        return (*blank, [])
    if channel is None or channel == "":
        return (*blank, message_list(["Enter a residual channel number, such as 0."]))
    try:
        channel = whole_number(channel, "channel")
        view = embedding_view(model, channel)
    except LOAD_ERRORS as err:
        logger.info("embeddings of %r channel %r not shown: %s", model, channel, err)
        return (*blank, message_list([f"Cannot show channel {channel!r} of {model!r}: {err}"]))
    return (
        token_table(f"top {len(view['top'])} tokens", view["top"]),
        token_table(f"bottom {len(view['bottom'])} tokens", view["bottom"]),
        weight_histogram(view["weights"], channel),
        position_heatmap(view["positions"], channel),
        [],
    )


@callback(
    Output("embeddings-query", "data"),
    Input("embeddings-model", "value"),
    Input("embeddings-channel", "value"),
)
def serialise_query(model, channel):
    """Serialise the current view into the query string for the address bar.

    An empty channel box shows no channel (only a prompt for one), so the URL keeps the last one.
    """
    if channel is None or channel == "":
        return dash.no_update
    query = query_string_for(model=model, channel=channel)
    return dash.no_update if query is None else query


clientside_callback(
    ClientsideFunction(namespace="url_state", function_name="replace_query"),
    Output("embeddings-query-applied", "data"),
    Input("embeddings-query", "data"),
    State("embeddings-query-applied", "data"),
)
