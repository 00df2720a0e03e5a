"""Layout pieces of the circuit page: selectors, loss figures, the graph and the node panel.

Component ids are the ones the callbacks in `webapp.pages.circuit` use.
"""

from __future__ import annotations

import dash_bootstrap_components as dbc
import dash_cytoscape as cyto
from dash import dcc, html

from webapp import (
    export,  # noqa: F401  (importing it registers the JSON download callback)
    graph,
)
from webapp.components.attention_panel import attention_panel
from webapp.figures import empty_figure
from webapp.heatmap import AUTO_SCALE, SYMMETRIC_SCALE
from webapp.selection import LEVELS
from webapp.url_state import EXAMPLE_FRACTIONS


def _selector(level: str, options: list[str], value: str | None) -> dbc.Col:
    return dbc.Col(
        [
            dbc.Label(level, html_for=f"circuit-{level}"),
            dcc.Dropdown(
                id=f"circuit-{level}",
                options=options,
                value=value,
                clearable=False,
                placeholder=f"no {level} available",
            ),
        ],
        md=3,
    )


def circuit_controls(
    options: dict[str, list[str]],
    values: dict[str, str | None],
    threshold: float,
    node: str | None,
    block: str | None = None,
) -> list:
    """Build the model/task/sweep/k selectors, the edge threshold slider, the node search and
    the block view selector."""
    threshold_column = dbc.Col(
        [
            dbc.Label("edge threshold (fraction of the largest |weight|)"),
            dcc.Slider(
                id="circuit-threshold",
                min=0,
                max=1,
                step=0.01,
                value=threshold,
                marks={0: "0", 0.5: "0.5", 1: "1"},
            ),
        ],
        md=4,
    )
    # The URL's block is an option from the start, because Dash 4's Dropdown resets a value that
    # is missing from its options. The circuit's blocks replace the options once it loads.
    block_column = dbc.Col(
        [
            dbc.Label("block view", html_for="circuit-block"),
            dbc.InputGroup(
                [
                    dcc.Dropdown(
                        id="circuit-block",
                        options=[block] if block else [],
                        value=block,
                        clearable=True,
                        placeholder="whole circuit",
                        style={"flex": "1"},
                    ),
                    dbc.Button(
                        "Whole circuit",
                        id="circuit-block-reset",
                        size="sm",
                        color="secondary",
                        outline=True,
                    ),
                ],
                className="flex-nowrap",
            ),
        ],
        md=4,
    )
    search_column = dbc.Col(
        [
            dbc.Label("node", html_for="circuit-node"),
            dcc.Dropdown(
                id="circuit-node",
                value=node,
                clearable=False,
                placeholder="search or click a node",
            ),
        ],
        md=4,
    )
    return [
        dbc.Row([_selector(level, options[level], values[level]) for level in LEVELS]),
        dbc.Row([threshold_column, block_column, search_column], className="my-2"),
    ]


def loss_panel() -> list:
    """Build the circuit summary line and the loss figures, filled by callbacks."""
    return [
        dcc.Loading(html.Div(id="circuit-summary")),
        dcc.Graph(
            id="circuit-loss-figure",
            figure=empty_figure("Loading the circuit ..."),
            config={"displayModeBar": False},
        ),
        dcc.Graph(
            id="circuit-sweep-figure",
            figure=empty_figure(""),
            config={"displayModeBar": False},
        ),
    ]


def graph_panel() -> list:
    """Build the cytoscape graph (elements come from a callback), its legend, PNG and JSON export."""
    legend = html.Div(id="circuit-legend", className="text-muted small")
    download = dbc.Button(
        "Download PNG",
        id="circuit-download",
        size="sm",
        color="secondary",
        outline=True,
    )
    download_json = dbc.Button(
        "Download JSON",
        id="circuit-json-button",
        size="sm",
        color="secondary",
        outline=True,
        className="ms-1",
    )
    return [
        dcc.Download(id="circuit-json-download"),
        html.Div(id="circuit-json-messages"),
        cyto.Cytoscape(
            id="circuit-graph",
            elements=[],
            layout={"name": "preset", "fit": True, "padding": graph.FIT_PADDING},
            stylesheet=graph.build_stylesheet(-1e-9, 1e-9, 1.0),
            # A preset layout only places nodes, so re-running it when elements change is
            # cheap; it also fits the new circuit into the view.
            autoRefreshLayout=True,
            autoungrabify=True,
            boxSelectionEnabled=False,
            minZoom=0.02,
            maxZoom=graph.MAX_ZOOM,
            style=graph.graph_style(graph.MIN_VIEW_HEIGHT),
        ),
        dbc.Row(
            [
                dbc.Col(legend, md=7),
                dbc.Col(html.Div(id="circuit-hover", className="small"), md=3),
                dbc.Col([download, download_json], md=2, className="text-end"),
            ],
            className="mb-3",
        ),
        html.Div(id="circuit-top-nodes"),
    ]


def node_panel(fraction: str, sample: int, scale: str = SYMMETRIC_SCALE) -> list:
    """Build the selected node's card, task heatmap, attention panel (for q/k/v nodes) and
    pretraining examples, filled by callbacks."""
    scale_toggle = dbc.RadioItems(
        id="circuit-heatmap-scale",
        options=[
            {"label": "zero-centred colour scale", "value": SYMMETRIC_SCALE},
            {"label": "min..max colour scale", "value": AUTO_SCALE},
        ],
        value=scale,
        inline=True,
        className="small",
    )
    return [
        dbc.Row(
            [
                dbc.Col(html.Div(id="circuit-node-card"), md=4),
                dbc.Col(
                    [
                        html.H5("Activations on the task samples"),
                        scale_toggle,
                        dcc.Loading(html.Div(id="circuit-node-heatmap")),
                    ],
                    md=8,
                ),
            ]
        ),
        *attention_panel(sample),
        html.H5("Pretraining examples", className="mt-3"),
        dbc.RadioItems(
            id="circuit-fraction",
            options=[
                {"label": f"{float(f) * 100:g}% quantile", "value": f} for f in EXAMPLE_FRACTIONS
            ],
            value=fraction,
            inline=True,
        ),
        dcc.Loading(html.Div(id="circuit-node-examples")),
    ]
