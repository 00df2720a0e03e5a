"""The URL query string of every page: one schema that parses, validates and serialises view state.

Dash calls a page's `layout(**query)` with every query parameter as a string (a repeated key as a list,
unknown keys included). `parse_query` turns that into a `ViewState`, dropping each invalid value with a
message for the page. The values are only checked for form here. Before any file is read,
`webapp.selection` checks model, task, sweep and k against the store catalogue, and the circuit
page checks the node against the circuit. `to_query_string` is the inverse, so a copied URL restores the view.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import quote, urlencode

from webapp.heatmap import HEATMAP_SCALES
from webapp.nodes import parse_node_key

logger = logging.getLogger(__name__)

# Maximum length of the per-token text once URL-encoded as `to_query_string` writes it: a letter or
# digit takes 1 byte, a space or symbol 3 and a non-ASCII character up to 12. The whole request line
# of the longest valid per-token URL must stay within gunicorn's `limit_request_line`
# (gunicorn.conf.py, 8190 bytes, gunicorn's maximum); tests/test_webapp_url_state.py checks that.
# The token limit is the model's block_size, checked after tokenizing.
MAX_TEXT_URL_BYTES = 6000
MAX_NAME_CHARS = 200
SAMPLE_SOURCES = ("task", "text")
EXAMPLE_FRACTIONS = ("0.001", "0.01", "0.1", "0.5")
# `metrics=none` keeps an empty curve selection; without a metrics parameter the usual curves show.
NO_METRICS = "none"
LOG_AXES = ("x", "y")
MAX_COMPARED_NODES = 8  # nodes the per-token page shows besides `node`

# Model, task and sweep names are folder names in the store: letters, digits, '_', '-', '.'.
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
MAX_K_DIGITS = 9
_K_RE = re.compile(rf"\d{{1,{MAX_K_DIGITS}}}|k_optim")
_QUERY_SAFE = ":,"  # characters left unescaped in query values


@dataclass(frozen=True)
class ViewState:
    """Everything a page shows that the user chose; None means 'not chosen'."""

    model: str | None = None
    task: str | None = None
    sweep: str | None = None
    k: str | None = None
    node: str | None = None
    threshold: float = 0.0
    sample: int = 0
    source: str = "task"
    text: str = ""
    fraction: str = "0.001"
    # Curves of the models page; None: the usual ones, (): none (written as `metrics=none`).
    metrics: tuple[str, ...] | None = None
    channel: int = 0  # residual-stream channel on the embeddings page
    position: int | None = None  # token position of the per-token page's predictions; None: last
    block: str | None = None  # the circuit page's single-block view, e.g. `1.attn`; None: all
    scale: str = "symmetric"  # colour scale of the circuit page's heatmaps: symmetric or auto
    log: tuple[str, ...] = ()  # training-curve axes on a log scale: "x", "y" or both
    nodes: tuple[str, ...] = ()  # nodes the per-token page shows besides `node`


DEFAULT_STATE = ViewState()


def _parse_name(value: str) -> str:
    if len(value) > MAX_NAME_CHARS or not _NAME_RE.fullmatch(value) or value in (".", ".."):
        raise ValueError("expected a store folder name (letters, digits, '_', '-', '.')")
    return value


def _parse_k(value: str) -> str:
    if re.fullmatch(r"[0-9]+", value) and not _K_RE.fullmatch(value):
        raise ValueError(
            f"too large: expected 0 to {MAX_K_DIGITS * '9'} kept nodes (the k selector lists "
            "the ks stored for the circuit) or 'k_optim'"
        )
    if not _K_RE.fullmatch(value):
        raise ValueError("expected a number of kept nodes (0 or more) or 'k_optim'")
    return value


def _parse_node(value: str) -> str:
    return str(parse_node_key(value))


def _parse_threshold(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise ValueError("expected a number from 0 to 1 (a fraction of the largest edge weight)")
    return number


def whole_number(value: Any, name: str) -> int:
    """Convert a control or URL value to an int; raise ValueError naming a value that is not one.

    Accepts an int, a float with no fractional part (number inputs send 2.0) and a string of
    digits, so `1.5` is rejected instead of being truncated to 1. Callers check the range.
    """
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d{1,9}", value.strip()):
        number = int(value)
    else:
        number = None
    if number is None:
        raise ValueError(f"{name} {value!r} is not a whole number; enter one such as 0 or 3")
    return number


def _parse_sample(value: str) -> int:
    if not re.fullmatch(r"\d{1,9}", value):
        raise ValueError("expected a task sample index >= 0 (a whole number)")
    return int(value)


def _parse_source(value: str) -> str:
    if value not in SAMPLE_SOURCES:
        raise ValueError(f"expected one of {', '.join(SAMPLE_SOURCES)}")
    return value


def text_url_bytes(text: str) -> int:
    """Return the length of `text` URL-encoded as a query value of `to_query_string`."""
    return len(quote(text, safe=_QUERY_SAFE))


def check_text(value: str) -> str:
    """Return the per-token `value`; raise ValueError when its URL form exceeds the limit."""
    size = text_url_bytes(value)
    if size > MAX_TEXT_URL_BYTES:
        raise ValueError(
            f"the text takes {size} bytes in the URL; the limit is {MAX_TEXT_URL_BYTES} "
            "(a letter or digit takes 1 byte, a space or symbol 3, a non-ASCII character up to "
            "12), so shorten it"
        )
    return value


def cut_text(value: str) -> str:
    """Return the longest prefix of `value` whose URL form fits in MAX_TEXT_URL_BYTES."""
    low, high = 0, len(value)  # the answer's length lies in [low, high]
    while low < high:
        middle = (low + high + 1) // 2
        if text_url_bytes(value[:middle]) <= MAX_TEXT_URL_BYTES:
            low = middle
        else:
            high = middle - 1
    return value[:low]


def _parse_fraction(value: str) -> str:
    if value not in EXAMPLE_FRACTIONS:
        raise ValueError(f"expected one of {', '.join(EXAMPLE_FRACTIONS)}")
    return value


def _parse_metrics(value: str) -> tuple[str, ...]:
    if value == NO_METRICS:
        return ()
    names = tuple(name for name in value.split(",") if name)
    if len(names) > 12 or any(len(name) > MAX_NAME_CHARS for name in names):
        raise ValueError("expected at most 12 comma-separated metric names")
    return names


def _parse_channel(value: str) -> int:
    if not re.fullmatch(r"\d{1,6}", value):
        raise ValueError("expected a whole channel number, 0 or more (e.g. 0)")
    return int(value)


def _parse_position(value: str) -> int:
    # The text's length is only known after tokenizing, so the prediction panel checks the upper end.
    if re.fullmatch(r"[0-9]{7,}", value):
        raise ValueError(
            "too large: a position must be less than the text's length in tokens, which is at "
            "most the model's block_size"
        )
    if not re.fullmatch(r"\d{1,6}", value):
        raise ValueError(
            "expected a token position in the text, 0 or more (leave it out for the last token)"
        )
    return int(value)


def _parse_block(value: str) -> str:
    if not re.fullmatch(r"\d{1,3}\.(attn|mlp)", value):
        raise ValueError("expected a block as <layer>.attn or <layer>.mlp, e.g. 1.attn")
    return value


def _parse_scale(value: str) -> str:
    if value not in HEATMAP_SCALES:
        raise ValueError(f"expected one of {', '.join(HEATMAP_SCALES)}")
    return value


def _parse_log(value: str) -> tuple[str, ...]:
    axes = tuple(axis for axis in LOG_AXES if axis in value.split(","))
    if not axes or set(value.split(",")) - set(LOG_AXES):
        raise ValueError("expected x, y or x,y (the training-curve axes on a log scale)")
    return axes


def _parse_nodes(value: str) -> tuple[str, ...]:
    keys = [str(parse_node_key(text)) for text in value.split(",") if text]
    if len(keys) > MAX_COMPARED_NODES:
        raise ValueError(f"expected at most {MAX_COMPARED_NODES} comma-separated nodes")
    return tuple(dict.fromkeys(keys))


def _split_nodes(value: str) -> tuple[list[str], list[str]]:
    """Split a `nodes` value into its valid entries and one message per invalid entry."""
    valid, rejected = [], []
    for text in value.split(","):
        if not text:
            continue
        try:
            valid.append(str(parse_node_key(text)))
        except ValueError as err:
            rejected.append(str(err))
    return valid, rejected


_PARSERS: dict[str, Callable[[str], Any]] = {
    "model": _parse_name,
    "task": _parse_name,
    "sweep": _parse_name,
    "k": _parse_k,
    "node": _parse_node,
    "threshold": _parse_threshold,
    "sample": _parse_sample,
    "source": _parse_source,
    "text": check_text,
    "fraction": _parse_fraction,
    "metrics": _parse_metrics,
    "channel": _parse_channel,
    "position": _parse_position,
    "block": _parse_block,
    "scale": _parse_scale,
    "log": _parse_log,
    "nodes": _parse_nodes,
}
assert set(_PARSERS) == {f.name for f in fields(ViewState)}


def parse_query(query: Mapping[str, Any]) -> tuple[ViewState, list[str]]:
    """Coerce query parameters into a ViewState; return it with one message per rejected value.

    A repeated key uses its last value. Unknown keys are ignored, because Dash passes every parameter
    of the URL, including ones other tools add.
    """
    values: dict[str, Any] = {}
    messages: list[str] = []
    for name, parse in _PARSERS.items():
        raw = query.get(name)
        if isinstance(raw, list | tuple):
            raw = raw[-1] if raw else None
        if raw is None or raw == "":
            continue
        if name == "text" and text_url_bytes(str(raw)) > MAX_TEXT_URL_BYTES:
            # Keep what fits rather than drop the whole text, so a long link still shows it.
            values[name] = cut_text(str(raw))
            messages.append(
                f"Cut URL parameter text to its first {len(values[name])} of {len(str(raw))} "
                f"characters: it takes {text_url_bytes(str(raw))} bytes in the URL and the limit "
                f"is {MAX_TEXT_URL_BYTES}."
            )
            continue
        if name == "nodes":
            # Keep the valid nodes of a list, so one bad entry does not drop the others.
            valid, rejected = _split_nodes(str(raw))
            if rejected and valid:
                messages.append(f"Ignored entries of URL parameter nodes: {'; '.join(rejected)}.")
                raw = ",".join(valid)
        try:
            values[name] = parse(str(raw))
        except ValueError as err:
            shown = str(raw) if len(str(raw)) <= 60 else str(raw)[:60] + "..."
            messages.append(f"Ignored URL parameter {name}={shown!r}: {err}.")
    if messages:
        logger.info("rejected URL parameters: %s", messages)
    return ViewState(**values), messages


def to_query_string(state: ViewState) -> str:
    """Serialise the fields that differ from the defaults as `?a=1&b=2` ('' when none do)."""
    pairs = []
    for field in fields(ViewState):
        value = getattr(state, field.name)
        if value == getattr(DEFAULT_STATE, field.name) or value is None:
            continue
        if isinstance(value, tuple):
            value = ",".join(value) or (NO_METRICS if field.name == "metrics" else "")
        elif isinstance(value, float):
            value = f"{value:g}"
        pairs.append((field.name, str(value)))
    if not pairs:
        return ""
    return "?" + urlencode(pairs, quote_via=quote, safe=_QUERY_SAFE)


def update_state(state: ViewState, **changes: Any) -> ViewState:
    """Return a copy of `state` with `changes` applied after the same checks as `parse_query`.

    Raises ValueError naming the field and the bad value, so callbacks never store an invalid state.
    """
    checked: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in _PARSERS:
            raise ValueError(f"unknown view-state field {name!r}; known: {', '.join(_PARSERS)}")
        # An empty control: dcc.Checklist sends [] when every box is unticked.
        if value is None or value == "" or (isinstance(value, list | tuple) and not value):
            checked[name] = getattr(DEFAULT_STATE, name)
            continue
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        try:
            checked[name] = _PARSERS[name](str(value))
        except ValueError as err:
            raise ValueError(f"invalid {name}={value!r}: {err}") from err
    return replace(state, **checked)


def query_string_for(**values: Any) -> str | None:
    """Serialise a page's current control values into a query string, or None if one is invalid."""
    try:
        state = update_state(parse_query({})[0], **values)
    except ValueError as err:
        logger.info("view state not written to the URL: %s", err)
        return None
    return to_query_string(state)
