"""The per-token page's next-token predictions on the tiny store: full model and circuit alone.

The circuit `8` of the tiny store has ablation_means, `k_optim` has none (like upstream files),
so both sources of means are covered. Expected values come from running the model directly.
"""

import pytest
import torch
from dash import no_update
from tiny_store import MEANS_K, MODEL, SWEEP, TASK
from webapp_fixtures import component_text, page_module

from webapp.heatmap import visible_whitespace

TEXT = 'x = "a<b>"\nprint(x)\n'


def _panel():
    from webapp.components import prediction_panel

    return prediction_panel


def _encode(store, text: str) -> list[int]:
    from registry.store import Store
    from registry.tokenizer import get_encoding

    return get_encoding("stdlib_2k", Store(store)).encode(text)


def _expected_top(store, token_ids, position, circuit=None, means=None) -> list[int]:
    """Top-5 token ids at `position`, from the model run directly (under apply_circuit if given)."""
    from inference.circuit import apply_circuit
    from inference.gpt import load_model

    model = load_model(store / "models" / MODEL)
    idx = torch.tensor([token_ids])
    with torch.no_grad():
        if circuit is None:
            logits = model(idx)[0]
        else:
            with apply_circuit(model, circuit, means):
                logits = model(idx)[0]
    return torch.topk(logits[0, position], 5).indices.tolist()


def _viz(store, k: str) -> dict:
    return torch.load(store / f"viz/{MODEL}/{TASK}/{SWEEP}/{k}/viz_data.pt", weights_only=True)


def _rewrite_circuit(store, circuit: dict) -> None:
    path = store / f"viz/{MODEL}/{TASK}/{SWEEP}/{MEANS_K}/viz_data.pt"
    viz = torch.load(path, weights_only=True)
    viz["circuit_data"] = circuit
    torch.save(viz, path)


def _ids(predictions: list[dict]) -> list[int]:
    return [prediction["token_id"] for prediction in predictions]


def test_full_model_top_tokens_match_model(webapp_context, webapp_store):
    from webapp.live_predictions import top_tokens

    token_ids = _encode(webapp_store, TEXT)
    predictions = top_tokens(MODEL, token_ids, 6)
    assert _ids(predictions) == _expected_top(webapp_store, token_ids, 6)
    probabilities = [prediction["probability"] for prediction in predictions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0 < p <= 1 for p in probabilities)


def test_stored_means_circuit_matches_model(webapp_context, webapp_store):
    from webapp.live_predictions import MEANS_STORED, circuit_top_tokens

    token_ids = _encode(webapp_store, TEXT)
    result = circuit_top_tokens(MODEL, (TASK, SWEEP, MEANS_K), token_ids, 3)
    assert result["means"] == MEANS_STORED
    viz = _viz(webapp_store, MEANS_K)
    expected = _expected_top(webapp_store, token_ids, 3, viz["circuit_data"], viz["ablation_means"])
    assert _ids(result["predictions"]) == expected


def test_all_nodes_circuit_equals_full_model(store_copy):
    from webapp.live_predictions import circuit_top_tokens, top_tokens

    means = _viz(store_copy, MEANS_K)["ablation_means"]
    _rewrite_circuit(store_copy, {loc: torch.arange(mean.numel()) for loc, mean in means.items()})
    token_ids = _encode(store_copy, TEXT)
    for position in (0, 5, len(token_ids) - 1):
        full = top_tokens(MODEL, token_ids, position)
        circuit = circuit_top_tokens(MODEL, (TASK, SWEEP, MEANS_K), token_ids, position)
        assert circuit["predictions"] == full


def test_empty_circuit_differs_from_full_model(store_copy):
    from webapp.live_predictions import circuit_top_tokens, top_tokens

    _rewrite_circuit(store_copy, {})
    token_ids = _encode(store_copy, TEXT)
    position = len(token_ids) - 1
    full = top_tokens(MODEL, token_ids, position)
    empty = circuit_top_tokens(MODEL, (TASK, SWEEP, MEANS_K), token_ids, position)
    assert empty["predictions"] != full
    # The random tiny model's logits spread by only about 0.03, so ablating every node moves
    # them by about 1e-3, which is still far above float32 rounding (about 1e-8 at this size).
    full_logits = {p["token_id"]: p["logit"] for p in full}
    changes = [
        abs(p["logit"] - full_logits[p["token_id"]])
        for p in empty["predictions"]
        if p["token_id"] in full_logits
    ]
    assert max(changes, default=1.0) > 1e-5


def test_computed_means_without_stored(webapp_context, webapp_store, monkeypatch, tmp_path):
    import pruning.means
    from inference.circuit import mean_activations
    from webapp import live_predictions

    token_ids = _encode(webapp_store, TEXT)
    windows = torch.tensor([token_ids[:6], token_ids[6:12]])
    monkeypatch.setattr(pruning.means, "validation_windows", lambda *args: windows)
    monkeypatch.setenv("CIRCUIT_SPARSITY_CACHE", str(tmp_path / "cache"))
    live_predictions._computed_means.cache_clear()

    result = live_predictions.circuit_top_tokens(MODEL, (TASK, SWEEP, "k_optim"), token_ids, 4)
    assert result["means"] == live_predictions.MEANS_COMPUTED
    from inference.gpt import load_model

    means = mean_activations(load_model(webapp_store / "models" / MODEL), [windows])
    circuit = _viz(webapp_store, "k_optim")["circuit_data"]
    assert _ids(result["predictions"]) == _expected_top(webapp_store, token_ids, 4, circuit, means)
    assert list((tmp_path / "cache" / "ablation_means").glob("*.pt"))  # cached on disk
    live_predictions._computed_means.cache_clear()


# ---------------------------------------------------------------------------------------------
# Callbacks and layout


def _components(root) -> list:
    """Every Dash component in the tree under `root`, `root` included."""
    found = []

    def walk(component):
        found.append(component)
        children = getattr(component, "children", None)
        for child in children if isinstance(children, list | tuple) else [children]:
            if child is not None and not isinstance(child, str | int | float):
                walk(child)

    walk(root)
    return found


def _tables(root, class_name: str) -> list:
    return [c for c in _components(root) if getattr(c, "className", None) == class_name]


def _rows(table) -> list[str]:
    return [component_text(row) for row in _tables(table, "prediction")]


def test_callback_shows_both_lists(webapp_context, webapp_store):
    from webapp.live_predictions import circuit_top_tokens, top_tokens

    blocks, messages = _panel().show_predictions(MODEL, "text", TASK, 0, TEXT, SWEEP, MEANS_K, None)
    assert messages == []
    full, circuit = _tables(blocks, "top-full"), _tables(blocks, "top-circuit")
    assert len(full) == 1
    assert len(circuit) == 1
    assert len(_rows(full[0])) == 5
    assert len(_rows(circuit[0])) == 5

    token_ids = _encode(webapp_store, TEXT)
    last = len(token_ids) - 1
    expected = top_tokens(MODEL, token_ids, last)[0]
    label = visible_whitespace(expected["label"]).replace("\n", "")
    assert _rows(full[0])[0].startswith(f"1 {label} ")
    assert f"{expected['probability']:.3f}" in _rows(full[0])[0]
    circuit_first = circuit_top_tokens(MODEL, (TASK, SWEEP, MEANS_K), token_ids, last)
    first_probability = circuit_first["predictions"][0]["probability"]
    assert f"{first_probability:.3f}" in _rows(circuit[0])[0]
    assert f"text: after position {last}, token" in component_text(blocks)


def test_callback_task_pair_two_blocks(webapp_context):
    blocks, messages = _panel().show_predictions(
        MODEL, "task", "single_double_quote", 1, "", None, None, 2
    )
    assert messages == []
    text = component_text(blocks)
    assert "first sequence: after position 2" in text
    assert "second sequence: after position 2" in text
    assert len(_tables(blocks, "top-full")) == 2
    assert "No circuit of this model and task in the store." in text


def test_callback_task_sample_shows_answer_tokens(webapp_context, webapp_store):
    # A task sample at its last token: the table ends with the task's two answer tokens.
    from webapp.live import task_answers, task_sample
    from webapp.live_predictions import top_tokens

    task = "single_double_quote"
    blocks, messages = _panel().show_predictions(MODEL, "task", task, 0, "", None, None, None)
    assert messages == []
    target, alt = task_answers(MODEL, task, 0)
    first_ids = task_sample(MODEL, task, 0)[0][1]
    expected = top_tokens(MODEL, first_ids, len(first_ids) - 1, (target, alt))
    assert [p["token_id"] for p in expected[-2:]] == [target, alt]

    full = _tables(blocks, "top-full")[0]
    answer_rows = [
        component_text(row) for row in _tables(full, "prediction-answer table-secondary")
    ]
    assert len(answer_rows) == 2
    assert answer_rows[0].startswith("first sequence's answer ")
    assert f"{expected[-2]['logit']:.3f}" in answer_rows[0]
    assert answer_rows[1].startswith("second sequence's answer ")
    notes = [component_text(c) for c in _tables(blocks, "small text-muted mb-2 answer-preference")]
    assert len(notes) == 2  # the full model's, for each of the two sequences
    preferred = "first" if expected[-2]["logit"] >= expected[-1]["logit"] else "second"
    assert notes[0].startswith(f"Of the task's two answers, the {preferred} sequence's answer")

    # At a chosen position, the answers are not shown: they are the answers at the last token.
    blocks, _ = _panel().show_predictions(MODEL, "task", task, 0, "", None, None, 2)
    assert _tables(blocks, "prediction-answer table-secondary") == []


def test_callback_computed_means_are_noted(webapp_context, monkeypatch):
    from webapp import live_predictions

    monkeypatch.setattr(live_predictions, "_computed_means", _stored_means_stand_in)
    blocks, messages = _panel().show_predictions(MODEL, "text", TASK, 0, TEXT, SWEEP, "k_optim", 2)
    assert messages == []
    assert "stores no ablation means, so they were computed" in component_text(blocks)


def _stored_means_stand_in(model, identity):
    """Means for the `k_optim` circuit in place of a corpus pass: those circuit `8` stores."""
    from webapp.circuit_data import viz_relpath
    from webapp.data import _loaded_viz

    return _loaded_viz(*viz_relpath(MODEL, TASK, SWEEP, MEANS_K)).ablation_means


@pytest.mark.parametrize(
    ("position", "message"),
    [
        (99, "text: position 99 is out of range: it has positions 0 to"),
        (-2, "invalid position=-2"),
        ("x", "invalid position='x'"),
    ],
)
def test_callback_bad_position_is_message(webapp_context, position, message):
    _, messages = _panel().show_predictions(MODEL, "text", TASK, 0, TEXT, SWEEP, "8", position)
    assert message in component_text(messages)


def test_selectors_follow_task(webapp_context):
    tasks, sweeps, sweep, ks, k = _panel().fill_circuit_selectors(MODEL, TASK, None, None)
    assert TASK in tasks
    assert "single_double_quote" in tasks
    assert sweeps == [SWEEP]
    assert sweep == SWEEP
    assert ks == ["8", "k_optim"]
    assert k == "k_optim"
    assert _panel().fill_circuit_selectors(MODEL, TASK, SWEEP, "8")[4] == "8"
    _, sweeps, sweep, ks, k = _panel().fill_circuit_selectors(
        MODEL, "single_double_quote", SWEEP, "8"
    )
    assert (sweeps, sweep, ks, k) == ([], None, [], None)


def test_layout_reports_unknown_sweep(webapp_context):
    layout = page_module("per_token").layout(
        model=MODEL, task=TASK, sweep="nope", k="8", position="4"
    )
    text = component_text(layout)
    assert "sweep 'nope' is not available" in text
    values = {
        component.id: component.value
        for component in _components(layout)
        if getattr(component, "id", None) in ("tokens-sweep", "tokens-k", "tokens-position")
    }
    assert values == {"tokens-sweep": SWEEP, "tokens-k": "8", "tokens-position": 4}


def test_per_token_query_keeps_circuit(webapp_context):
    query = page_module("per_token").serialise_query(
        MODEL, "0.attn.q", 3, "text", TASK, 0, "a", SWEEP, "8", 5
    )
    assert query == (
        f"?model={MODEL}&task={TASK}&sweep={SWEEP}&k=8&node=0.attn.q:3&source=text&text=a"
        "&position=5"
    )
    invalid = page_module("per_token").serialise_query(
        MODEL, "0.attn.q", 3, "text", TASK, 0, "a", SWEEP, "8", -1
    )
    assert invalid is no_update
