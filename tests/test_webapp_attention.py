"""The circuit page's attention panel on the tiny store: head and channel patterns of q/k/v nodes.

Expected values come from running the tiny model directly and recomputing the attention by hand
from the recorded q, k, v, so a wrong head, channel, scale or mask in the app fails here.
"""

import math

import pytest
import torch
from dash import no_update
from tiny_store import MODEL, SWEEP, TASK
from webapp_fixtures import component_text, page_module

CIRCUIT = (MODEL, TASK, SWEEP, "8")
D_HEAD = 4  # tiny_store.CONFIG


def _panel():
    from webapp.components import attention_panel

    return attention_panel


def _kept(webapp_store, location: str) -> list[int]:
    viz = torch.load(webapp_store / f"viz/{MODEL}/{TASK}/{SWEEP}/8/viz_data.pt", weights_only=True)
    return viz["circuit_data"][location].tolist()


def _recorded(webapp_store, sample: int, layer: int) -> dict:
    """Record q, k, v and y of `layer` on stored task sample `sample`, running the model directly."""
    from inference.gpt import load_model
    from inference.hook_utils import hook_recorder

    viz = torch.load(webapp_store / f"viz/{MODEL}/{TASK}/{SWEEP}/8/viz_data.pt", weights_only=True)
    length = int(viz["task_sample_lengths"][sample])
    tokens = viz["importances"]["task_samples"][0][sample, :length]
    model = load_model(webapp_store / "models" / MODEL)
    with torch.no_grad(), hook_recorder(regex=f"{layer}.attn") as records:
        model(tokens.unsqueeze(0))
    return {name: records[f"{layer}.attn.{name}"][0] for name in ("q", "k", "v", "y")}


def _show(node, sample=0, circuit=CIRCUIT):
    return dict(
        zip(
            ("head", "channel", "values", "style", "messages", "title"),
            _panel().show_attention(node, sample, *circuit),
            strict=True,
        )
    )


def test_q_node_head_pattern_is_softmax(webapp_context, webapp_store):
    index = _kept(webapp_store, "1.attn.q")[0]
    head = index // D_HEAD
    outputs = _show(f"1.attn.q:{index}", sample=1)
    assert outputs["style"] == {}
    assert outputs["messages"] == []
    assert outputs["title"] == "pair 0, patch_from_inputs of 2 stored samples"

    recorded = _recorded(webapp_store, sample=1, layer=1)
    q = recorded["q"][:, head * D_HEAD : (head + 1) * D_HEAD]
    k = recorded["k"][:, head * D_HEAD : (head + 1) * D_HEAD]
    scores = (q @ k.T) / math.sqrt(D_HEAD)
    length = scores.shape[0]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    expected = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)

    z = outputs["head"].data[0].z
    assert len(z) == length
    for i in range(length):
        assert list(z[i][: i + 1]) == pytest.approx(expected[i, : i + 1].tolist(), abs=1e-6)
        assert all(value is None for value in z[i][i + 1 :])
        assert sum(z[i][: i + 1]) == pytest.approx(1.0, abs=1e-6)


def test_q_node_channel_pattern_is_product(webapp_context, webapp_store):
    index = _kept(webapp_store, "0.attn.q")[1]
    outputs = _show(f"0.attn.q:{index}")
    recorded = _recorded(webapp_store, sample=0, layer=0)
    q, k = recorded["q"][:, index], recorded["k"][:, index]

    z = outputs["channel"].data[0].z
    for i in range(len(z)):
        for j in range(len(z)):
            if j > i:
                assert z[i][j] is None
            else:
                expected = float(q[i] * k[j]) / math.sqrt(D_HEAD)
                assert z[i][j] == pytest.approx(expected, abs=1e-6)


def test_k_node_channel_pattern_matches_q(webapp_context, webapp_store):
    kept_q = set(_kept(webapp_store, "0.attn.q"))
    shared = sorted(kept_q & set(_kept(webapp_store, "0.attn.k")))
    assert shared, "the tiny circuit keeps no channel at both 0.attn.q and 0.attn.k"
    q_view = _show(f"0.attn.q:{shared[0]}")
    k_view = _show(f"0.attn.k:{shared[0]}")
    assert k_view["channel"].data[0].z == q_view["channel"].data[0].z
    assert k_view["head"].data[0].z == q_view["head"].data[0].z


def test_v_node_rows_sum_to_head_output(webapp_context, webapp_store):
    index = _kept(webapp_store, "1.attn.v")[-1]
    outputs = _show(f"1.attn.v:{index}")
    recorded = _recorded(webapp_store, sample=0, layer=1)

    z = outputs["channel"].data[0].z
    sums = [sum(value for value in row if value is not None) for row in z]
    assert sums == pytest.approx(recorded["y"][:, index].tolist(), abs=1e-5)
    rows = outputs["values"].children[:-1]
    assert [row.children[0].children for row in rows] == [
        f"v[token, {index % D_HEAD}]: the value",
        f"y[token, {index % D_HEAD}]: the head output, each row of the matrix summed",
    ]
    value_titles = [span.title for span in rows[0].children[1].children]
    expected_values = recorded["v"][:, index].tolist()
    assert [float(t.split(": ")[1].split(" (")[0]) for t in value_titles] == pytest.approx(
        expected_values, rel=1e-3, abs=1e-6
    )


def test_token_ticks_are_escaped(webapp_context, webapp_store):
    index = _kept(webapp_store, "0.attn.q")[0]
    outputs = _show(f"0.attn.q:{index}")
    ticks = outputs["head"].layout.xaxis.ticktext
    assert "&lt; 4" in ticks
    assert "&gt; 6" in ticks
    assert not any("<" in tick or ">" in tick for tick in ticks)
    assert ticks[1] == "\u00b7= 1"  # a leading space shows as a middle dot
    assert ticks[7] == '"\u21b5 7'  # a newline shows as a lone return mark


def test_non_qkv_node_hides_figures(webapp_context, webapp_store):
    index = _kept(webapp_store, "0.mlp.post_act")[0]
    outputs = _show(f"0.mlp.post_act:{index}")
    assert outputs["style"] == {"display": "none"}
    assert "Select a q, k or v node" in component_text(outputs["messages"])


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (2, "task sample 2 is out of range: this circuit stores samples 0 to 1"),
        (-1, "invalid sample=-1: expected a task sample index >= 0"),
        ("abc", "invalid sample='abc'"),
    ],
)
def test_bad_sample_is_message(webapp_context, webapp_store, sample, message):
    index = _kept(webapp_store, "0.attn.q")[0]
    outputs = _show(f"0.attn.q:{index}", sample=sample)
    assert outputs["style"] == {"display": "none"}
    assert message in component_text(outputs["messages"])


def test_node_outside_circuit_is_message(webapp_context, webapp_store):
    missing = sorted(set(range(8)) - set(_kept(webapp_store, "0.attn.v")))[0]
    outputs = _show(f"0.attn.v:{missing}")
    assert f"node '0.attn.v:{missing}' is not in this circuit" in component_text(
        outputs["messages"]
    )


def test_circuit_without_model_is_message(store_copy):
    (store_copy / "models" / MODEL / "final_model.pt").unlink()
    index = _kept(store_copy, "0.attn.q")[0]
    outputs = _show(f"0.attn.q:{index}")
    assert f"models/{MODEL}/final_model.pt" in component_text(outputs["messages"])


def test_sample_from_url_fills_input(webapp_context):
    layout = page_module("circuit").layout(
        model=MODEL, task=TASK, sweep=SWEEP, k="8", node="0.attn.q:2", sample="1"
    )
    found = []

    def walk(component):
        if getattr(component, "id", None) == "circuit-sample":
            found.append(component.value)
        children = getattr(component, "children", None)
        for child in children if isinstance(children, list) else [children]:
            if child is not None and not isinstance(child, str | int | float):
                walk(child)

    walk(layout)
    assert found == [1]


def test_circuit_query_keeps_sample(webapp_context):
    query = page_module("circuit").serialise_query(*CIRCUIT, 0, "0.attn.q:2", "0.001", 1)
    assert query.endswith("&node=0.attn.q:2&sample=1")
    invalid = page_module("circuit").serialise_query(*CIRCUIT, 0, "0.attn.q:2", "0.001", -3)
    assert invalid is no_update
