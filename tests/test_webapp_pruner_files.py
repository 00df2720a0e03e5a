"""The circuit page's data layer reads circuits written by the pruner, in their compact storage."""

from __future__ import annotations

import pytest
import torch
from pruner_sweep import TASK, prune_small_sweep
from tiny_store import MODEL

from inference.gpt import load_model


@pytest.fixture
def pruned_store(store_copy):
    """The tiny store with a prune_v4 sweep of the tiny model written by the pruner."""
    model = load_model(str(store_copy / "models" / MODEL))
    prune_small_sweep(
        model,
        store_copy,
        MODEL,
        [12],
        n_windows=4,
        n_steps=4,
        n_search_pairs=16,
        n_eval_pairs=16,
        n_node_ablation_pairs=2,
        n_task_sample_pairs=2,
    )
    viz = torch.load(
        store_copy / "viz" / MODEL / TASK / "prune_v4" / "12" / "viz_data.pt", weights_only=True
    )
    return viz


def test_examples_of_pruned_file_render(pruned_store):
    from webapp.circuit_data import node_examples

    location, ids = next(
        (loc, ids) for loc, ids in pruned_store["circuit_data"].items() if len(ids)
    )
    node = f"{location}:{int(ids[0])}"
    rows = node_examples(MODEL, TASK, "prune_v4", "12", node, "0.001")
    assert len(rows["top"]) == len(rows["bottom"]) == 1  # 4 x 32 positions: one per 0.1% band
    for row in rows["top"] + rows["bottom"]:
        assert len(row["tokens"]) == len(row["values"])
        assert all(isinstance(value, float) for value in row["values"])
        assert 0 <= row["highlight"] < len(row["tokens"])


def test_task_heatmap_of_pruned_file_renders(pruned_store):
    from webapp.circuit_data import node_task_heatmap

    location, ids = next(
        (loc, ids) for loc, ids in pruned_store["circuit_data"].items() if len(ids)
    )
    rows = node_task_heatmap(MODEL, TASK, "prune_v4", "12", f"{location}:{int(ids[0])}")
    lengths = pruned_store["task_sample_lengths"].tolist()
    pairs = len(lengths) // 2
    # Per pair: its inputs row, its patch_from_inputs row, then the difference on the inputs tokens.
    expected = [n for pair in range(pairs) for n in (lengths[pair], lengths[pair + pairs])]
    assert [len(row["values"]) for row in rows if "difference" not in row["title"]] == expected
    differences = [row for row in rows if "difference" in row["title"]]
    assert [len(row["values"]) for row in differences] == lengths[:pairs]
    assert all(
        isinstance(value, float)
        for row in rows
        if row not in differences
        for value in row["values"]
    )


def test_importances_are_deltas_on_the_node_ablation_pairs(pruned_store, store_copy):
    # Node losses come from 2 pairs, interv_loss from 16: subtracting interv_loss would shift every
    # importance by the same constant, so each delta must use the 2-pair circuit loss. The tiny
    # model sits at chance on both, so the stored base is moved to tell the two apart.
    import os

    from webapp.circuit_data import load_circuit

    importances = pruned_store["importances"]
    base = float(importances["node_ablation_base_loss"]) + 0.25
    importances["node_ablation_base_loss"] = base
    path = store_copy / "viz" / MODEL / TASK / "prune_v4" / "12" / "viz_data.pt"
    torch.save(pruned_store, path)
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))

    payload = load_circuit(MODEL, TASK, "prune_v4", "12")
    base = base / 2  # the file stores pair sums; the reader gives per-sequence losses
    assert base != pytest.approx(payload["interv_loss"])
    node_losses = importances["ch_interv_losses"]
    for node in payload["nodes"]:
        kept = pruned_store["circuit_data"][node["location"]].tolist()
        expected = float(node_losses[node["location"]][kept.index(node["index"])]) / 2 - base
        assert node["importance"] == pytest.approx(expected)
    for block, loss in importances["layer_interv_losses"].items():
        assert payload["block_deltas"][block] == pytest.approx(float(loss) / 2 - base)
