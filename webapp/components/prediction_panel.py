"""The per-token page's prediction panel: the next-token top 5 of the full model and of a circuit.

The circuit is the page's model and task with the sweep and k chosen here (URL parameters
`sweep`, `k`), so the page's task dropdown lists the model's circuit tasks besides the tasks it
has samples of. The position (URL `position`) defaults to the last token of each sequence, where
a task's target token is predicted. The callbacks here register when `webapp.pages.per_token` imports
this module.
"""

from __future__ import annotations

import logging

import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html

from registry import catalogue
from registry.catalogue import CatalogueError
from webapp.circuit_data import choose_default_k
from webapp.components.messages import message_list, notice
from webapp.data import DataFileError, get_store
from webapp.heatmap import visible_whitespace
from webapp.live import input_sequences, list_task_names, task_answers, token_labels
from webapp.live_predictions import MEANS_COMPUTED, TOP_COUNT, circuit_top_tokens, top_tokens
from webapp.selection import resolve_selection
from webapp.url_state import parse_query, update_state

logger = logging.getLogger(__name__)

LOAD_ERRORS = (DataFileError, CatalogueError, ValueError, KeyError, OSError)


def circuit_tasks(model: str | None) -> list[str]:
    """List the tasks the store has circuits of for `model` (none for a model without circuits)."""
    store = get_store()
    if not model or model not in catalogue.list_viz_models(store):
        return []
    return catalogue.list_tasks(model, store)


def task_options(model: str | None) -> list[str]:
    """List the tasks of the page's task dropdown: those with samples and those with circuits."""
    return sorted(set(list_task_names()) | set(circuit_tasks(model)))


def circuit_choices(model: str | None, task: str | None, sweep: str | None, k: str | None) -> dict:
    """Return the sweep and k options and values for the model's circuits of `task`.

    Keys: `sweeps`, `sweep`, `ks`, `k`, and `messages` naming a requested sweep or k that the
    store does not list. Such a value, or a missing one, gets the circuit page's default: the
    first sweep with a `k_optim` circuit, and `k_optim` or the k that `choose_default_k` picks
    from sweep.json. Without circuits of `task` the lists are empty and the values None.
    """
    if task not in circuit_tasks(model):
        return {"sweeps": [], "sweep": None, "ks": [], "k": None, "messages": []}
    requested = {"model": model, "task": task, "sweep": sweep, "k": k}
    selection = resolve_selection(get_store(), requested, choose_default_k)
    return {
        "sweeps": selection.options["sweep"],
        "sweep": selection.values["sweep"],
        "ks": selection.options["k"],
        "k": selection.values["k"],
        "messages": selection.replacements + selection.problems,
    }


def prediction_panel(
    sweeps: list[str], sweep: str | None, ks: list[str], k: str | None, position: int | None
) -> list:
    """Build the circuit selectors, the position input and the prediction tables' container."""

    def control(label: str, component, width: int) -> dbc.Col:
        return dbc.Col([dbc.Label(label, html_for=component.id), component], md=width)

    # The options come with the layout: Dash 4's Dropdown resets a value missing from its options.
    sweep_dropdown = dcc.Dropdown(
        id="tokens-sweep", options=sweeps, value=sweep, clearable=False, placeholder="no circuit"
    )
    k_dropdown = dcc.Dropdown(
        id="tokens-k", options=ks, value=k, clearable=False, placeholder="no circuit"
    )
    position_input = dcc.Input(
        id="tokens-position",
        type="number",
        min=0,
        step=1,
        value=position,
        placeholder="last",
        debounce=True,
    )
    return [
        html.H5("Next-token predictions", className="mt-3"),
        html.P(
            "The five most likely next tokens after the chosen position, from the full model and "
            "from the circuit of this model and task alone (every node outside it set to its mean "
            "activation). Probabilities are the softmax of the logits over the whole vocabulary.",
            className="text-muted small",
        ),
        dbc.Row(
            [
                control("circuit sweep", sweep_dropdown, 3),
                control("circuit k", k_dropdown, 3),
                control("position (empty: the last token)", position_input, 3),
            ],
            className="mb-2",
        ),
        html.Div(id="tokens-predictions-messages"),
        dcc.Loading(html.Div(id="tokens-predictions")),
    ]


@callback(
    Output("tokens-task", "options"),
    Output("tokens-sweep", "options"),
    Output("tokens-sweep", "value"),
    Output("tokens-k", "options"),
    Output("tokens-k", "value"),
    Input("tokens-model", "value"),
    Input("tokens-task", "value"),
    Input("tokens-sweep", "value"),
    Input("tokens-k", "value"),
)
def fill_circuit_selectors(model, task, sweep, k):
    """List the tasks of the model, and the sweeps and ks of its circuits of the chosen task."""
    try:
        choices = circuit_choices(model, task, sweep, k)
        options = task_options(model)
    except LOAD_ERRORS as err:
        logger.warning("circuit selectors of %s/%s failed: %s", model, task, err)
        return list_task_names(), [], None, [], None
    return options, choices["sweeps"], choices["sweep"], choices["ks"], choices["k"]


@callback(
    Output("tokens-predictions", "children"),
    Output("tokens-predictions-messages", "children"),
    Input("tokens-model", "value"),
    Input("tokens-source", "value"),
    Input("tokens-task", "value"),
    Input("tokens-sample", "value"),
    Input("tokens-text", "value"),
    Input("tokens-sweep", "value"),
    Input("tokens-k", "value"),
    Input("tokens-position", "value"),
)
def show_predictions(model, source, task, sample, text, sweep, k, position):
    """Show the top next tokens of the full model and of the circuit alone at the position."""
    if not model:
        return notice("Pick a model."), []
    try:
        position = update_state(parse_query({})[0], position=position).position
        sequences = input_sequences(model, source, task, sample, text)
    except LOAD_ERRORS as err:
        logger.info("predictions of %s not shown: %s", model, err)
        return None, message_list([str(err)])

    circuit = (task, sweep, k) if sweep and k else None
    # A task sample at its last token: also show the task's two answer tokens.
    answers = ()
    if source != "text" and position is None:
        try:
            answers = task_answers(model, task, int(sample or 0))
        except LOAD_ERRORS as err:
            logger.info("answer tokens of %s sample %s not shown: %s", task, sample, err)
    blocks, messages = [], []
    for title, token_ids in sequences:
        at = len(token_ids) - 1 if position is None else position
        try:
            blocks.append(_sequence_block(model, circuit, title, token_ids, at, answers))
        except LOAD_ERRORS as err:
            logger.info("predictions of %s on the %s not shown: %s", model, title, err)
            messages.append(f"{title}: {err}")
    return html.Div(blocks, id="tokens-prediction-blocks"), message_list(messages)


def _sequence_block(
    model: str,
    circuit: tuple | None,
    title: str,
    token_ids: list[int],
    position: int,
    answers: tuple[int, ...] = (),
) -> html.Div:
    """Build one sequence's heading and its two top-5 tables side by side.

    `answers` are the task's answer token ids (first sequence's, second's), shown under each table.
    """
    if position >= len(token_ids):
        raise ValueError(
            f"position {position} is out of range: it has positions 0 to {len(token_ids) - 1}"
        )
    full = top_tokens(model, token_ids, position, answers)
    if circuit is None:
        circuit_column = notice("No circuit of this model and task in the store.")
    else:
        result = circuit_top_tokens(model, circuit, token_ids, position, answers)
        heading = f"circuit alone ({circuit[0]}, {circuit[1]}, k={circuit[2]})"
        note = None
        if result["means"] == MEANS_COMPUTED:
            note = html.Div(
                "The circuit file stores no ablation means, so they were computed over "
                "standard-library validation windows; they may differ from the pruner's.",
                className="text-muted small",
            )
        circuit_column = [prediction_table(heading, result["predictions"], "top-circuit"), note]
        if answers:
            circuit_column.insert(1, _answers_note(result["predictions"]))

    label = visible_whitespace(token_labels(model, [token_ids[position]])[0]).replace("\n", "")
    return html.Div(
        [
            html.H6([f"{title}: after position {position}, token ", html.Code(label)]),
            dbc.Row(
                [
                    dbc.Col(
                        [
                            prediction_table("full model", full, "top-full"),
                            _answers_note(full) if answers else None,
                        ],
                        md=6,
                    ),
                    dbc.Col(circuit_column, md=6),
                ]
            ),
        ],
        className="prediction-block mb-3",
    )


ANSWER_NAMES = ("first sequence's answer", "second sequence's answer")


def _answers_note(predictions: list[dict]) -> html.Div:
    """Say which of the task's two answer tokens (the rows after the top ones) has the higher logit."""
    first, second = predictions[TOP_COUNT : TOP_COUNT + 2]
    preferred = ANSWER_NAMES[0] if first["logit"] >= second["logit"] else ANSWER_NAMES[1]
    gap = abs(first["logit"] - second["logit"])
    return html.Div(
        f"Of the task's two answers, the {preferred} has the higher logit (by {gap:.3f}).",
        className="small text-muted mb-2 answer-preference",
    )


def prediction_table(heading: str, predictions: list[dict], class_name: str) -> html.Div:
    """Render predictions as a table of rank, token (whitespace made visible), probability, logit.

    Rows after the TOP_COUNT top tokens are the task's answer tokens, labelled as such.
    """
    rows = [
        html.Tr(
            [
                html.Td(str(rank)),
                html.Td(html.Code(visible_whitespace(p["label"]).replace("\n", ""))),
                html.Td(f"{p['probability']:.3f}"),
                html.Td(f"{p['logit']:.3f}"),
            ],
            className="prediction",
        )
        for rank, p in enumerate(predictions[:TOP_COUNT], start=1)
    ]
    rows += [
        html.Tr(
            [
                html.Td(name),
                html.Td(html.Code(visible_whitespace(p["label"]).replace("\n", ""))),
                html.Td(f"{p['probability']:.3f}"),
                html.Td(f"{p['logit']:.3f}"),
            ],
            className="prediction-answer table-secondary",
        )
        for name, p in zip(ANSWER_NAMES, predictions[TOP_COUNT:], strict=False)
    ]
    header = html.Thead(html.Tr([html.Th("#"), html.Th("token"), html.Th("p"), html.Th("logit")]))
    return html.Div(
        [
            html.Div(heading, className="fw-semibold small"),
            dbc.Table([header, html.Tbody(rows)], size="sm", className="mb-1"),
        ],
        className=class_name,
    )
