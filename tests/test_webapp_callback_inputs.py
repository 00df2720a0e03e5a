"""Page callbacks given bad values (wrong JSON types, unknown names) and malformed store files.

A hand-made callback POST or URL can send any of these values. Each must end in an on-page message
naming the value or file (or in no update), never in an exception, which Dash turns into HTTP 500.
"""

import json
import logging

import pytest
from dash import no_update
from tiny_store import MODEL, SWEEP, TASK
from webapp_fixtures import component_text, page_module

from webapp.live import location_width, node_activation_rows

CIRCUIT = (MODEL, TASK, SWEEP, "8")


_page = page_module
_text = component_text


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
        card, heatmap, _, _ = _page("circuit").show_node(
            {"id": 1}, None, None, "symmetric", *CIRCUIT
        )
    assert heatmap is None
    assert "invalid node {'id': 1}" in _text(card)
    assert len(caplog.records) == 1


def test_circuit_string_style_data_is_message(webapp_context, caplog):
    with caplog.at_level(logging.INFO, logger="webapp"):
        card, heatmap, _, stylesheet = _page("circuit").show_node(
            "0.attn.q:0", None, "oops", "symmetric", *CIRCUIT
        )
    assert heatmap is None
    assert stylesheet is no_update
    assert "invalid graph style data 'oops'" in _text(card)
    assert len(caplog.records) == 1


def test_per_token_unknown_task_is_named(webapp_context):
    text = _text(_page("per_token").layout(model=MODEL, task="nosuch"))
    assert "Task 'nosuch' is not available" in text
    assert "Available: " in text
    assert "single_double_quote" in text


def test_models_unknown_metrics_are_named(webapp_context):
    _, chosen, _, messages = _page("models").show_training_curves(
        MODEL, None, ["L0", "nosuch", "other"]
    )
    assert chosen == ["L0"]
    text = _text(messages)
    assert "Unknown metrics 'nosuch', 'other'" in text
    assert "Available: L0, test_xent." in text


def test_circuit_model_without_circuits(store_copy):
    dense = store_copy / "models" / "dense_baseline"
    dense.mkdir()
    config = json.loads((store_copy / "models" / MODEL / "beeg_config.json").read_text())
    (dense / "beeg_config.json").write_text(json.dumps(config))
    text = _text(_page("circuit").layout(model="dense_baseline"))
    assert "model 'dense_baseline' has no circuits in this store" in text
    assert "viz/dense_baseline/ is missing" in text
    assert "not available in this store" not in text


@pytest.mark.parametrize("channel", [1e30, 10**12, -1, 8])
def test_per_token_channel_out_of_range(webapp_context, channel):
    heatmap, _, messages = _page("per_token").show_activations(
        MODEL, "0.attn.q", channel, "text", None, 0, "x"
    )
    assert heatmap is None
    assert "is out of range: 0.attn.q of tiny has channels 0 to 7" in _text(messages)


def test_per_token_last_channel_of_each_location(webapp_context):
    per_token = _page("per_token")
    locations, _ = per_token.fill_locations(MODEL, None)
    for location in locations:
        width = location_width(MODEL, location)
        heatmap, _, messages = per_token.show_activations(
            MODEL, location, width - 1, "text", None, 0, "x"
        )
        assert messages == [], (location, _text(messages))
        assert heatmap is not None
        with pytest.raises(ValueError, match=f"has {width} channels"):
            node_activation_rows(MODEL, f"{location}:{width}", [("text", [0])])


@pytest.mark.parametrize("content", ["{not json", '"not a record"', "{not json\n\n"])
def test_one_line_invalid_progress_is_named(store_copy, content):
    (store_copy / "train_curves" / MODEL / "progress.json").write_text(content)
    _, _, _, messages = _page("models").show_training_curves(MODEL, None, None)
    text = _text(messages)
    assert f"train_curves/{MODEL}/progress.json" in text
    assert "line 1" in text


def test_empty_progress_file_is_named(store_copy):
    (store_copy / "train_curves" / MODEL / "progress.json").write_text("\n")
    _, _, figure, messages = _page("models").show_training_curves(MODEL, None, None)
    assert f"No records in train_curves/{MODEL}/progress.json" in _text(messages)
    assert f"train_curves/{MODEL}/progress.json" in figure.layout.annotations[0].text


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"points": "abc"}', "field 'points' must be a list, got 'abc'"),
        ('{"points": [3]}', "field 'points[0]' must be an object, got 3"),
        ('{"points": [{"k": [1], "loss_per_sequence": 1}]}', "field 'points[0].k'"),
        ('{"points": [{"k": 1, "loss_per_sequence": {}}]}', "field 'points[0].loss_per_sequence'"),
        (
            '{"points": [{"k": 1}]}',
            "field 'points[0].loss_per_sequence' must be a number, got None",
        ),
        ('{"points": [], "k_optim": "many"}', "field 'k_optim' must be an integer, got 'many'"),
        ('{"points": [], "target_loss_per_sequence": []}', "field 'target_loss_per_sequence'"),
    ],
)
def test_malformed_sweep_names_field(store_copy, content, field):
    (store_copy / "viz" / MODEL / TASK / SWEEP / "sweep.json").write_text(content)
    figure = _page("circuit").show_sweep(MODEL, TASK, SWEEP, "8")
    text = figure.layout.annotations[0].text
    assert f"viz/{MODEL}/{TASK}/{SWEEP}/sweep.json" in text
    assert field in text
    assert "TypeError" not in text


def test_sweep_integral_float_k_accepted(store_copy):
    path = store_copy / "viz" / MODEL / TASK / SWEEP / "sweep.json"
    path.write_text('{"points": [{"k": 8.0, "loss_per_sequence": 0.5}], "k_optim": 8}')
    figure = _page("circuit").show_sweep(MODEL, TASK, SWEEP, "8")
    assert list(figure.data[0].x) == [8]


@pytest.mark.parametrize(("channel", "shown"), [(1.5, "channel 1.5"), ("abc", "channel 'abc'")])
def test_per_token_fractional_channel_rejected(webapp_context, channel, shown):
    heatmap, _, messages = _page("per_token").show_activations(
        MODEL, "0.attn.q", channel, "text", None, 0, "x"
    )
    assert heatmap is None
    assert f"{shown} is not a whole number" in _text(messages)


@pytest.mark.parametrize(("sample", "shown"), [(1.5, "test pair 1.5"), ("x", "test pair 'x'")])
def test_per_token_fractional_sample_rejected(webapp_context, sample, shown):
    heatmap, _, messages = _page("per_token").show_activations(
        MODEL, "0.attn.q", 0, "task", TASK, sample, ""
    )
    assert heatmap is None
    assert f"{shown} is not a whole number" in _text(messages)


def test_messages_use_store_relative_paths(store_copy):
    from webapp.components.messages import message_list

    absolute = f"{store_copy}/models/{MODEL}/final_model.pt is empty"
    uri = f"Cannot load {store_copy.as_uri()}/viz/x/viz_data.pt"
    text = _text(message_list([absolute, uri]))

    assert f"models/{MODEL}/final_model.pt is empty" in text
    assert "Cannot load viz/x/viz_data.pt" in text
    assert str(store_copy) not in text


def test_per_token_text_over_url_limit_is_message(webapp_context):
    from webapp.url_state import MAX_TEXT_URL_BYTES

    text = "\u00e9" * (MAX_TEXT_URL_BYTES // 6 + 1)
    per_token = _page("per_token")
    heatmap, _, messages = per_token.show_activations(MODEL, "0.attn.q", 0, "text", None, 0, text)

    assert heatmap is None
    assert f"the limit is {MAX_TEXT_URL_BYTES}" in _text(messages)
    query = per_token.serialise_query(MODEL, "0.attn.q", 0, "text", None, 0, text, None, None, None)
    assert query is no_update
