"""End-to-end pruning on a tiny random model: every viz_data field, sweep.json, verify, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pruner_sweep import TASK, prune_small_sweep

import pruning.means
from inference.circuit import node_locations, num_total_nodes
from inference.gpt import GPT, GPTConfig
from inference.hook_utils import hook_recorder
from pruning.__main__ import main
from pruning.config import PruneConfig
from pruning.data import make_batch
from pruning.means import cached_means, cached_validation_windows, compute_means
from pruning.pipeline import PruneSetup
from pruning.run import rank_by_attribution, run_sweep
from pruning.search import circuit_loss
from pruning.verify import losses_match, random_circuit, verify_viz_data
from registry.tasks import get_task

REPO_STORE = Path(__file__).resolve().parents[1] / "store"


def tiny_config(**overrides) -> GPTConfig:
    settings = dict(
        block_size=128,
        vocab_size=2048,
        n_layer=2,
        n_head=2,
        d_model=16,
        d_mlp=32,
        tokenizer_name="stdlib_2k",
        bias=True,
    )
    settings.update(overrides)
    return GPTConfig(**settings)


def save_model(model: GPT, folder) -> None:
    folder.mkdir(parents=True)
    (folder / "beeg_config.json").write_text(json.dumps(model.config.to_dict()))
    torch.save(model.state_dict(), folder / "final_model.pt")


@pytest.fixture(scope="module")
def sweep_result(tmp_path_factory):
    torch.manual_seed(0)
    model = GPT(tiny_config())
    store = tmp_path_factory.mktemp("store")
    save_model(model, store / "models" / "tiny")
    summary = prune_small_sweep(
        model,
        store,
        "tiny",
        [4, 40],
        n_windows=8,
        n_steps=8,
        n_search_pairs=32,
        n_eval_pairs=32,
        n_node_ablation_pairs=4,
        n_task_sample_pairs=3,
        max_exact_node_ablations=16,
        max_detailed_nodes=30,
    )
    return store, model, summary


def load(store, k, sweep="prune_v4"):
    path = store / "viz" / "tiny" / TASK / sweep / str(k) / "viz_data.pt"
    return torch.load(path, map_location="cpu", weights_only=True)


def test_viz_data_has_every_field(sweep_result):
    store, model, _ = sweep_result
    viz = load(store, 4)
    expected = {
        "circuit_data",
        "samples",
        "importances",
        "all_loss",
        "num_total_nodes",
        "prune_config",
        "ablation_means",
        "task_sample_lengths",
    }
    assert set(viz) == expected
    importances = viz["importances"]
    assert set(importances) == {
        "beeg_model_config",
        "loss",
        "interv_loss",
        "node_ablation_base_loss",
        "ch_interv_losses",
        "layer_interv_losses",
        "pair_data",
        "pair_data_connections",
        "task_samples",
    }
    assert viz["num_total_nodes"] == num_total_nodes(model.config)
    assert importances["beeg_model_config"]["d_model"] == 16
    assert set(viz["ablation_means"]) == set(node_locations(model.config))


def test_circuit_data_has_k_nodes(sweep_result):
    store, model, _ = sweep_result
    viz = load(store, 40)
    circuit = viz["circuit_data"]
    assert set(circuit) == set(node_locations(model.config))
    assert sum(ids.numel() for ids in circuit.values()) == 40
    assert all(ids.dtype == torch.long for ids in circuit.values())
    assert viz["prune_config"]["k"] == 40
    assert viz["prune_config"]["ch_interv_losses_method"] == "first_order"
    assert load(store, 4)["prune_config"]["ch_interv_losses_method"] == "exact"


def test_losses_use_pair_sum_convention(sweep_result):
    store, _, _ = sweep_result
    viz = load(store, 4)
    prune_config = viz["prune_config"]
    importances = viz["importances"]
    assert importances["interv_loss"] == pytest.approx(2 * prune_config["interv_loss_per_sequence"])
    assert importances["loss"] == pytest.approx(2 * prune_config["full_model_loss_per_sequence"])
    assert viz["all_loss"][-1][1] == pytest.approx(importances["interv_loss"])


def test_node_and_block_losses_match_circuit(sweep_result):
    store, model, _ = sweep_result
    viz = load(store, 4)
    circuit = viz["circuit_data"]
    node_losses = viz["importances"]["ch_interv_losses"]
    for loc, ids in circuit.items():
        assert len(node_losses[loc]) == ids.numel()
    expected_blocks = {f"{i}.{b}" for i in range(model.config.n_layer) for b in ("attn", "mlp")}
    assert set(viz["importances"]["layer_interv_losses"]) == expected_blocks


def test_node_ablation_base_loss(sweep_result):
    store, model, _ = sweep_result
    viz = load(store, 4)
    prune_config = viz["prune_config"]
    means = {loc: mean.float() for loc, mean in viz["ablation_means"].items()}
    batch = make_batch(get_task(TASK).xs_test[:4], model.config.block_size)
    expected = circuit_loss(
        model,
        viz["circuit_data"],
        means,
        batch,
        scale=prune_config["logit_scale"],
        shift=prune_config["logit_shift"],
    )
    assert prune_config["node_ablation_base_loss_per_sequence"] == pytest.approx(expected, rel=1e-5)
    assert viz["importances"]["node_ablation_base_loss"] == pytest.approx(2 * expected, rel=1e-3)


def test_pair_data_shapes_and_bias(sweep_result):
    store, model, _ = sweep_result
    viz = load(store, 40)
    circuit = viz["circuit_data"]
    entries = viz["importances"]["pair_data"]
    assert len(entries) == 6 * model.config.n_layer
    for matrix, src_ids, tgt_ids, (src_loc, tgt_loc) in entries:
        assert src_ids[-1] == "bias"
        assert src_ids[:-1] == circuit[src_loc].tolist()
        assert tgt_ids == circuit[tgt_loc].tolist()
        assert tuple(matrix.shape) == (len(src_ids), len(tgt_ids))

    # Spot-check one weight against the model: act_in -> q of layer 0.
    matrix, src_ids, tgt_ids, _ = entries[0]
    if len(src_ids) > 1 and tgt_ids:
        weight = model.transformer.h[0].attn.c_attn.weight
        assert matrix[0, 0].item() == pytest.approx(weight[tgt_ids[0], src_ids[0]].item())


def test_residual_connections_link_same_channel(sweep_result):
    store, _, _ = sweep_result
    viz = load(store, 40)
    for matrix, src_ids, tgt_ids, (src_loc, tgt_loc) in viz["importances"]["pair_data_connections"]:
        assert src_loc.endswith("resid_delta")
        assert tgt_loc.endswith("act_in")
        for row, column in torch.nonzero(matrix).tolist():
            assert src_ids[row] == tgt_ids[column]


def test_task_samples_padded_and_halved(sweep_result):
    store, _, _ = sweep_result
    viz = load(store, 40)
    tokens, activations = viz["importances"]["task_samples"]
    lengths = viz["task_sample_lengths"]
    assert tokens.shape[0] == 6
    assert lengths.shape == (6,)
    task = get_task(TASK)
    assert tokens[0, : lengths[0]].tolist() == task.xs_test[0].inputs
    assert tokens[3, : lengths[3]].tolist() == task.xs_test[0].patch_from_inputs
    for row, length in enumerate(lengths.tolist()):
        assert bool((tokens[row, length:] == 0).all())
    n_recorded = 0
    for loc, per_node in activations.items():
        assert set(per_node) <= set(viz["circuit_data"][loc].tolist())
        n_recorded += len(per_node)
        for values in per_node.values():
            assert values.shape == tokens.shape
    assert n_recorded == viz["prune_config"]["n_detailed_nodes"] == 30


def test_samples_have_bands(sweep_result):
    store, _, _ = sweep_result
    viz = load(store, 40)
    samples = viz["samples"]
    assert sum(len(per_node) for per_node in samples.values()) == 30
    for loc, per_node in samples.items():
        assert set(per_node) <= set(viz["circuit_data"][loc].tolist())
        for bands in per_node.values():
            assert set(bands) == {0.001, 0.01, 0.1, 0.5}
            bottom, top = bands[0.1]
            assert top
            tokens, values, position = top[0]
            assert tokens.shape == values.shape
            assert 0 <= position < tokens.numel()
            assert values[position] >= bottom[0][1][bottom[0][2]]


def test_samples_stored_compactly(sweep_result):
    store, model, _ = sweep_result
    viz = load(store, 40)
    windows = torch.randint(0, 2047, (8, 32), generator=torch.Generator().manual_seed(0))[:4]
    with torch.no_grad(), hook_recorder() as records:
        model(windows)

    storages = {"tokens": set(), "values": set()}
    for loc, per_node in viz["samples"].items():
        for node, bands in per_node.items():
            activations = records[loc][:, :, node]  # (n_windows, window_len)
            for bottom, top in bands.values():
                for tokens, values, _ in bottom + top:
                    assert tokens.dtype == torch.int16
                    assert values.dtype == torch.float16
                    storages["tokens"].add(tokens.untyped_storage().data_ptr())
                    storages["values"].add(values.untyped_storage().data_ptr())
            # The top example of the smallest band sits at the node's largest activation.
            tokens, values, position = bands[0.001][1][0]
            assert float(values[position]) == pytest.approx(float(activations.max()), rel=1e-3)
            rows = [r for r in range(len(windows)) if _contains(windows[r], tokens.long())]
            assert rows, f"{loc} {node}: example tokens are not a slice of any window"
    assert len(storages["tokens"]) == 1
    assert len(storages["values"]) == 1


def _contains(window: torch.Tensor, piece: torch.Tensor) -> bool:
    return any(
        torch.equal(window[start : start + len(piece)], piece)
        for start in range(len(window) - len(piece) + 1)
    )


def test_task_sample_activations_share_storage(sweep_result):
    store, _, _ = sweep_result
    _, activations = load(store, 40)["importances"]["task_samples"]
    for per_node in activations.values():
        values = list(per_node.values())
        assert all(v.dtype == torch.float16 for v in values)
        assert len({v.untyped_storage().data_ptr() for v in values}) == 1


def test_sweep_json_and_k_optim(sweep_result):
    store, model, summary = sweep_result
    sweep_file = store / "viz" / "tiny" / TASK / "prune_v4" / "sweep.json"
    saved = json.loads(sweep_file.read_text())
    assert saved["k_optim"] == summary["k_optim"]
    assert saved["written_ks"] == [4, 40, "k_optim"]
    ks = [point["k"] for point in saved["points"]]
    assert ks == sorted(ks)
    assert ks[-1] == num_total_nodes(model.config)
    viz = load(store, "k_optim")
    assert viz["prune_config"]["k_label"] == "k_optim"
    assert viz["prune_config"]["k"] == summary["k_optim"]


def test_verify_matches_stored_loss(sweep_result):
    store, model, _ = sweep_result
    for k in (4, 40, "k_optim"):
        path = store / "viz" / "tiny" / TASK / "prune_v4" / str(k) / "viz_data.pt"
        results = verify_viz_data(path, model)
        assert losses_match(results), results


def test_verify_cli_reports_ok(sweep_result, capsys):
    store, _, _ = sweep_result
    path = store / "viz" / "tiny" / TASK / "prune_v4" / "4" / "viz_data.pt"
    code = main(["verify", str(path), "--model-dir", str(store / "models" / "tiny")])
    output = capsys.readouterr().out
    assert code == 0
    assert "(b) circuit nodes ablated" in output
    assert "OK" in output


def test_verify_detects_tampered_loss(sweep_result, tmp_path):
    store, model, _ = sweep_result
    viz = load(store, 4)
    viz["importances"]["interv_loss"] += 0.5
    path = tmp_path / "viz_data.pt"
    torch.save(viz, path)
    assert not losses_match(verify_viz_data(path, model))


def test_registry_reader_accepts_file(sweep_result):
    from registry.viz import read_viz_file

    store, _, _ = sweep_result
    for k in (4, 40, "k_optim"):
        path = store / "viz" / "tiny" / TASK / "prune_v4" / str(k) / "viz_data.pt"
        viz = read_viz_file(path)
        per_sequence = viz.prune_config["interv_loss_per_sequence"]
        assert viz.importances["interv_loss"] == pytest.approx(per_sequence)
        assert viz.task_sample_lengths is not None
        assert viz.ablation_means is not None


def test_random_circuit_size():
    config = tiny_config()
    circuit = random_circuit(config, 25, seed=3)
    assert sum(ids.numel() for ids in circuit.values()) == 25


def test_attribution_baseline_sweep(sweep_result):
    store, model, _ = sweep_result
    windows = torch.randint(0, 2047, (4, 16), generator=torch.Generator().manual_seed(2))
    setup = PruneSetup(
        model=model,
        task=get_task(TASK),
        means=compute_means(model, windows),
        config=PruneConfig(
            n_search_pairs=16, n_eval_pairs=16, n_node_ablation_pairs=2, n_task_sample_pairs=2
        ),
        model_name="tiny",
        progress=False,
    )
    ranking = rank_by_attribution(setup)
    assert all(bool((scores >= 0).all()) for scores in ranking.scores.values())
    summary = run_sweep(setup, ranking, store_root=store, ks=[8], write_k_optim=False)
    assert summary["method"] == "attribution_topk"
    assert load(store, 8, sweep="attribution_topk")["samples"] == {}


def test_means_cache_round_trip(tmp_path):
    model = GPT(tiny_config(n_layer=1))
    windows = torch.randint(0, 2047, (2, 8), generator=torch.Generator().manual_seed(4))
    first = cached_means(model, windows, identity="abc", cache_root=tmp_path)
    files = list((tmp_path / "ablation_means").glob("*.pt"))
    assert len(files) == 1
    with torch.no_grad():
        model.transformer.wte.weight.add_(1.0)  # a cache hit must not recompute
    second = cached_means(model, windows, identity="abc", cache_root=tmp_path)
    for loc in first:
        assert torch.equal(first[loc], second[loc])


def test_damaged_means_cache_is_recomputed(tmp_path):
    model = GPT(tiny_config(n_layer=1))
    windows = torch.randint(0, 2047, (2, 8), generator=torch.Generator().manual_seed(4))
    first = cached_means(model, windows, identity="abc", cache_root=tmp_path)
    (cache_file,) = (tmp_path / "ablation_means").glob("*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:100])  # cut short, as by a kill

    second = cached_means(model, windows, identity="abc", cache_root=tmp_path)
    for loc in first:
        assert torch.equal(first[loc], second[loc])
    third = torch.load(cache_file, weights_only=True)  # rewritten whole
    assert sorted(third) == sorted(first)


def test_validation_windows_cache(tmp_path, monkeypatch):
    from registry import corpus
    from registry.store import Store
    from registry.tokenizer import get_encoding

    encoding = get_encoding("stdlib_2k", Store(REPO_STORE))
    calls = []

    def fake_windows(encoding, n_windows, window_len):
        calls.append((n_windows, window_len))
        return torch.arange(n_windows * window_len).view(n_windows, window_len)

    monkeypatch.setattr(pruning.means, "validation_windows", fake_windows)
    monkeypatch.setattr(corpus, "source_fingerprint", lambda: "corpus-1")
    first = cached_validation_windows(encoding, 3, 4, cache_root=tmp_path)
    second = cached_validation_windows(encoding, 3, 4, cache_root=tmp_path)
    assert torch.equal(first, second)
    assert calls == [(3, 4)]

    cached_validation_windows(encoding, 3, 5, cache_root=tmp_path)
    monkeypatch.setattr(corpus, "source_fingerprint", lambda: "corpus-2")  # a corpus file changed
    cached_validation_windows(encoding, 3, 4, cache_root=tmp_path)
    assert calls == [(3, 4), (3, 5), (3, 4)]


@pytest.mark.slow
def test_prune_cli_end_to_end(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CIRCUIT_SPARSITY_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(1)
    model_dir = tmp_path / "store" / "models" / "cli_tiny"
    save_model(GPT(tiny_config(n_layer=1)), model_dir)
    arguments = ["prune", "--model-dir", str(model_dir), "--task", "bracket_counting"]
    arguments += ["--n-steps", "4", "--mean-windows", "4", "--window-len", "32"]
    arguments += ["--example-windows", "2", "--no-progress", "--k", "8"]
    assert main(arguments) == 0
    sweep = tmp_path / "store" / "viz" / "cli_tiny" / "bracket_counting" / "prune_v4"
    assert (sweep / "8" / "viz_data.pt").is_file()
    assert (sweep / "k_optim" / "viz_data.pt").is_file()
    assert (sweep / "sweep.json").is_file()
    assert "k_optim=" in capsys.readouterr().out
