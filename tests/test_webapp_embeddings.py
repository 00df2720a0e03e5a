"""The embeddings page: top/bottom tokens, histogram, position heatmap, and bad input."""

import importlib

import pytest
import torch
from tiny_store import MODEL

from webapp.embeddings import position_heatmap, symlog
from webapp.url_state import parse_query, to_query_string, update_state


def embeddings_page():
    return importlib.import_module("webapp.pages.embeddings")


def test_top_tokens_sorted_and_match_checkpoint(webapp_context, webapp_store):
    from webapp.embeddings import TOP_TOKENS, embedding_view

    view = embedding_view(MODEL, 3)
    state = torch.load(webapp_store / f"models/{MODEL}/final_model.pt", weights_only=True)
    wte = state["transformer.wte.weight"]
    wpe = state["transformer.wpe.weight"]

    top_weights = [row["weight"] for row in view["top"]]
    assert len(view["top"]) == TOP_TOKENS
    assert top_weights == sorted(top_weights, reverse=True)
    assert top_weights[0] == pytest.approx(float(wte[:, 3].max()))
    assert view["bottom"][0]["weight"] == pytest.approx(float(wte[:, 3].min()))
    assert len(view["weights"]) == wte.shape[0]
    assert len(view["positions"]) == wpe.shape[0]
    assert len(view["positions"][0]) == wpe.shape[1]


def test_channel_out_of_range_rejected(webapp_context):
    from webapp.embeddings import embedding_view

    with pytest.raises(ValueError, match="channel 100000 is out of range"):
        embedding_view(MODEL, 100000)


def test_unknown_model_rejected_before_reading(webapp_context):
    from registry.catalogue import CatalogueError
    from webapp.embeddings import embedding_view

    with pytest.raises(CatalogueError, match="nosuch"):
        embedding_view("nosuch", 0)


def test_callback_fills_tables_and_figures(webapp_context):
    top, bottom, histogram, positions, messages = embeddings_page().show_channel(MODEL, 1)

    assert messages == []
    assert "top 20 tokens" in str(top)
    assert histogram.data[0].type == "histogram"
    assert positions.data[0].type == "heatmap"


def test_callback_reports_bad_channel(webapp_context):
    *_, messages = embeddings_page().show_channel(MODEL, -5)

    assert "Cannot show channel -5" in str(messages)


def test_channel_round_trips_through_url():
    state = update_state(parse_query({})[0], model="m", channel=7)

    assert to_query_string(state) == "?model=m&channel=7"
    assert parse_query({"channel": "7"})[0].channel == 7
    assert parse_query({"channel": "-1"})[1]


def test_symlog_is_odd_and_monotonic():
    assert symlog(0.0, 1.0) == 0.0
    assert symlog(-2.0, 1.0) == -symlog(2.0, 1.0)
    assert symlog(10.0, 1.0) > symlog(1.0, 1.0) > 0


def test_position_colour_bar_names_weights():
    # Median |weight| 0.01, so the colours are linear within 0.01 and logarithmic beyond.
    positions = [[0.01, -0.01, 0.25], [-0.25, 0.01, 0.0]]
    colour_bar = position_heatmap(positions, channel=0).data[0].colorbar
    ticks = dict(zip(colour_bar.ticktext, colour_bar.tickvals, strict=True))

    # Each label is a weight, placed where symlog puts that weight on the colour scale.
    assert ticks["0"] == 0.0
    assert ticks["0.2"] == pytest.approx(symlog(0.2, 0.01))
    assert ticks["\u22120.2"] == pytest.approx(symlog(-0.2, 0.01))
    assert ticks["0.05"] == pytest.approx(symlog(0.05, 0.01))
    assert list(colour_bar.tickvals) == sorted(colour_bar.tickvals)
    assert max(colour_bar.tickvals) <= symlog(0.25, 0.01)
    assert colour_bar.title.text == "weight"


def test_token_table_shows_whitespace():
    row = {"token": " x>\n\t", "token_id": 5, "weight": 1.0}
    table = embeddings_page().token_table("top", [row])
    body = table.children[1].children[1]
    code = body.children[0].children[0].children

    assert code.children == "\u00b7x>\u21b5\u2192"


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (None, "Enter a residual channel number"),
        (1.5, "channel 1.5 is not a whole number"),
        ("abc", "channel 'abc' is not a whole number"),
    ],
)
def test_callback_names_invalid_channel(webapp_context, channel, expected):
    top, *_, messages = embeddings_page().show_channel(MODEL, channel)

    assert top == []
    assert expected in str(messages)
    assert "int()" not in str(messages)


def test_callback_accepts_integral_float_channel(webapp_context):
    *_, histogram, _, messages = embeddings_page().show_channel(MODEL, 2.0)

    assert messages == []
    assert histogram.layout.title.text.endswith("channel 2")


def test_empty_channel_not_written_to_url(webapp_context):
    from dash import no_update

    serialise = embeddings_page().serialise_query
    assert serialise(MODEL, None) is no_update
    assert serialise(MODEL, "") is no_update
    assert serialise(MODEL, 2) == f"?model={MODEL}&channel=2"
