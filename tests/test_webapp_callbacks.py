"""Page callbacks called directly on a tiny store: models, circuit and per-token pages.

The callbacks run against real files (a random tiny model and schema-valid circuits written by
tests/tiny_store.py), the real registry and inference packages, and a real FileSystemCache.
"""

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from dash import no_update
from tiny_store import MODEL, SWEEP, TASK
from webapp_fixtures import component_text, page_module

from webapp import graph

CIRCUIT = (MODEL, TASK, SWEEP, "8")
VIZ_RELPATH = f"viz/{MODEL}/{TASK}/{SWEEP}/8/viz_data.pt"


_page = page_module
_text = component_text


def _find(component, element_id: str):
    """The component with `element_id` in a layout tree, or None."""
    if getattr(component, "id", None) == element_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found = _find(child, element_id)
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------------------------------------
# Models page


def test_model_table_shows_config(webapp_context):
    table = _page("models").show_model_table([MODEL])
    text = _text(table)
    assert "stdlib_2k" in text
    assert "0.25" in text  # pfrac from the config
    assert "layers" in text


def _table_titles(table) -> list[str]:
    return [cell.children for cell in table.children[0].children.children]


def test_model_table_hides_unset_columns(store_copy):
    config_path = store_copy / "models" / MODEL / "beeg_config.json"
    config = json.loads(config_path.read_text())
    shutil.copytree(store_copy / "models" / MODEL, store_copy / "models" / "no_pfrac")
    without_pfrac = {key: value for key, value in config.items() if key != "pfrac"}
    (store_copy / "models" / "no_pfrac" / "beeg_config.json").write_text(json.dumps(without_pfrac))
    models = _page("models")

    # No listed config sets pfrac, so its column is left out.
    titles = _table_titles(models.show_model_table(["no_pfrac"]))
    assert "pfrac (config)" not in titles
    assert "afrac" in titles

    # One config sets it: the column shows, with "-" for the other model.
    table = models.show_model_table(["no_pfrac", MODEL])
    assert "pfrac (config)" in _table_titles(table)
    rows = table.children[1].children
    column = _table_titles(table).index("pfrac (config)")
    assert [row.children[column].children for row in rows] == ["-", "0.25"]


def test_weight_counts_match_checkpoint(webapp_context, webapp_store):
    state = torch.load(
        webapp_store / "models" / MODEL / "final_model.pt", weights_only=True, map_location="cpu"
    )
    dense = ("ln_", "bigram_table", "sink_logit", "final_logits_bias")
    sparse = [t for name, t in state.items() if not any(part in name for part in dense)]
    expected_total = sum(tensor.numel() for tensor in sparse)
    expected_nnz = sum(int(tensor.count_nonzero()) for tensor in sparse)
    text = _text(_page("models").show_weight_counts(MODEL))
    assert f"{expected_nnz:,} nonzero of {expected_total:,}" in text
    table = _text(_page("models").show_model_table([MODEL]))
    assert f"{expected_nnz:,} ({expected_nnz / expected_total:.3g})" in table
    assert 0.2 < expected_nnz / expected_total < 0.3  # the tiny model keeps about 1 in 4 weights


def test_training_curves_default_metrics(webapp_context):
    options, chosen, figure, messages = _page("models").show_training_curves(MODEL, None, None)
    assert options == ["L0", "test_xent"]
    assert chosen == ["test_xent", "L0"]
    assert len(figure.data) == 2
    assert messages == []


def test_training_curves_metrics_from_url(webapp_context):
    models = _page("models")
    _, chosen, _, _ = models.show_training_curves(MODEL, None, ["L0", "missing"])
    assert chosen == ["L0"]
    _, chosen, figure, _ = models.show_training_curves(MODEL, [], ["L0"])
    assert chosen == []
    assert figure.data == ()


def test_cleared_metrics_round_trip_through_url(webapp_context):
    models = _page("models")
    query = models.serialise_query(MODEL, [])
    assert query == f"?model={MODEL}&metrics=none"

    layout = models.layout(model=MODEL, metrics="none")
    requested = _find(layout, "models-requested-metrics").data
    _, chosen, figure, _ = models.show_training_curves(MODEL, None, requested)
    assert chosen == []
    assert figure.data == ()


def test_unticked_log_boxes_still_write_the_url(webapp_context):
    # The log checklist sends [] when both boxes are unticked; the URL must still follow the curves.
    models = _page("models")
    assert models.serialise_query(MODEL, [], []) == f"?model={MODEL}&metrics=none"
    assert models.serialise_query(MODEL, ["L0"], []) == f"?model={MODEL}&metrics=L0"


def _set_trigger(prop_id: str | None) -> None:
    """Make dash.ctx report `prop_id` (e.g. `models-model.value`) as the callback's trigger."""
    from dash._callback_context import context_value
    from dash._utils import AttributeDict

    triggered = [] if prop_id is None else [{"prop_id": prop_id, "value": 1}]
    context_value.set(AttributeDict(triggered_inputs=triggered))


def test_metrics_not_written_before_curves_load(webapp_context):
    _set_trigger(None)
    assert _page("models").serialise_query(MODEL, None) is no_update


def test_model_without_curves_keeps_url_free_of_metrics(store_copy):
    # A model without progress.json leaves the curve selection None, and choosing it writes the
    # model alone to the URL. The next model then opens with its usual curves, not with none.
    shutil.copytree(store_copy / "models" / MODEL, store_copy / "models" / "no_curves")
    models = _page("models")
    options, chosen, figure, messages = models.show_training_curves("no_curves", ["L0"], None)
    assert options == []
    assert chosen is None
    assert "train_curves/no_curves/progress.json" in _text(messages)
    # The message is shown once, above the figure, not repeated inside it.
    assert "No training curves" not in figure.layout.annotations[0].text
    _set_trigger("models-model.value")
    assert models.serialise_query("no_curves", None) == "?model=no_curves"
    _, chosen, _, _ = models.show_training_curves(MODEL, None, None)
    assert chosen == ["test_xent", "L0"]


def test_log_axes_from_url(webapp_context):
    models = _page("models")
    layout = models.layout(model=MODEL, log="x,y")
    assert _find(layout, "models-log").value == ["x", "y"]

    _, _, figure, _ = models.show_training_curves(MODEL, None, None, ["y"])
    assert figure.layout.yaxis.type == "log"
    assert figure.layout.yaxis2.type == "log"
    assert figure.layout.xaxis.type != "log"
    assert models.serialise_query(MODEL, ["L0"], ["y"]) == f"?model={MODEL}&metrics=L0&log=y"


def test_final_metrics_table(webapp_context):
    table = _text(_page("models").show_final_metrics([MODEL, "nosuch"]))
    # The tiny store's last record: step 45, test_xent 5 / 46, L0 955.
    assert f"{MODEL} 45 - - {5.0 / 46:.4g} - 955" in table
    assert "Unknown model 'nosuch'" in table


def test_missing_progress_file_is_named(store_copy):
    (store_copy / "train_curves" / MODEL / "progress.json").unlink()
    _, _, _, messages = _page("models").show_training_curves(MODEL, None, None)
    assert f"train_curves/{MODEL}/progress.json" in _text(messages)


def test_malformed_progress_file_names_line(store_copy):
    path = store_copy / "train_curves" / MODEL / "progress.json"
    lines = path.read_text().splitlines()
    lines[2] = "{not json"
    path.write_text("\n".join(lines) + "\n")
    _, _, _, messages = _page("models").show_training_curves(MODEL, None, None)
    text = _text(messages)
    assert f"train_curves/{MODEL}/progress.json" in text
    assert "line 3" in text


def test_partial_last_progress_line_is_skipped(store_copy):
    path = store_copy / "train_curves" / MODEL / "progress.json"
    path.write_text(path.read_text() + '{"step": 99, "test_')
    options, _, figure, messages = _page("models").show_training_curves(MODEL, None, None)
    assert messages == []
    assert len(figure.data[0].x) == 10


def test_curves_only_model_is_listed(store_copy):
    source = store_copy / "train_curves" / MODEL
    shutil.copytree(source, store_copy / "train_curves" / "running")
    models = _page("models")
    layout = models.layout(model="running")
    assert "not in the store" not in _text(layout)
    table = _text(models.show_model_table(["running", MODEL]))
    assert "Missing store file models/running/beeg_config.json" in table
    options, chosen, figure, messages = models.show_training_curves("running", None, None)
    assert chosen == ["test_xent", "L0"]
    assert messages == []


def test_unlisted_model_rejected_before_reading(webapp_context):
    models = _page("models")
    for model in ("nope", "../tiny", "tiny/../tiny"):
        _, _, _, messages = models.show_training_curves(model, None, None)
        assert f"Unknown model {model!r}" in _text(messages)
        assert f"Unknown model {model!r}" in _text(models.show_weight_counts(model))


def test_models_layout_reports_unknown_model(webapp_context):
    layout = _page("models").layout(model="nope")
    assert "Model 'nope' is not in the store" in _text(layout)


# ---------------------------------------------------------------------------------------------
# Circuit page


def test_circuit_graph_losses_per_sequence(webapp_context):
    circuit = _page("circuit")
    options, figure, style, messages, legend = circuit.load_selected_circuit(*CIRCUIT)
    elements, graph_style, summary = circuit.draw_graph(*CIRCUIT, 0.0)
    assert messages == []
    assert "at least +-0.003" in legend  # 2% of the circuit loss 0.15
    # The graph is as tall as its rows need (graph.view_height), within the bounds.
    height = int(graph_style["height"].removesuffix("px"))
    assert graph.MIN_VIEW_HEIGHT <= height <= graph.MAX_VIEW_HEIGHT
    nodes = [e for e in elements if "source" not in e["data"] and e["classes"] != "row-label"]
    assert len(nodes) == len(options) == 72
    # The tiny store writes losses doubled, as upstream files are; the page shows them halved once.
    assert "full model 0.1000, circuit 0.1500" in _text(summary)
    assert list(figure.data[0].y) == pytest.approx([0.1, 0.15])
    assert style["low"] < 0 < style["high"]
    blocks = figure.data[2]  # after the loss bars and the pruning search
    assert list(blocks.x) == ["0.attn", "0.mlp", "1.attn", "1.mlp"]
    assert list(blocks.y) == pytest.approx([0.5 / 2 - 0.15] * 4)


def test_circuit_top_nodes_select_node(webapp_context):
    circuit = _page("circuit")
    listing = circuit.list_top_nodes(*CIRCUIT)
    text = _text(listing)
    assert "Largest ablation deltas (top 10 of 72)" in text
    buttons = [c for c in listing.children if getattr(c, "id", None) is not None]
    assert len(buttons) == 10
    deltas = [abs(float(button.children.rsplit(" ", 1)[1])) for button in buttons]
    assert deltas == sorted(deltas, reverse=True)

    first = buttons[0].id
    _set_trigger(json.dumps(first, sort_keys=True, separators=(",", ":")) + ".n_clicks")
    assert circuit.select_top_node([1] + [None] * 9) == first["node"]
    assert circuit.select_top_node([None] * 10) is no_update  # buttons that just appeared


def test_circuit_importance_is_ablation_delta(webapp_context, webapp_store):
    viz = torch.load(webapp_store / VIZ_RELPATH, weights_only=True)
    kept = viz["circuit_data"]["0.attn.q"].tolist()
    stored = viz["importances"]["ch_interv_losses"]["0.attn.q"].tolist()
    interv = viz["importances"]["interv_loss"]
    elements, _, _ = _page("circuit").draw_graph(*CIRCUIT, 0.0)
    by_id = {e["data"]["id"]: e["data"] for e in elements}
    for index, loss in zip(kept, stored, strict=True):
        assert by_id[f"0.attn.q:{index}"]["importance"] == pytest.approx((loss - interv) / 2)


def test_circuit_edges_are_model_weights(webapp_context, webapp_store):
    state = torch.load(webapp_store / "models" / MODEL / "final_model.pt", weights_only=True)
    c_attn = state["transformer.h.1.attn.c_attn.weight"]  # (3 * n_head * d_head, d_model)
    elements, _, _ = _page("circuit").draw_graph(*CIRCUIT, 0.0)
    edges = [e["data"] for e in elements if e["data"].get("source", "").startswith("1.attn.act_in")]
    q_edges = [e for e in edges if e["target"].startswith("1.attn.q:")]
    assert q_edges
    for edge in q_edges:
        source = int(edge["source"].rsplit(":", 1)[1])
        target = int(edge["target"].rsplit(":", 1)[1])
        assert edge["weight"] == pytest.approx(float(c_attn[target, source]))


def test_circuit_threshold_hides_weak_edges(webapp_context):
    circuit = _page("circuit")
    all_edges = [e for e in circuit.draw_graph(*CIRCUIT, 0.0)[0] if "source" in e["data"]]
    strong = [e for e in circuit.draw_graph(*CIRCUIT, 0.5)[0] if "source" in e["data"]]
    largest = max(abs(e["data"]["weight"]) for e in all_edges)
    assert 0 < len(strong) < len(all_edges)
    assert all(abs(e["data"]["weight"]) >= 0.5 * largest for e in strong)


def test_circuit_block_view_draws_one_block(webapp_context):
    circuit = _page("circuit")
    everything, _, _ = circuit.draw_graph(*CIRCUIT, 0.0)
    elements, _, summary = circuit.draw_graph(*CIRCUIT, 0.0, "1.attn")
    nodes = [e["data"]["id"] for e in elements if e.get("classes") != "row-label"]
    nodes = [node for node in nodes if "->" not in node]
    assert nodes
    assert all(node.startswith("1.attn.") for node in nodes)
    edges = [e["data"] for e in elements if "source" in e["data"]]
    all_edges = [e["data"] for e in everything if "source" in e["data"]]
    assert edges == [e for e in all_edges if "1.attn." in e["source"] + e["target"]]
    assert "Block 1.attn alone" in _text(summary)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("7.mlp", "Showing the whole circuit: block '7.mlp' has no nodes in this circuit"),
        ("1.attn.q", "Showing the whole circuit: invalid block='1.attn.q'"),
    ],
)
def test_circuit_bad_block_shows_whole_circuit(webapp_context, block, message):
    circuit = _page("circuit")
    everything, _, _ = circuit.draw_graph(*CIRCUIT, 0.0)
    elements, _, summary = circuit.draw_graph(*CIRCUIT, 0.0, block)
    assert elements == everything
    assert message in _text(summary)


def test_circuit_block_options_and_reset(webapp_context):
    circuit = _page("circuit")
    options = circuit.list_blocks(*CIRCUIT, None)
    assert [option["value"] for option in options] == ["0.attn", "0.mlp", "1.attn", "1.mlp"]
    assert [option["label"] for option in options] == ["0.attn", "0.mlp", "1.attn", "1.mlp"]
    assert circuit.list_blocks(*CIRCUIT, "7.mlp")[-1] == {
        "label": "7.mlp (no nodes: whole circuit shown)",
        "value": "7.mlp",
    }
    assert circuit.list_blocks(MODEL, None, None, None, None) == []
    assert circuit.show_whole_circuit(1) is None


def test_circuit_block_in_url(webapp_context):
    query = _page("circuit").serialise_query(*CIRCUIT, 0.0, None, "0.001", 0, "1.mlp")
    assert query.endswith("&block=1.mlp")
    layout = _page("circuit").layout(model=MODEL, block="1.mlp")
    assert "Ignored" not in _text(layout)
    dropdown = _find_component(layout, "circuit-block")
    assert dropdown.value == "1.mlp"
    assert dropdown.options == ["1.mlp"]


def _find_component(component, component_id):
    if getattr(component, "id", None) == component_id:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found = _find_component(child, component_id)
            if found is not None:
                return found
    return None


def test_circuit_invalid_threshold_shows_all(webapp_context):
    circuit = _page("circuit")
    all_edges = circuit.draw_graph(*CIRCUIT, 0.0)[0]
    for threshold in ("abc", 7, None):
        assert circuit.draw_graph(*CIRCUIT, threshold)[0] == all_edges


@pytest.mark.parametrize(("k", "message"), [("16", "Unknown k '16'"), ("../8", "Invalid k '../8'")])
def test_circuit_unknown_k_rejected_before_reading(webapp_context, k, message):
    circuit = _page("circuit")
    options, _, style, messages, legend = circuit.load_selected_circuit(MODEL, TASK, SWEEP, k)
    elements, _, summary = circuit.draw_graph(MODEL, TASK, SWEEP, k, 0.0)
    assert elements == []
    assert options == []
    assert style is None
    assert legend is None
    assert message in _text(messages)


def test_circuit_corrupt_file_is_named(store_copy):
    (store_copy / VIZ_RELPATH).write_bytes(b"")
    *_, messages, _ = _page("circuit").load_selected_circuit(*CIRCUIT)
    assert VIZ_RELPATH in _text(messages)


def test_circuit_incomplete_selection_shows_notice(webapp_context):
    elements, _, summary = _page("circuit").draw_graph(MODEL, None, None, None, 0.0)
    assert elements == []
    assert "Select a model, task, sweep and k" in _text(summary)


def test_selectors_fall_back_to_listed_values(webapp_context):
    result = _page("circuit").update_selectors(MODEL, "nope", SWEEP, "k_optim")
    options, values, messages = result[:4], result[4:8], result[8]
    assert options == ([MODEL], [TASK], [SWEEP], ["8", "k_optim"])
    assert values == (MODEL, TASK, SWEEP, "k_optim")
    assert messages == []


def test_selectors_report_empty_level(store_copy):
    for k_folder in (store_copy / "viz" / MODEL / TASK / SWEEP).iterdir():
        if k_folder.is_dir():
            shutil.rmtree(k_folder)
    result = _page("circuit").update_selectors(MODEL, TASK, SWEEP, "8")
    assert result[3] == []
    assert result[7] is None
    assert f"No k is available for model '{MODEL}', task '{TASK}', sweep '{SWEEP}'." in _text(
        result[8]
    )


def test_circuit_layout_reports_url_problems(webapp_context):
    layout = _page("circuit").layout(model=MODEL, task="nope", threshold="2")
    text = _text(layout)
    assert "Ignored URL parameter threshold='2'" in text
    assert "task 'nope' is not available for model 'tiny'" in text


def test_sweep_curve_marks_k(webapp_context):
    circuit = _page("circuit")
    figure = circuit.show_sweep(MODEL, TASK, SWEEP, "k_optim")
    assert list(figure.data[0].x) == [4, 8, 16]  # k = 0 does not fit a log axis
    assert list(figure.data[0].y) == pytest.approx([0.12, 0.6 / 9, 0.6 / 17])
    marks = [shape.x0 for shape in figure.layout.shapes if shape.x0 == shape.x1]
    assert marks == [12]
    figure = circuit.show_sweep(MODEL, TASK, SWEEP, "8")
    assert [shape.x0 for shape in figure.layout.shapes if shape.x0 == shape.x1] == [8]


def test_sweep_missing_or_malformed(store_copy):
    path = store_copy / "viz" / MODEL / TASK / SWEEP / "sweep.json"
    path.write_text('{"points": [{"k": "many"}]}')
    figure = _page("circuit").show_sweep(MODEL, TASK, SWEEP, "8")
    assert f"viz/{MODEL}/{TASK}/{SWEEP}/sweep.json" in figure.layout.annotations[0].text
    path.unlink()
    figure = _page("circuit").show_sweep(MODEL, TASK, SWEEP, "8")
    assert "stores no sweep.json" in figure.layout.annotations[0].text


def test_show_node_card_heatmap_examples(webapp_context, webapp_store):
    viz = torch.load(webapp_store / VIZ_RELPATH, weights_only=True)
    index = int(viz["circuit_data"]["0.attn.q"][0])
    node = f"0.attn.q:{index}"
    style = {"low": -0.1, "high": 0.4, "max_weight": 1.0}
    card, task_heatmap, examples, stylesheet = _page("circuit").show_node(
        node, "0.5", style, "symmetric", *CIRCUIT
    )
    assert node in _text(card)
    assert f"head {index // 4} channel in head {index % 4}" in _text(card)
    assert "Open in the per-token view" in _text(card)
    rows = task_heatmap.children[:-1]
    assert len(rows) == 3  # the pair's inputs, patch_from_inputs and their difference
    titles = [row.children[0].children for row in rows]
    assert titles[0] == "pair 0, inputs"  # the tiny store's task is not in the task registry
    assert titles[1] == "pair 0, patch_from_inputs"
    assert titles[2].startswith("pair 0, difference inputs - patch_from_inputs")
    lengths = viz["task_sample_lengths"].tolist()
    spans = [row.children[1].children for row in rows]
    assert [len(s) for s in spans] == [*lengths, lengths[0]]  # padding is not shown
    expected = viz["importances"]["task_samples"][1]["0.attn.q"][index][0][: lengths[0]]
    assert [span.title.split(" (")[0] for span in spans[0]] == [
        f"position {i}: {value:.4g}" for i, value in enumerate(expected.tolist())
    ]
    assert "centred on 0" in _text(task_heatmap.children[-1])
    assert "\u00b7" in _text(task_heatmap)  # spaces are visible
    assert "bottom example 0" in _text(examples)
    assert "orange outline marks the token each example was chosen for" in _text(examples)
    assert "orange outline" not in _text(task_heatmap)  # task rows mark no position
    assert f'node[id = "{node}"]' in [rule["selector"] for rule in stylesheet]


def test_task_heatmap_marks_max_and_min(webapp_context, webapp_store):
    viz = torch.load(webapp_store / VIZ_RELPATH, weights_only=True)
    length = int(viz["task_sample_lengths"][0])
    varied = [
        (location, int(index), values[0][:length].tolist())
        for location, by_node in viz["importances"]["task_samples"][1].items()
        for index, values in by_node.items()
        if len(set(values[0][:length].tolist())) > 1
    ]
    assert varied, "some node of the tiny store should vary along sample 0"
    location, index, values = varied[0]
    _, task_heatmap, _, _ = _page("circuit").show_node(
        f"{location}:{index}", "0.5", None, "symmetric", *CIRCUIT
    )
    spans = task_heatmap.children[0].children[1].children
    maximum = values.index(max(values))
    minimum = values.index(min(values))
    assert "token-max" in spans[maximum].className.split()
    assert spans[maximum].title.endswith("(max of the row)")
    assert "token-min" in spans[minimum].className.split()
    assert spans[minimum].title.endswith("(min of the row)")
    marked = [span for span in spans if {"token-max", "token-min"} & set(span.className.split())]
    assert len(marked) == 2


def test_show_node_auto_scale(webapp_context):
    node = _page("circuit").load_selected_circuit(*CIRCUIT)[0][0]["value"]
    _, task_heatmap, _, _ = _page("circuit").show_node(node, "0.5", None, "auto", *CIRCUIT)
    assert "min" in _text(task_heatmap.children[-1])
    assert "(white) to max" in _text(task_heatmap.children[-1])
    _, fallback, _, _ = _page("circuit").show_node(node, "0.5", None, "bogus", *CIRCUIT)
    assert "centred on 0" in _text(fallback.children[-1])


def test_task_pairs_labelled_by_answers(store_copy, monkeypatch):
    from types import SimpleNamespace

    from tiny_store import SNIPPETS, _encode

    import registry.tasks

    quote, apostrophe = _encode('"')[0], _encode("'")[0]
    pair = SimpleNamespace(
        inputs=_encode(SNIPPETS[0]),
        patch_from_inputs=_encode(SNIPPETS[1]),
        target_tokid=quote,
        target_alt_tokid=apostrophe,
    )
    task = SimpleNamespace(xs_test=[pair])
    monkeypatch.setattr(registry.tasks, "get_task", lambda name, encoding=None: task)
    node = _page("circuit").load_selected_circuit(*CIRCUIT)[0][0]["value"]
    _, task_heatmap, _, _ = _page("circuit").show_node(node, "0.5", None, "symmetric", *CIRCUIT)
    titles = [row.children[0].children for row in task_heatmap.children[:-1]]
    assert titles[0] == "pair 0, inputs, answer '\"'"
    assert titles[1] == 'pair 0, patch_from_inputs, answer "\'"'


def test_node_card_links_to_per_token(webapp_context):
    circuit = _page("circuit")
    href = circuit.per_token_href(MODEL, "single_double_quote", SWEEP, "64", "0.attn.q:4")
    assert href == (
        f"/per-token?model={MODEL}&task=single_double_quote&sweep={SWEEP}&k=64&node=0.attn.q:4"
    )
    # A task the per-token page does not know falls back to typed text, on another circuit.
    assert circuit.per_token_href(MODEL, TASK, SWEEP, "64", "0.attn.q:4") == (
        f"/per-token?model={MODEL}&node=0.attn.q:4&source=text"
    )


def test_show_node_outside_circuit(webapp_context):
    card, heatmap, _, stylesheet = _page("circuit").show_node(
        "1.mlp.post_act:999", "0.001", None, "symmetric", *CIRCUIT
    )
    assert "not in this circuit" in _text(card)
    assert heatmap is None
    assert not any("999" in rule["selector"] for rule in stylesheet)


def test_tapped_node_becomes_selection():
    circuit = _page("circuit")
    assert circuit.select_tapped_node({"id": "0.attn.k:2", "label": "x"}) == "0.attn.k:2"
    assert circuit.select_tapped_node({"id": "row:0.attn.k", "label": "0.attn.k"}) is no_update


def test_search_keeps_selection_while_loading():
    circuit = _page("circuit")
    assert circuit.select_searched_node("0.attn.k:2", "0.attn.q:1") == "0.attn.k:2"
    assert circuit.select_searched_node(None, "0.attn.q:1") is no_update
    assert circuit.select_searched_node("0.attn.q:1", "0.attn.q:1") is no_update


def test_search_shows_selection_once_listed():
    circuit = _page("circuit")
    options = [{"label": "0.attn.q:1 (head 0, channel 1)", "value": "0.attn.q:1"}]
    assert circuit.show_selected_in_search("0.attn.q:1", options) == "0.attn.q:1"
    assert circuit.show_selected_in_search("0.attn.q:1", []) is None
    assert circuit.show_selected_in_search("0.attn.k:9", options) is None


def test_download_names_file_after_circuit():
    image = _page("circuit").download_image(1, *CIRCUIT)
    assert image == {
        "type": "png",
        "action": "download",
        "filename": f"circuit-{MODEL}-{TASK}-{SWEEP}-8",
        "options": {"full": True, "bg": "#ffffff", "scale": 2},
    }


def test_circuit_query_string(webapp_context):
    query = _page("circuit").serialise_query(*CIRCUIT, 0.2, "0.attn.q:4", "0.01", 3)
    assert query == (
        f"?model={MODEL}&task={TASK}&sweep={SWEEP}&k=8&node=0.attn.q:4&threshold=0.2&sample=3"
        "&fraction=0.01"
    )


def test_cache_files_are_json(webapp_context, webapp_cache_dir):
    _page("circuit").load_selected_circuit(*CIRCUIT)
    payloads = []
    for path in webapp_cache_dir.iterdir():
        data = path.read_bytes()
        struct.unpack("I", data[:4])  # cachelib's expiry header
        payloads.append(json.loads(data[4:]))
    assert any(isinstance(p, dict) and "nodes" in p and "edges" in p for p in payloads)


# ---------------------------------------------------------------------------------------------
# Per-token page


def _direct_activations(store: Path, text: str, location: str, index: int) -> list[float]:
    from inference.gpt import load_model
    from inference.hook_utils import hook_recorder
    from registry.store import Store
    from registry.tokenizer import get_encoding

    ids = get_encoding("stdlib_2k", Store(store)).encode(text)
    model = load_model(store / "models" / MODEL)
    with torch.no_grad(), hook_recorder() as records:
        model(torch.tensor([ids]))
    return records[location][0, :, index].tolist()


def test_per_token_text_matches_model(webapp_context, webapp_store):
    text = 'print("<b>")\n'
    heatmap, figure, messages = _page("per_token").show_activations(
        MODEL, "1.mlp.post_act", 5, "text", None, 0, text
    )
    assert messages == []
    expected = _direct_activations(webapp_store, text, "1.mlp.post_act", 5)
    assert list(figure.data[0].y) == pytest.approx(expected, abs=1e-6)
    spans = heatmap.children[0].children[1].children
    assert "".join(span.children for span in spans).replace("\u21b5", "") == text.replace(
        " ", "\u00b7"
    )


def test_per_token_several_nodes_match_model(webapp_context, webapp_store):
    text = "x = (1)\n"
    compared = ["0.attn.v:3", "1.mlp.post_act:5"]
    heatmap, figure, messages = _page("per_token").show_activations(
        MODEL, "0.attn.q", 2, "text", None, 0, text, compared
    )
    assert messages == []

    nodes = ["0.attn.q:2", *compared]
    heat = figure.data[0]
    assert heat.type == "heatmap"
    assert list(heat.y) == nodes
    for node, row in zip(nodes, heat.customdata, strict=True):
        location, index = node.split(":")
        expected = _direct_activations(webapp_store, text, location, int(index))
        assert [value for _, value in row] == pytest.approx(expected, abs=1e-6)

    titles = [row.children[0].children for row in heatmap.children[:-1]]
    assert titles == [f"{node} on the text" for node in nodes]


def test_per_token_compared_node_repeats_dropped(webapp_context):
    _, figure, messages = _page("per_token").show_activations(
        MODEL, "0.attn.q", 2, "text", None, 0, "x", ["0.attn.q:2"]
    )
    assert messages == []
    assert figure.data[0].type == "bar"


@pytest.mark.parametrize(
    ("compared", "message"),
    [
        (["0.attn.q:8"], "compared node '0.attn.q:8': channel 8 is out of range"),
        (["5.attn.q:1"], "compared node '5.attn.q:1': 5.attn.q is not a location of tiny"),
        (["0.attn.z:1"], "compared node '0.attn.z:1': invalid node"),
        ([3], "compared node 3: invalid node 3"),
    ],
)
def test_per_token_bad_compared_node_is_named(webapp_context, compared, message):
    heatmap, _, messages = _page("per_token").show_activations(
        MODEL, "0.attn.q", 2, "text", None, 0, "x", compared
    )
    assert heatmap is None
    assert message in _text(messages)


def test_per_token_add_and_remove_nodes(webapp_context):
    from dash._callback_context import context_value
    from dash._utils import AttributeDict

    per_token = _page("per_token")

    def run(triggered, nodes, location, index):
        prop = f"{triggered}.n_clicks" if triggered == "tokens-add-node" else f"{triggered}.value"
        context_value.set(AttributeDict(triggered_inputs=[{"prop_id": prop, "value": 1}]))
        return per_token.update_compared_nodes(1, nodes, location, index)

    options, value, messages = run("tokens-add-node", [], "0.attn.v", 3)
    assert value == options == ["0.attn.v:3"]
    assert "Added 0.attn.v:3. Pick another location" in str(messages)
    _, value, messages = run("tokens-add-node", value, "0.attn.v", 3)
    assert value == ["0.attn.v:3"]
    assert "already in the compared nodes" in str(messages)
    _, value, _ = run("tokens-nodes", [], "0.attn.v", 3)
    assert value == []

    full = [f"0.attn.v:{i}" for i in range(8)]
    _, value, messages = run("tokens-add-node", full, "1.attn.q", 0)
    assert value == full
    assert "at most 8 nodes" in _text(messages)
    _, value, messages = run("tokens-add-node", [], "0.attn.v", 1.5)
    assert value == []
    assert "channel 1.5 is not a whole number" in _text(messages)


def test_per_token_nodes_round_trip_through_url(webapp_context):
    per_token = _page("per_token")
    query = per_token.serialise_query(
        MODEL,
        "0.attn.q",
        3,
        "text",
        None,
        0,
        "a",
        None,
        None,
        None,
        ["0.attn.v:1", "1.mlp.act_in:2"],
    )
    assert query.endswith("&nodes=0.attn.v:1,1.mlp.act_in:2")

    layout = per_token.layout(model=MODEL, node="0.attn.q:3", nodes="0.attn.v:1,1.mlp.act_in:2")
    assert _find(layout, "tokens-nodes").value == ["0.attn.v:1", "1.mlp.act_in:2"]


def test_per_token_task_sample_two_rows(webapp_context):
    heatmap, _, messages = _page("per_token").show_activations(
        MODEL, "0.attn.v", 1, "task", "single_double_quote", 2, ""
    )
    assert messages == []
    titles = [row.children[0].children for row in heatmap.children[:-1]]
    assert titles == ["first sequence", "second sequence"]


@pytest.mark.parametrize(
    ("location", "index", "source", "task", "sample", "text", "message"),
    [
        ("0.attn.q", 0, "text", None, 0, "x = 1\n" * 40, "reads at most 64 (block_size)"),
        ("0.attn.q", 0, "text", None, 0, "", "the text is empty"),
        ("0.attn.q", 8, "text", None, 0, "x", "channel 8 is out of range"),
        ("5.attn.q", 0, "text", None, 0, "x", "5.attn.q is not a location of tiny"),
        ("0.attn.q", 0, "task", "nope", 0, "", "unknown task 'nope'"),
        ("0.attn.q", 0, "task", "single_double_quote", 10_000, "", "sample 10000 is out of range"),
    ],
)
def test_per_token_rejects_bad_input(
    webapp_context, location, index, source, task, sample, text, message
):
    heatmap, _, messages = _page("per_token").show_activations(
        MODEL, location, index, source, task, sample, text
    )
    assert heatmap is None
    assert message in _text(messages)


def test_per_token_invalid_channel_is_message(webapp_context):
    heatmap, _, messages = _page("per_token").show_activations(
        MODEL, "0.attn.q", "abc", "text", None, 0, "x"
    )
    assert heatmap is None
    assert "channel 'abc' is not a whole number" in _text(messages)


def test_malformed_config_is_named(store_copy):
    (store_copy / "models" / MODEL / "beeg_config.json").write_text("{broken")
    text = _text(_page("models").show_model_table([MODEL]))
    assert f"models/{MODEL}/beeg_config.json" in text


def test_missing_weights_are_named(store_copy):
    (store_copy / "models" / MODEL / "final_model.pt").unlink()
    text = _text(_page("models").show_weight_counts(MODEL))
    assert f"models/{MODEL}/final_model.pt" in text
    heatmap, _, messages = _page("per_token").show_activations(
        MODEL, "0.attn.q", 0, "text", None, 0, "x"
    )
    assert heatmap is None
    assert f"models/{MODEL}/final_model.pt" in _text(messages)


def test_per_token_layout_checks_node_location(webapp_context):
    layout = _page("per_token").layout(model=MODEL, node="7.attn.q:1")
    assert "7.attn.q is not a location of tiny; showing 0.attn.act_in." in _text(layout)


def test_per_token_locations_follow_model(webapp_context):
    locations, chosen = _page("per_token").fill_locations(MODEL, "9.attn.q")
    assert len(locations) == 2 * 8
    assert chosen == "0.attn.act_in"
    assert _page("per_token").fill_locations(MODEL, "1.mlp.act_in")[1] == "1.mlp.act_in"


def test_per_token_query_string(webapp_context):
    query = _page("per_token").serialise_query(
        MODEL, "0.attn.q", 3, "text", "single_double_quote", 0, "a b", None, None, None
    )
    assert (
        query == f"?model={MODEL}&task=single_double_quote&node=0.attn.q:3&source=text&text=a%20b"
    )
