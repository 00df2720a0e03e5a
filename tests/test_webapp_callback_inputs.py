"""Page callbacks given values of the wrong JSON type or unknown values, as a hand-made POST sends.

Each case must end in an on-page message naming the value (or no update) and one log line, never
in an exception, which Dash turns into HTTP 500.
"""

import importlib
import logging

from dash import no_update
from tiny_store import MODEL, SWEEP, TASK

CIRCUIT = (MODEL, TASK, SWEEP, "8")


def _page(name: str):
    """A page module as Dash imported it (importing it again would register callbacks twice)."""
    return importlib.import_module(f"webapp.pages.{name}")


def _text(component) -> str:
    """All text inside a Dash component tree, joined by spaces."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(_text(child) for child in component)
    return _text(getattr(component, "children", None))


def test_per_token_list_text_is_message(webapp_context, caplog):
    with caplog.at_level(logging.INFO, logger="webapp"):
        heatmap, _, messages = _page("per_token").show_activations(
            MODEL, "0.attn.q", 0, "text", None, 0, ["x", 1]
        )
    assert heatmap is None
    assert "invalid text ['x', 1]" in _text(messages)
    assert len(caplog.records) == 1


def test_circuit_dict_node_is_message(webapp_context, caplog):
    with caplog.at_level(logging.INFO, logger="webapp"):
        card, heatmap, _, _ = _page("circuit").show_node({"id": 1}, None, None, *CIRCUIT)
    assert heatmap is None
    assert "invalid node {'id': 1}" in _text(card)
    assert len(caplog.records) == 1


def test_circuit_string_style_data_is_message(webapp_context, caplog):
    with caplog.at_level(logging.INFO, logger="webapp"):
        card, heatmap, _, stylesheet = _page("circuit").show_node(
            "0.attn.q:0", None, "oops", *CIRCUIT
        )
    assert heatmap is None
    assert stylesheet is no_update
    assert "invalid graph style data 'oops'" in _text(card)
    assert len(caplog.records) == 1
