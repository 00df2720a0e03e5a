"""The details card of one circuit node: location, head/channel, ablation delta, in/out edges."""

from __future__ import annotations

import dash_bootstrap_components as dbc
from dash import dcc, html

EDGES_SHOWN = 25  # edges listed per direction, largest |weight| first


def _edge_list(title: str, edges: list[tuple[str, float]]) -> html.Div:
    if not edges:
        return html.Div([html.H6(title), html.Div("none", className="text-muted")])
    items = [html.Li(f"{node}  {weight:+.4g}") for node, weight in edges[:EDGES_SHOWN]]
    more = len(edges) - EDGES_SHOWN
    if more > 0:
        items.append(html.Li(f"... and {more} more", className="text-muted"))
    return html.Div([html.H6(f"{title} ({len(edges)})"), html.Ul(items, className="edge-list")])


def node_card(details: dict, per_token_href: str | None = None) -> dbc.Card:
    """Render the dict that `webapp.graph.node_details` returns as a card.

    `per_token_href` links to the per-token page for this node when given.
    """
    rows = [("location", details["location"]), ("index", str(details["index"]))]
    if details["head"] is not None:
        rows += [("head", str(details["head"])), ("channel in head", str(details["channel"]))]
    importance = details["importance"]
    rows.append(
        (
            "ablation delta",
            "not stored" if importance is None else f"{importance:+.4f} (task loss per sequence)",
        )
    )
    definitions = []
    for term, value in rows:
        definitions += [html.Dt(term, className="col-5"), html.Dd(value, className="col-7")]
    return dbc.Card(
        dbc.CardBody(
            [
                html.H5(details["id"], className="card-title", id="node-card-title"),
                html.Dl(definitions, className="row mb-2"),
                (
                    dcc.Link("Open in the per-token view", href=per_token_href)
                    if per_token_href
                    else None
                ),
                dbc.Row(
                    [
                        dbc.Col(_edge_list("input edges", details["in_edges"])),
                        dbc.Col(_edge_list("output edges", details["out_edges"])),
                    ]
                ),
            ]
        ),
        className="node-card mb-3",
    )
