"""Render heatmap rows from `webapp.heatmap` as Dash components (text nodes, never raw HTML)."""

from __future__ import annotations

from dash import html

from webapp.heatmap import (
    AUTO_SCALE,
    SYMMETRIC_SCALE,
    extreme_positions,
    ranged_colour,
    shared_range,
    shared_scale,
    token_colour,
)


def _span(token: str, position: int, value: float | None, colour: str, classes: list[str]):
    shown = "no aligned token" if value is None else f"{value:.4g}"
    marks = {"token-max": " (max of the row)", "token-min": " (min of the row)"}
    note = "".join(text for name, text in marks.items() if name in classes)
    return html.Span(
        token,
        className=" ".join(["token", *classes]),
        title=f"position {position}: {shown}{note}",
        style={"backgroundColor": colour},
    )


def render_heatmap(
    rows: list[dict], element_id: str | None = None, scale: str = SYMMETRIC_SCALE
) -> html.Div:
    """Render one block per row: its title and one span per token, on a colour scale shared by all rows.

    `scale` is SYMMETRIC_SCALE (centred on 0, up to the largest |value|) or AUTO_SCALE (min..max).
    The maximum and minimum token of each row get the classes `token-max` and `token-min`, which
    the style sheet marks with a triangle. A row's `highlight` position gets `token-marked`, an
    orange outline that the legend explains with the row's `highlight_note`.
    """
    if scale not in (SYMMETRIC_SCALE, AUTO_SCALE):
        raise ValueError(
            f"invalid heatmap scale {scale!r}; expected {SYMMETRIC_SCALE} or {AUTO_SCALE}"
        )
    largest = shared_scale(rows)
    low, high = shared_range(rows)

    blocks = []
    for row in rows:
        highest, lowest = extreme_positions(row["values"])
        spans = []
        for position, (token, value) in enumerate(zip(row["tokens"], row["values"], strict=True)):
            classes = []
            if position == row.get("highlight"):
                classes.append("token-marked")
            if position == highest:
                classes.append("token-max")
            if position == lowest:
                classes.append("token-min")
            if scale == AUTO_SCALE:
                colour = ranged_colour(value, low, high)
            else:
                colour = token_colour(value, largest)
            spans.append(_span(token, position, value, colour, classes))
        blocks.append(
            html.Div(
                [html.Div(row["title"], className="heatmap-title"), html.Pre(spans)],
                className="heatmap-row",
            )
        )

    if scale == AUTO_SCALE:
        legend = f"colour scale: min {low:.4g} (white) to max {high:.4g} (orange)"
    else:
        legend = f"colour scale: centred on 0, |activation| up to {largest:.4g}"
    legend += "; \u25b2 marks the max and \u25bc the min token of each row"
    notes = dict.fromkeys(row["highlight_note"] for row in rows if row.get("highlight_note"))
    for note in notes:
        legend += f"; an orange outline marks {note}"
    footer = html.Div(legend, className="heatmap-scale")
    props = {"id": element_id} if element_id else {}
    return html.Div([*blocks, footer], className="token-heatmap", **props)
