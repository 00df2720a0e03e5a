"""Models page: each model's config summary and nonzero weights, and one model's training curves.

URL parameters (see `webapp.url_state`): model, metrics (comma-separated curve names, `none` for
no curves), log (the curve axes on a log scale: x, y or x,y).
"""

from __future__ import annotations

import logging

import dash
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, dcc, html

from registry.catalogue import CatalogueError
from webapp.components.messages import message_list, notice
from webapp.data import (
    DataFileError,
    final_training_values,
    get_store,
    list_models_and_curves,
    model_summary,
    training_records,
    weight_counts,
)
from webapp.figures import default_metrics, empty_figure, numeric_metrics, training_curves_figure
from webapp.url_state import NO_METRICS, parse_query, to_query_string, update_state

logger = logging.getLogger(__name__)

dash.register_page(__name__, path="/", name="Models", order=0)

LOAD_ERRORS = (DataFileError, CatalogueError, ValueError, OSError)
SUMMARY_COLUMNS = (
    ("n_layer", "layers"),
    ("d_model", "d_model"),
    ("n_head", "heads"),
    ("d_head", "d_head"),
    ("d_mlp", "d_mlp"),
    ("pfrac", "pfrac (config)"),
    ("afrac", "afrac"),
    ("tokenizer_name", "tokenizer"),
)
# Keys that only some configs carry. The table leaves such a column out when no config has it.
# Every other column is a config field, and its "-" has a meaning (afrac None: no AbsTopK).
OPTIONAL_COLUMNS = ("pfrac",)
# Fields of the last progress.json records shown per model: (key, column title).
FINAL_COLUMNS = (
    ("step", "steps"),
    ("tokens", "tokens"),
    ("train_xent", "train loss"),
    ("test_xent", "test loss"),
    ("density", "density"),
    ("L0", "L0"),
    ("L0_non_embed", "L0 non-embedding"),
)


def layout(**query) -> html.Div:
    state, messages = parse_query(query)
    try:
        models = list_models_and_curves()
    except LOAD_ERRORS as err:
        models, messages = [], [*messages, f"Could not list the models: {err}"]
    if not models:
        messages.append(
            "The store has no models (no models/<name>/beeg_config.json and no "
            "train_curves/<name>/progress.json)."
        )
    model = _first_or_requested(state.model, models)
    if state.model and state.model != model:
        messages.append(f"Model {state.model!r} is not in the store; showing {model!r}.")
    return html.Div(
        [
            dcc.Store(id="models-query"),
            dcc.Store(id="models-query-applied"),
            dcc.Store(
                id="models-requested-metrics",
                data=None if state.metrics is None else list(state.metrics),
            ),
            html.Div(message_list(messages), id="models-url-messages"),
            html.H4("Models"),
            html.Div(id="models-table"),
            html.H6("Final training metrics (last value of each field in progress.json)"),
            html.Div(id="models-final"),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            dbc.Label("model", html_for="models-model"),
                            dcc.Dropdown(
                                id="models-model", options=models, value=model, clearable=False
                            ),
                        ],
                        md=4,
                    ),
                    dbc.Col(
                        [
                            dbc.Label("training curves", html_for="models-metrics"),
                            dcc.Dropdown(id="models-metrics", multi=True),
                        ],
                        md=6,
                    ),
                    dbc.Col(
                        [
                            dbc.Label("log scale", html_for="models-log"),
                            dbc.Checklist(
                                id="models-log",
                                options=[
                                    {"label": "x (step)", "value": "x"},
                                    {"label": "y (value)", "value": "y"},
                                ],
                                value=list(state.log),
                                inline=True,
                            ),
                        ],
                        md=2,
                    ),
                ],
                className="my-3",
            ),
            dcc.Loading(html.Div(id="models-weights")),
            html.Div(id="models-curve-messages"),
            dcc.Graph(id="models-curves", figure=empty_figure("Loading ...")),
        ]
    )


def _first_or_requested(requested: str | None, options: list[str]) -> str | None:
    if requested in options:
        return requested
    return options[0] if options else None


def _format_cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _weights_cell(model: str) -> str:
    """Format the checkpoint's nonzero weights and density; local stores only, where it is cheap."""
    if get_store().is_remote:
        return "select the model"
    try:
        counts = weight_counts(model)
    except LOAD_ERRORS as err:
        logger.warning("weight counts of %s failed: %s", model, err)
        return str(err)
    return f"{counts['nnz']:,} ({counts['density']:.3g})"


def _summary_or_error(model: str) -> dict | str:
    try:
        return model_summary(model)
    except LOAD_ERRORS as err:
        logger.warning("config summary of %s failed: %s", model, err)
        return str(err)


def _summary_row(model: str, summary: dict | str, columns: list[str]) -> html.Tr:
    if isinstance(summary, str):  # the error of a config that failed to load
        return html.Tr([html.Td(model), html.Td(summary, colSpan=len(columns) + 1)])
    cells = [html.Td(model)]
    for key in columns:
        cells.append(html.Td(_format_cell(summary[key])))
    cells.append(html.Td(_weights_cell(model)))
    return html.Tr(cells)


@callback(Output("models-table", "children"), Input("models-model", "options"))
def show_model_table(models):
    """Tabulate each model's config summary; a model whose config fails to load shows the error.

    An OPTIONAL_COLUMNS column shows only when a loaded config sets its key.
    """
    if not models:
        return notice("No models to show.")
    summaries = {model: _summary_or_error(model) for model in models}
    loaded = [summary for summary in summaries.values() if isinstance(summary, dict)]
    shown_columns = [
        (key, title)
        for key, title in SUMMARY_COLUMNS
        if key not in OPTIONAL_COLUMNS or any(summary[key] is not None for summary in loaded)
    ]
    titles = ["model"] + [title for _, title in shown_columns] + ["nonzero weights (density)"]
    header = html.Thead(html.Tr([html.Th(title) for title in titles]))
    columns = [key for key, _ in shown_columns]
    body = html.Tbody([_summary_row(model, summaries[model], columns) for model in models])
    return dbc.Table([header, body], bordered=False, hover=True, size="sm", responsive=True)


def _final_row(model: str) -> html.Tr:
    try:
        final = final_training_values(training_records(model))
    except LOAD_ERRORS as err:
        logger.info("final metrics of %s not shown: %s", model, err)
        return html.Tr([html.Td(model), html.Td(str(err), colSpan=len(FINAL_COLUMNS))])
    cells = [html.Td(model)]
    for key, _ in FINAL_COLUMNS:
        value = final.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            cells.append(html.Td(f"{value:,}"))
        elif isinstance(value, float):
            cells.append(html.Td(f"{value:.4g}"))
        else:
            cells.append(html.Td(_format_cell(value)))
    return html.Tr(cells)


@callback(Output("models-final", "children"), Input("models-model", "options"))
def show_final_metrics(models):
    """Tabulate each model's final training metrics; a missing or bad progress.json shows why."""
    if not models:
        return notice("No models to show.")
    titles = ["model"] + [title for _, title in FINAL_COLUMNS]
    header = html.Thead(html.Tr([html.Th(title) for title in titles]))
    body = html.Tbody([_final_row(model) for model in models])
    return dbc.Table([header, body], bordered=False, hover=True, size="sm", responsive=True)


@callback(Output("models-weights", "children"), Input("models-model", "value"))
def show_weight_counts(model):
    """Count the nonzero weights of the selected model in its checkpoint."""
    if not model:
        return None
    try:
        counts = weight_counts(model)
    except LOAD_ERRORS as err:
        logger.warning("weight counts of %s failed: %s", model, err)
        return message_list([str(err)], color="danger")
    return html.P(
        f"{model}: {counts['nnz']:,} nonzero of {counts['total']:,} weights in its sparse tensors "
        f"(density {counts['density']:.4g}; norms, bigram table and sink logits are dense).",
        id="models-weights-text",
    )


@callback(
    Output("models-metrics", "options"),
    Output("models-metrics", "value"),
    Output("models-curves", "figure"),
    Output("models-curve-messages", "children"),
    Input("models-model", "value"),
    Input("models-metrics", "value"),
    Input("models-requested-metrics", "data"),
    Input("models-log", "value"),
)
def show_training_curves(model, metrics, requested_metrics, log_axes=()):
    """Plot the chosen metrics of the model's progress.json; a missing file shows its name.

    `requested_metrics` comes from the URL: None for the usual curves, [] for none.
    """
    # A model without curves leaves the selection None, not [] (which means the user cleared it
    # and is written to the URL as metrics=none), so the next model opens with its usual curves.
    if not model:
        return [], None, empty_figure("No model selected."), []
    try:
        records = training_records(model)
    except LOAD_ERRORS as err:
        message = f"No training curves for {model}: {err}"
        return (
            [],
            None,
            empty_figure("Nothing to plot: see the message above."),
            message_list([message]),
        )

    if not records:
        message = f"No records in train_curves/{model}/progress.json: the file has no JSON lines."
        logger.info("training curves of %s not shown: %s", model, message)
        return [], None, empty_figure(message), message_list([message])

    available = numeric_metrics(records)
    messages = []
    if metrics is None and requested_metrics == []:
        chosen = []  # the URL has metrics=none
    elif metrics is None:
        # First render: the URL's metrics where present, else the usual curves.
        requested = requested_metrics or []
        chosen = [m for m in requested if m in available] or default_metrics(records)
        unknown = [m for m in requested if m not in available]
        if unknown:
            messages.append(
                f"Unknown metrics {', '.join(map(repr, unknown))} for {model}, not plotted. "
                f"Available: {', '.join(available) or 'none'}."
            )
    elif metrics:
        # A new model keeps the chosen curves it has, else shows its usual ones.
        chosen = [m for m in metrics if m in available] or default_metrics(records)
    else:
        chosen = []  # the user cleared the selection
    figure = training_curves_figure(records, chosen, log_axes or ())
    return available, chosen, figure, message_list(messages)


@callback(
    Output("models-query", "data"),
    Input("models-model", "value"),
    Input("models-metrics", "value"),
    Input("models-log", "value"),
)
def serialise_query(model, metrics, log_axes=()):
    """Serialise the current view into the query string for the address bar.

    The selection is None before the curves callback has filled it, and for a model without
    curves. Then only a change of model is written (without metrics), so that the URL's curves
    are not dropped while the page loads.
    """
    if metrics is None and dash.ctx.triggered_id != "models-model":
        return dash.no_update
    if metrics is None:
        metrics_state = None
    else:
        metrics_state = tuple(metrics) or NO_METRICS
    try:
        state = update_state(parse_query({})[0], model=model, metrics=metrics_state, log=log_axes)
    except ValueError as err:
        logger.info("view state not written to the URL: %s", err)
        return dash.no_update
    return to_query_string(state)


clientside_callback(
    ClientsideFunction(namespace="url_state", function_name="replace_query"),
    Output("models-query-applied", "data"),
    Input("models-query", "data"),
    State("models-query-applied", "data"),
)
