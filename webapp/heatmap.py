"""Per-token activation heatmaps as plain data: visible token text, values and background colours.

`webapp.components.token_heatmap` renders these rows as Dash components; Dash writes the text as
text nodes, so a token such as `<b>` shows literally and is never parsed as HTML.
"""

from __future__ import annotations

import difflib
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


# Colour scales of the token heatmaps (the circuit page's URL parameter `scale`).
SYMMETRIC_SCALE = "symmetric"  # centred on 0: blue positive, red negative, up to max |value|
AUTO_SCALE = "auto"  # from the minimum (white) to the maximum (dark orange)
HEATMAP_SCALES = (SYMMETRIC_SCALE, AUTO_SCALE)


def token_colour(value: float | None, scale: float) -> str:
    """Background colour: blue for positive, red for negative, opacity |value| / scale.

    None (a position without a value) gets no colour.
    """
    if value is None or scale <= 0:
        return "rgba(0,0,0,0)"
    alpha = min(abs(value) / scale, 1.0)
    rgb = "33,102,172" if value >= 0 else "178,24,43"
    return f"rgba({rgb},{alpha:.3f})"


def ranged_colour(value: float | None, low: float, high: float) -> str:
    """Background colour on the min..max scale: white at `low`, dark orange at `high`."""
    if value is None or high <= low:
        return "rgba(0,0,0,0)"
    alpha = min(max((value - low) / (high - low), 0.0), 1.0)
    return f"rgba(230,85,13,{alpha:.3f})"


def heatmap_row(
    labels: Sequence[str],
    values: Sequence[float | None],
    title: str,
    highlight: int | None = None,
    highlight_note: str = "the position named in the row's title",
) -> dict:
    """Build one heatmap row: a title, the visible token texts, their values and a marked position.

    A value may be None where the row has no value, such as an unaligned token of a difference row.
    The marked position (`highlight`) gets an orange outline, and the legend explains it with
    `highlight_note`.
    """
    if len(labels) != len(values):
        raise ValueError(
            f"heatmap row {title!r} has {len(labels)} tokens but {len(values)} activation values"
        )
    return {
        "title": title,
        "tokens": [visible_whitespace(label) for label in labels],
        "values": [None if v is None else float(v) for v in values],
        "highlight": highlight,
        "highlight_note": None if highlight is None else highlight_note,
    }


def _row_values(rows: Sequence[dict]) -> list[float]:
    return [v for row in rows for v in row["values"] if v is not None]


def shared_scale(rows: Sequence[dict]) -> float:
    """Return the largest |value| over all rows, so all rows of one panel share one colour scale."""
    return max((abs(v) for v in _row_values(rows)), default=0.0)


def shared_range(rows: Sequence[dict]) -> tuple[float, float]:
    """Return the (min, max) value over all rows, (0.0, 0.0) when there are none."""
    values = _row_values(rows)
    return (min(values), max(values)) if values else (0.0, 0.0)


def extreme_positions(values: Sequence[float | None]) -> tuple[int | None, int | None]:
    """Return the positions of the maximum and minimum value (None when the row has no values).

    Ties go to the first position. A row whose values are all equal has no marked extremes. An
    extreme that is exactly 0 is not marked either: every zero token shares it (AbsTopK zeroes most
    channels, and a difference row is 0 wherever the classes agree), so no single token is the extreme.
    """
    numbered = [(value, position) for position, value in enumerate(values) if value is not None]
    if not numbered:
        return None, None
    highest = max(numbered, key=lambda pair: (pair[0], -pair[1]))
    lowest = min(numbered, key=lambda pair: (pair[0], pair[1]))
    if highest[0] == lowest[0]:
        return None, None
    return (
        highest[1] if highest[0] != 0 else None,
        lowest[1] if lowest[0] != 0 else None,
    )


def aligned_difference(
    ids_a: Sequence[int], values_a: Sequence[float], ids_b: Sequence[int], values_b: Sequence[float]
) -> list[float | None]:
    """Return values_a - values_b at each position of sequence a, where the sequences align.

    The two sequences of a task pair differ in a few tokens. They are aligned with difflib: equal
    runs pair up position by position, and so do replaced runs of the same length (e.g. `"`
    against `'`). Tokens inserted in one sequence only get None.
    """
    difference: list[float | None] = [None] * len(ids_a)
    matcher = difflib.SequenceMatcher(None, list(ids_a), list(ids_b), autojunk=False)
    for tag, a_start, a_stop, b_start, b_stop in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and a_stop - a_start == b_stop - b_start):
            for offset in range(a_stop - a_start):
                a, b = a_start + offset, b_start + offset
                difference[a] = float(values_a[a]) - float(values_b[b])
    return difference


def window(length: int, position: int, radius: int) -> tuple[int, int]:
    """Return the [start, stop) range of at most 2 * radius + 1 tokens around `position`."""
    start = max(0, position - radius)
    stop = min(length, position + radius + 1)
    return start, stop
