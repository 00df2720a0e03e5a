"""Per-token activation heatmaps as plain data: visible token text, values and background colours.

`webapp.components.token_heatmap` renders these rows as Dash components; Dash writes the text as
text nodes, so a token such as `<b>` shows literally and is never parsed as HTML.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

# Visible marks for whitespace characters inside a token.
_VISIBLE_WHITESPACE = {" ": "\u00b7", "\t": "\u2192", "\r": "\u240d", "\n": "\u21b5\n"}


def visible_whitespace(label: str) -> str:
    """Replace spaces, tabs and carriage returns with visible marks; keep a newline after '↵'."""
    return "".join(_VISIBLE_WHITESPACE.get(char, char) for char in label)


def plotly_token_text(label: str) -> str:
    """Make a token label safe for plotly text, which renders tags such as `<b>` as markup.

    Whitespace gets visible marks (a newline becomes a lone '↵', because plotly breaks lines only
    at `<br>`), and `&`, `<` and `>` become entities, which plotly shows as the characters.
    """
    return html.escape(visible_whitespace(label).replace("\n", ""), quote=False)


def token_colour(value: float, scale: float) -> str:
    """Background colour: blue for positive, red for negative, opacity |value| / scale."""
    if scale <= 0:
        return "rgba(0,0,0,0)"
    alpha = min(abs(value) / scale, 1.0)
    rgb = "33,102,172" if value >= 0 else "178,24,43"
    return f"rgba({rgb},{alpha:.3f})"


def heatmap_row(
    labels: Sequence[str], values: Sequence[float], title: str, highlight: int | None = None
) -> dict:
    """Build one heatmap row: a title, the visible token texts, their values and a marked position."""
    if len(labels) != len(values):
        raise ValueError(
            f"heatmap row {title!r} has {len(labels)} tokens but {len(values)} activation values"
        )
    return {
        "title": title,
        "tokens": [visible_whitespace(label) for label in labels],
        "values": [float(v) for v in values],
        "highlight": highlight,
    }


def shared_scale(rows: Sequence[dict]) -> float:
    """Return the largest |value| over all rows, so all rows of one panel share one colour scale."""
    return max((abs(v) for row in rows for v in row["values"]), default=0.0)


def window(length: int, position: int, radius: int) -> tuple[int, int]:
    """Return the [start, stop) range of at most 2 * radius + 1 tokens around `position`."""
    start = max(0, position - radius)
    stop = min(length, position + radius + 1)
    return start, stop
