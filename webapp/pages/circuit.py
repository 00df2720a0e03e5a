"""Circuit page: pick a pruned circuit, see its graph, click a node to see what it reads on the task.

URL parameters (see `webapp.url_state`): model, task, sweep, k, threshold, node, fraction, sample
(the stored task sample of the attention panel), block (the single-block view) and scale
(the heatmaps' colour scale).
"""

from __future__ import annotations

import logging

import dash
import dash_bootstrap_components as dbc
from dash import (
    ALL,
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
from webapp import graph
from webapp.circuit_data import (
    check_node,
    choose_default_k,
    load_circuit,
    load_sweep,
    node_examples,
    node_task_heatmap,
)
from webapp.components.circuit_panels import circuit_controls, graph_panel, loss_panel, node_panel
from webapp.components.messages import message_list, notice
from webapp.components.node_card import node_card
from webapp.components.token_heatmap import render_heatmap
from webapp.data import DataFileError, get_store
from webapp.figures import circuit_loss_figure, empty_figure, sweep_figure
from webapp.heatmap import HEATMAP_SCALES, SYMMETRIC_SCALE
from webapp.live import list_task_names
from webapp.selection import LEVELS, resolve_selection
from webapp.url_state import ViewState, parse_query, query_string_for, to_query_string, update_state

logger = logging.getLogger(__name__)

dash.register_page(__name__, path="/circuit", name="Circuit", order=1)

LOAD_ERRORS = (DataFileError, CatalogueError, ValueError, KeyError)


def layout(**query) -> html.Div:
    state, messages = parse_query(query)
    requested = {level: getattr(state, level) for level in LEVELS}
    selection = resolve_selection(get_store(), requested, choose_default_k)
    messages += selection.replacements + selection.problems
    return html.Div(
        [
            dcc.Store(id="circuit-query"),
            dcc.Store(id="circuit-query-applied"),
            dcc.Store(id="circuit-style-inputs"),
            dcc.Store(id="circuit-graph-fit"),
            # The selected node. The search dropdown cannot hold it, because Dash 4's Dropdown
            # resets a value that is missing from its options, and the options arrive later.
            dcc.Store(id="circuit-selected-node", data=state.node),
            html.Div(message_list(messages), id="circuit-url-messages"),
            *circuit_controls(
                selection.options, selection.values, state.threshold, state.node, state.block
            ),
            html.Div(id="circuit-selector-messages"),
            html.Div(id="circuit-messages"),
            *loss_panel(),
            *graph_panel(),
            *node_panel(state.fraction, state.sample, state.scale),
        ]
    )


@callback(
    *(Output(f"circuit-{level}", "options") for level in LEVELS),
    *(Output(f"circuit-{level}", "value") for level in LEVELS),
    Output("circuit-selector-messages", "children"),
    *(Input(f"circuit-{level}", "value") for level in LEVELS),
    prevent_initial_call=True,
)
def update_selectors(model, task, sweep, k):
    """Refill the four selectors after one changes; lower levels fall back to their first entry.

    A lower level keeps its value when the new higher level lists it too. Only empty levels and
    failed listings get a message, because a fallback after a change is expected.
    """
    requested = dict(zip(LEVELS, (model, task, sweep, k), strict=True))
    selection = resolve_selection(get_store(), requested, choose_default_k)
    return (
        *(selection.options[level] for level in LEVELS),
        *(selection.values[level] for level in LEVELS),
        message_list(selection.problems),
    )


@callback(
    Output("circuit-node", "options"),
    Output("circuit-loss-figure", "figure"),
    Output("circuit-style-inputs", "data"),
    Output("circuit-messages", "children"),
    Output("circuit-legend", "children"),
    *(Input(f"circuit-{level}", "value") for level in LEVELS),
)
def load_selected_circuit(model, task, sweep, k):
    """Load the selected circuit: node search options, loss figure, colour ranges and legend."""
    if None in (model, task, sweep, k):
        return [], empty_figure(""), None, [], None
    try:
        circuit = load_circuit(model, task, sweep, k)
    except LOAD_ERRORS as err:
        logger.warning("circuit %s/%s/%s/%s failed to load: %s", model, task, sweep, k, err)
        messages = message_list([str(err)], "danger")
        return [], empty_figure("No circuit loaded."), None, messages, None

    figure = circuit_loss_figure(
        circuit["loss"],
        circuit["interv_loss"],
        [tuple(p) for p in circuit["search_losses"]],
        circuit["block_deltas"],
    )
    low, high = graph.colour_range(circuit)
    style_inputs = {"low": low, "high": high, "max_weight": graph.max_abs_weight(circuit)}
    legend = graph.colour_legend(
        low, high, graph.colour_floor(circuit), graph.largest_importance(circuit)
    )
    return graph.node_options(circuit), figure, style_inputs, [], legend


@callback(
    Output("circuit-block", "options"),
    *(Input(f"circuit-{level}", "value") for level in LEVELS),
    State("circuit-block", "value"),
)
def list_blocks(model, task, sweep, k, block):
    """List the circuit's blocks for the block view selector (keeping the shown block listed)."""
    blocks = []
    if None not in (model, task, sweep, k):
        try:
            blocks = graph.circuit_blocks(load_circuit(model, task, sweep, k))
        except LOAD_ERRORS:
            pass  # load_selected_circuit shows the error
    options = [{"label": name, "value": name} for name in blocks]
    # A block that the circuit lacks stays listed, so that draw_graph can name it in a message,
    # and its label explains why the whole circuit is drawn.
    if block and block not in blocks:
        options.append({"label": f"{block} (no nodes: whole circuit shown)", "value": block})
    return options


@callback(
    Output("circuit-block", "value"),
    Input("circuit-block-reset", "n_clicks"),
    prevent_initial_call=True,
)
def show_whole_circuit(n_clicks):
    """Leave the block view."""
    return None


@callback(
    Output("circuit-graph", "elements"),
    Output("circuit-graph", "style"),
    Output("circuit-summary", "children"),
    *(Input(f"circuit-{level}", "value") for level in LEVELS),
    Input("circuit-threshold", "value"),
    Input("circuit-block", "value"),
)
def draw_graph(model, task, sweep, k, threshold, block=None):
    """Draw the selected circuit (or one `block` of it) with the edges above the threshold.

    A circuit that fails to load draws nothing; `load_selected_circuit` shows the error. A block
    that is invalid or keeps no nodes draws the whole circuit, with a message naming it.
    """
    empty_style = graph.graph_style(graph.MIN_VIEW_HEIGHT)
    if None in (model, task, sweep, k):
        return [], empty_style, notice("Select a model, task, sweep and k.")
    try:
        circuit = load_circuit(model, task, sweep, k)
    except LOAD_ERRORS:
        return [], empty_style, None

    try:
        threshold = update_state(parse_query({})[0], threshold=threshold).threshold
    except ValueError as err:
        logger.info("edge threshold %r replaced by 0: %s", threshold, err)
        threshold = 0.0
    shown, block_messages = _shown_part(circuit, block)
    elements, height = graph.build_view(shown, threshold)
    shown_edges = sum(1 for element in elements if "source" in element["data"])
    block_text = ""
    if shown is not circuit:
        block_text = (
            f"Block {block} alone: {len(shown['nodes'])} nodes (with the other ends of its "
            f"edges), {len(shown['edges'])} edges. "
        )
    summary = html.P(
        f"{block_text}{len(circuit['nodes'])} nodes kept of {circuit['num_total_nodes']}; "
        f"{len(circuit['edges'])} edges, {shown_edges} shown at threshold {threshold:g}. "
        f"Task loss per sequence: full model {circuit['loss']:.4f}, "
        f"circuit {circuit['interv_loss']:.4f}.",
        id="circuit-summary-text",
    )
    return elements, graph.graph_style(height), [*message_list(block_messages), summary]


def _shown_part(circuit: dict, block: str | None) -> tuple[dict, list[str]]:
    """Return the part of the circuit to draw (one block or all of it) and messages."""
    if not block:
        return circuit, []
    try:
        block = update_state(parse_query({})[0], block=block).block
        return graph.block_subgraph(circuit, block), []
    except ValueError as err:
        logger.info("block view %r not shown: %s", block, err)
        return circuit, [f"Showing the whole circuit: {err}."]


# Hovering runs in the browser: a server round trip per mouse move would lag.
clientside_callback(
    """function (data) {
        if (!data) { return ""; }
        var delta = (typeof data.importance === "number" && !data.id.startsWith("row:"))
            ? "  ablation delta " + data.importance.toFixed(4) : "";
        return data.label + delta;
    }""",
    Output("circuit-hover", "children"),
    Input("circuit-graph", "mouseoverNodeData"),
)


# draw_graph sets the graph's height with its elements. Cytoscape fits the preset layout into the
# size it measured before the height changed, so the browser measures the view again and refits.
# The server sized the row labels for an estimated view width. At the real fit zoom they are
# resized to read at ROW_LABEL_PX px, capped at MAX_ROW_LABEL_SIZE graph units so rows never overlap.
clientside_callback(
    """function (style, elements) {
        var container = document.getElementById("circuit-graph");
        var cy = container && container._cyreg && container._cyreg.cy;
        if (!cy) { return window.dash_clientside.no_update; }
        window.requestAnimationFrame(function () {
            cy.resize();
            cy.fit(cy.elements(), FIT_PADDING);
            var size = Math.min(ROW_LABEL_PX / cy.zoom(), MAX_ROW_LABEL_SIZE);
            cy.nodes(".row-label").style("font-size", size);
            cy.fit(cy.elements(), FIT_PADDING);  // the labels' new width changes the bounds
        });
        return style ? style.height : null;
    }""".replace("FIT_PADDING", str(graph.FIT_PADDING))
    .replace("ROW_LABEL_PX", str(graph.ROW_LABEL_PX))
    .replace("MAX_ROW_LABEL_SIZE", str(graph.MAX_ROW_LABEL_SIZE)),
    Output("circuit-graph-fit", "data"),
    Input("circuit-graph", "style"),
    Input("circuit-graph", "elements"),
)


@callback(
    Output("circuit-graph", "generateImage"),
    Input("circuit-download", "n_clicks"),
    *(State(f"circuit-{level}", "value") for level in LEVELS),
    prevent_initial_call=True,
)
def download_image(n_clicks, model, task, sweep, k):
    """Make the browser download the graph as a PNG named after the circuit."""
    name = "-".join(str(part) for part in (model, task, sweep, k))
    # cy.png options: the whole graph rather than the visible part, on white, at twice the
    # screen resolution so node indices stay legible.
    options = {"full": True, "bg": "#ffffff", "scale": 2}
    return {"type": "png", "action": "download", "filename": f"circuit-{name}", "options": options}


@callback(
    Output("circuit-sweep-figure", "figure"),
    *(Input(f"circuit-{level}", "value") for level in LEVELS),
)
def show_sweep(model, task, sweep, k):
    """Plot the sweep's loss against k, marking the selected circuit's k."""
    if None in (model, task, sweep, k):
        return empty_figure("")
    try:
        curve = load_sweep(model, task, sweep)
    except LOAD_ERRORS as err:
        logger.warning("sweep %s/%s/%s failed to load: %s", model, task, sweep, err)
        return empty_figure(str(err))
    if curve is None:
        return empty_figure("This sweep stores no sweep.json, so no loss-against-k curve.")
    shown_k = None
    if k == "k_optim":
        shown_k = curve["k_optim"]
    elif str(k).isdigit():
        shown_k = int(k)
    return sweep_figure(curve["points"], curve["full_model_loss"], curve["target_loss"], shown_k)


TOP_NODE_COUNT = 10


@callback(
    Output("circuit-top-nodes", "children"),
    *(Input(f"circuit-{level}", "value") for level in LEVELS),
)
def list_top_nodes(model, task, sweep, k):
    """List the nodes with the largest |ablation delta| as buttons that select them."""
    if None in (model, task, sweep, k):
        return None
    try:
        circuit = load_circuit(model, task, sweep, k)
    except LOAD_ERRORS:
        return None  # load_selected_circuit shows the error
    top = graph.top_nodes(circuit, TOP_NODE_COUNT)
    if not top:
        return None
    buttons = [
        dbc.Button(
            f"{node['label']}  {node['importance']:+.3g}",
            id={"type": "circuit-top-node", "node": node["id"]},
            color="link",
            size="sm",
            className="p-0 me-3 text-nowrap",
        )
        for node in top
    ]
    title = html.Span(
        f"Largest ablation deltas (top {len(top)} of {len(circuit['nodes'])}): ",
        className="fw-bold",
    )
    return html.Div([title, *buttons], className="small mb-2", id="circuit-top-nodes-list")


@callback(
    Output("circuit-selected-node", "data", allow_duplicate=True),
    Input({"type": "circuit-top-node", "node": ALL}, "n_clicks"),
    prevent_initial_call=True,
)
def select_top_node(n_clicks):
    """Make a clicked entry of the largest-delta list the selected node."""
    triggered = dash.ctx.triggered_id
    # New buttons arrive with n_clicks None, and Dash may call this when they appear.
    if not triggered or not any(n_clicks or []):
        return dash.no_update
    return triggered["node"]


@callback(
    Output("circuit-selected-node", "data"),
    Input("circuit-graph", "tapNodeData"),
    prevent_initial_call=True,
)
def select_tapped_node(tap_node_data):
    """Make a tapped graph node the selected node (row labels are not nodes)."""
    if not tap_node_data or tap_node_data["id"].startswith(graph.ROW_LABEL_PREFIX):
        return dash.no_update
    return tap_node_data["id"]


@callback(
    Output("circuit-selected-node", "data", allow_duplicate=True),
    Input("circuit-node", "value"),
    State("circuit-selected-node", "data"),
    prevent_initial_call=True,
)
def select_searched_node(value, selected):
    """Make the node picked in the search dropdown the selected node.

    An empty value comes from the dropdown resetting itself while its options load, so it keeps the
    current selection.
    """
    if not value or value == selected:
        return dash.no_update
    return value


@callback(
    Output("circuit-node", "value"),
    Input("circuit-selected-node", "data"),
    Input("circuit-node", "options"),
)
def show_selected_in_search(selected, options):
    """Show the selected node in the search dropdown once its options contain it."""
    if selected and any(option["value"] == selected for option in options or []):
        return selected
    return None


@callback(
    Output("circuit-node-card", "children"),
    Output("circuit-node-heatmap", "children"),
    Output("circuit-node-examples", "children"),
    Output("circuit-graph", "stylesheet"),
    Input("circuit-selected-node", "data"),
    Input("circuit-fraction", "value"),
    Input("circuit-style-inputs", "data"),
    Input("circuit-heatmap-scale", "value"),
    *(State(f"circuit-{level}", "value") for level in LEVELS),
)
def show_node(node, fraction, style_inputs, scale, model, task, sweep, k):
    """Show the selected node's details, task heatmap and examples, and highlight it.

    `scale` is the heatmaps' colour scale, `symmetric` or `auto` (an invalid one shows symmetric).
    """
    if scale not in HEATMAP_SCALES:
        scale = SYMMETRIC_SCALE
    try:
        base = _style_base(style_inputs)
    except ValueError as err:
        logger.info("node %s not shown: %s", node, err)
        return message_list([str(err)]), None, None, dash.no_update
    if not node or None in (model, task, sweep, k):
        hint = notice("Click a node in the graph or search for one above.")
        return hint, None, None, graph.build_stylesheet(*base)
    try:
        circuit = load_circuit(model, task, sweep, k)
        key = check_node(circuit, node)
        details = graph.node_details(circuit, str(key))
        heatmap = node_task_heatmap(model, task, sweep, k, str(key))
        examples = node_examples(model, task, sweep, k, str(key), fraction or "0.001")
    except LOAD_ERRORS as err:
        logger.info("node %s of %s/%s/%s/%s not shown: %s", node, model, task, sweep, k, err)
        return message_list([str(err)]), None, None, graph.build_stylesheet(*base)

    example_columns = dbc.Row(
        [
            dbc.Col(
                [
                    html.H6(title),
                    render_heatmap(rows, scale=scale) if rows else notice("none stored"),
                ]
            )
            for title, rows in (("bottom", examples["bottom"]), ("top", examples["top"]))
        ]
    )
    return (
        node_card(details, per_token_href(model, task, sweep, k, str(key))),
        render_heatmap(heatmap, element_id="circuit-task-heatmap", scale=scale),
        example_columns,
        graph.build_stylesheet(*base, selected=str(key)),
    )


def _style_base(style_inputs) -> tuple[float, float, float]:
    """Return (low, high, max_weight) of the graph stylesheet; raise ValueError on a bad value."""
    if not style_inputs:
        return -1e-9, 1e-9, 1.0
    fields = ("low", "high", "max_weight")
    if not isinstance(style_inputs, dict) or not all(
        isinstance(style_inputs.get(field), int | float) for field in fields
    ):
        raise ValueError(
            f"invalid graph style data {style_inputs!r}: expected numbers low, high and max_weight"
        )
    return tuple(float(style_inputs[field]) for field in fields)


def per_token_href(model: str, task: str, sweep: str, k: str, node: str) -> str:
    """Build the per-token page link for `node`, on the circuit's task when the task registry lists it.

    With the task, the link keeps `sweep` and `k`, so the per-token predictions run the same
    circuit. Without it, the per-token page predicts with another task's circuit, so the link
    leaves them out.
    """
    state = ViewState(model=model, node=node, source="text")
    if task in list_task_names():
        state = ViewState(model=model, node=node, source="task", task=task, sweep=sweep, k=k)
    return "/per-token" + to_query_string(state)


@callback(
    Output("circuit-query", "data"),
    *(Input(f"circuit-{level}", "value") for level in LEVELS),
    Input("circuit-threshold", "value"),
    Input("circuit-selected-node", "data"),
    Input("circuit-fraction", "value"),
    Input("circuit-sample", "value"),
    Input("circuit-block", "value"),
    Input("circuit-heatmap-scale", "value"),
)
def serialise_query(
    model, task, sweep, k, threshold, node, fraction, sample, block=None, scale=None
):
    """Serialise the current view into the query string for the address bar."""
    query = query_string_for(
        model=model,
        task=task,
        sweep=sweep,
        k=k,
        threshold=threshold,
        node=node,
        fraction=fraction,
        sample=sample,
        block=block,
        scale=scale,
    )
    return dash.no_update if query is None else query


clientside_callback(
    ClientsideFunction(namespace="url_state", function_name="replace_query"),
    Output("circuit-query-applied", "data"),
    Input("circuit-query", "data"),
    State("circuit-query-applied", "data"),
)
