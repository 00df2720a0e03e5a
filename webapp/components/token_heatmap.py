"""Render heatmap rows from `webapp.heatmap` as Dash components (text nodes, never raw HTML)."""

from __future__ import annotations

from dash import html

from webapp.heatmap import shared_scale, token_colour


def render_heatmap(rows: list[dict], element_id: str | None = None) -> html.Div:
    """Render one block per row: its title and one span per token, on a colour scale shared by all rows."""
    scale = shared_scale(rows)
    blocks = []
    for row in rows:
        spans = []
        for position, (token, value) in enumerate(zip(row["tokens"], row["values"], strict=True)):
            class_name = "token"
            if position == row.get("highlight"):
                class_name += " token-marked"
            spans.append(
                html.Span(
                    token,
                    className=class_name,
                    title=f"position {position}: {value:.4g}",
                    style={"backgroundColor": token_colour(value, scale)},
                )
            )
        blocks.append(
            html.Div(
                [html.Div(row["title"], className="heatmap-title"), html.Pre(spans)],
                className="heatmap-row",
            )
        )
    footer = html.Div(f"colour scale: |activation| up to {scale:.4g}", className="heatmap-scale")
    props = {"id": element_id} if element_id else {}
    return html.Div([*blocks, footer], className="token-heatmap", **props)
