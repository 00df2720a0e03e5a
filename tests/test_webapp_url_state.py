"""Tests for the URL query schema of the web app (webapp.url_state, webapp.nodes)."""

from urllib.parse import parse_qs, urlsplit

import pytest

from webapp.nodes import NodeKey, describe_node, head_and_channel, parse_node_key
from webapp.url_state import (
    DEFAULT_STATE,
    MAX_COMPARED_NODES,
    MAX_NAME_CHARS,
    MAX_TEXT_URL_BYTES,
    ViewState,
    parse_query,
    text_url_bytes,
    to_query_string,
    update_state,
)


def _query_dict(query_string: str) -> dict:
    """What Dash passes to layout(): one string per key, a list for a repeated key."""
    parsed = parse_qs(urlsplit(query_string).query, keep_blank_values=True)
    return {key: values[0] if len(values) == 1 else values for key, values in parsed.items()}


def test_parse_query_full_state():
    query = {
        "model": "csp_yolo1",
        "task": "single_double_quote",
        "sweep": "prune_v4",
        "k": "k_optim",
        "node": "3.attn.q:17",
        "threshold": "0.25",
        "sample": "4",
        "source": "text",
        "text": "x = '<b>'\n",
        "fraction": "0.01",
        "metrics": "test_xent,L0",
        "position": "12",
    }
    state, messages = parse_query(query)
    assert messages == []
    assert state.model == "csp_yolo1"
    assert state.k == "k_optim"
    assert state.node == "3.attn.q:17"
    assert state.threshold == 0.25
    assert state.sample == 4
    assert state.source == "text"
    assert state.text == "x = '<b>'\n"
    assert state.metrics == ("test_xent", "L0")
    assert state.position == 12


def test_parse_query_empty_is_default():
    state, messages = parse_query({})
    assert state == DEFAULT_STATE
    assert messages == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("model", "../etc"),
        ("model", "a/b"),
        ("model", ".."),
        ("task", "x\\y"),
        ("k", "-1"),
        ("k", "k_best"),
        ("node", "3.attn.z:1"),
        ("node", "3.attn.q:-1"),
        ("node", "3.attn.q"),
        ("threshold", "1.5"),
        ("threshold", "nan"),
        ("threshold", "abc"),
        ("sample", "-2"),
        ("sample", "1.5"),
        ("sample", "abc"),
        ("source", "file"),
        ("fraction", "0.2"),
        ("position", "-1"),
        ("position", "2.5"),
        ("position", "1234567"),
        ("block", "1.attn.q"),
        ("block", "../1.attn"),
        ("block", "attn"),
        ("log", "z"),
        ("log", "x,z"),
        ("nodes", "0.attn.z:2,x"),
        ("nodes", ",".join(f"0.attn.q:{i}" for i in range(9))),
    ],
)
def test_parse_query_rejects_invalid_value(name, value):
    state, messages = parse_query({name: value})
    assert getattr(state, name) == getattr(DEFAULT_STATE, name)
    assert len(messages) == 1
    assert f"Ignored URL parameter {name}=" in messages[0]
    # Python's own conversion errors ("could not convert", "invalid literal") are not shown.
    assert "could not convert" not in messages[0]
    assert "invalid literal" not in messages[0]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("k", "9" * 23, "too large: expected 0 to 999999999 kept nodes"),
        ("k", "-1", "expected a number of kept nodes (0 or more) or 'k_optim'"),
        ("position", "-1", "expected a token position in the text, 0 or more"),
        ("position", "1234567", "too large: a position must be less than the text's length"),
    ],
)
def test_rejected_number_message_names_range(name, value, expected):
    messages = parse_query({name: value})[1]
    assert len(messages) == 1
    assert expected in messages[0]
    assert "whole number" not in messages[0]
    assert "999999." not in messages[0]


def test_parse_query_repeated_key_uses_last():
    state, messages = parse_query({"model": ["first", "second"]})
    assert state.model == "second"
    assert messages == []


def test_parse_query_ignores_unknown_keys():
    state, messages = parse_query({"utm_source": "mail", "model": "m"})
    assert state == ViewState(model="m")
    assert messages == []


@pytest.mark.parametrize(
    "state",
    [
        DEFAULT_STATE,
        ViewState(model="m", task="t_beeg3", sweep="prune_v4", k="16"),
        ViewState(model="m", node="0.mlp.post_act:1021", threshold=0.05, fraction="0.5"),
        ViewState(source="text", text="a b&c=d?e#f\n\tπ <b>", sample=3),
        ViewState(model="m", task="t", sweep="s", k="k_optim", position=0),
        ViewState(metrics=("test_xent", "num_alive_neurons/c_fc/layer_0")),
        ViewState(model="m", block="1.attn"),
        ViewState(model="m", metrics=()),
        ViewState(log=("x", "y")),
        ViewState(log=("y",)),
        ViewState(node="0.attn.q:1", nodes=("0.attn.v:2", "1.mlp.post_act:30")),
    ],
)
def test_query_string_round_trip(state):
    query_string = to_query_string(state)
    parsed, messages = parse_query(_query_dict(query_string))
    assert messages == []
    assert parsed == state


def test_query_string_omits_defaults():
    assert to_query_string(DEFAULT_STATE) == ""
    assert to_query_string(ViewState(model="m")) == "?model=m"


def test_query_string_keeps_node_readable():
    assert to_query_string(ViewState(node="3.attn.q:17")) == "?node=3.attn.q:17"


def test_update_state_checks_values():
    state = update_state(DEFAULT_STATE, model="m", threshold=0.5, sample=2, metrics=["a", "b"])
    assert state == ViewState(model="m", threshold=0.5, sample=2, metrics=("a", "b"))
    with pytest.raises(ValueError, match="invalid threshold=2"):
        update_state(DEFAULT_STATE, threshold=2)
    with pytest.raises(ValueError, match="unknown view-state field 'colour'"):
        update_state(DEFAULT_STATE, colour="red")


def test_update_state_none_resets_to_default():
    state = update_state(ViewState(model="m", node="0.attn.k:1"), node=None, model="")
    assert state == DEFAULT_STATE


def test_parse_node_key_normalises_layer():
    assert parse_node_key(" 03.attn.k:5 ") == NodeKey("3.attn.k", 5)
    assert str(parse_node_key("0.mlp.resid_delta:0")) == "0.mlp.resid_delta:0"
    with pytest.raises(ValueError, match="expected <layer>.<location>:<index>"):
        parse_node_key("0.attn.y:1")


def test_head_and_channel_only_for_qkv():
    assert head_and_channel(NodeKey("1.attn.v", 37), d_head=16) == (2, 5)
    assert head_and_channel(NodeKey("1.mlp.post_act", 37), d_head=16) is None
    assert describe_node(NodeKey("1.attn.q", 17), d_head=16) == "1.attn.q:17 (head 1, channel 1)"


def test_empty_metrics_written_as_none():
    assert to_query_string(ViewState(model="m", metrics=())) == "?model=m&metrics=none"
    assert to_query_string(ViewState(model="m")) == "?model=m"
    assert parse_query({"metrics": "none"})[0].metrics == ()
    assert parse_query({})[0].metrics is None


@pytest.mark.parametrize(
    ("text", "accepted"),
    [
        ("x" * MAX_TEXT_URL_BYTES, True),
        ("x" * (MAX_TEXT_URL_BYTES + 1), False),
        (" " * (MAX_TEXT_URL_BYTES // 3), True),
        (" " * (MAX_TEXT_URL_BYTES // 3 + 1), False),
        ("\U0001f600" * (MAX_TEXT_URL_BYTES // 12), True),
        ("\U0001f600" * (MAX_TEXT_URL_BYTES // 12 + 1), False),
    ],
)
def test_text_limit_counts_url_bytes(text, accepted):
    state, messages = parse_query({"text": text})
    assert (state.text == text) is accepted
    assert (messages == []) is accepted
    if not accepted:
        assert f"the limit is {MAX_TEXT_URL_BYTES}" in messages[0]


def test_bad_node_entry_keeps_the_others():
    state, messages = parse_query({"nodes": "0.attn.q:1,x,1.mlp.post_act:3"})
    assert state.nodes == ("0.attn.q:1", "1.mlp.post_act:3")
    assert len(messages) == 1
    assert messages[0].startswith("Ignored entries of URL parameter nodes: invalid node 'x'")


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("x" * (MAX_TEXT_URL_BYTES + 5), MAX_TEXT_URL_BYTES),
        ("\u00e9" * (MAX_TEXT_URL_BYTES // 6 + 1), MAX_TEXT_URL_BYTES // 6),
        ("ab " * MAX_TEXT_URL_BYTES, 3 * (MAX_TEXT_URL_BYTES // 5)),
    ],
)
def test_long_text_cut_to_limit(text, kept):
    state, messages = parse_query({"text": text})
    assert state.text == text[:kept]
    assert text_url_bytes(state.text) <= MAX_TEXT_URL_BYTES
    assert text_url_bytes(text[: kept + 1]) > MAX_TEXT_URL_BYTES
    assert messages == [
        f"Cut URL parameter text to its first {kept} of {len(text)} characters: it takes "
        f"{text_url_bytes(text)} bytes in the URL and the limit is {MAX_TEXT_URL_BYTES}."
    ]


def test_longest_per_token_url_fits_gunicorn():
    import runpy
    from pathlib import Path

    config = runpy.run_path(str(Path(__file__).resolve().parents[1] / "gunicorn.conf.py"))
    name = "n" * MAX_NAME_CHARS
    state = ViewState(
        model=name,
        task=name,
        sweep=name,
        k="9" * 9,
        node="999.attn.resid_delta:9999999",
        nodes=tuple(f"999.attn.resid_delta:999999{i}" for i in range(MAX_COMPARED_NODES)),
        source="text",
        text="%" * (MAX_TEXT_URL_BYTES // 3),
        sample=10**9 - 1,
        position=999999,
    )
    query = to_query_string(state)
    assert parse_query(_query_dict(query)) == (state, [])

    request_line = f"GET /per-token{query} HTTP/1.1"
    assert len(request_line.encode()) <= config["limit_request_line"] <= 8190


def test_bad_channel_message():
    # The model's own range is checked when the channel is shown; the URL check is only the form.
    for value in ("1.5", "-1", "abc"):
        state, messages = parse_query({"channel": value})
        assert state.channel == DEFAULT_STATE.channel
        assert any(value in message and "whole channel number" in message for message in messages)
        assert not any("999999" in message for message in messages)
