"""Hook recording and interventions: name filters, thread isolation, patching, circuits."""

import threading

import pytest
import torch

from inference.circuit import apply_circuit, mean_activations, node_locations
from inference.gpt import GPT, GPTConfig
from inference.hook_utils import hook_recorder
from inference.interventions import mean_ablate, patch, zero_ablate


def tiny_model(n_layer=2, seed=0, **overrides):
    torch.manual_seed(seed)
    config = GPTConfig(
        block_size=16,
        vocab_size=32,
        n_layer=n_layer,
        n_head=2,
        d_model=16,
        bias=False,
        rms_norm=True,
        tied_unembed=False,
        **overrides,
    )
    return GPT(config).eval()


def tokens(batch=2, T=8, seed=1):
    return torch.randint(0, 32, (batch, T), generator=torch.Generator().manual_seed(seed))


def test_filter_one_hook_records_that_hook_only():
    model = tiny_model(n_layer=12)
    with torch.no_grad(), hook_recorder("0.attn.q") as rec:
        model(tokens())
    assert list(rec) == ["0.attn.q"]


def test_filter_one_layer_records_that_layer_only():
    model = tiny_model(n_layer=12)
    with torch.no_grad(), hook_recorder("1") as rec:
        model(tokens())
    assert rec
    assert all(name.startswith("1.") for name in rec)
    assert "1.mlp.post_act" in rec
    assert len(rec) == 11


def test_filter_default_records_every_hook():
    model = tiny_model(n_layer=2)
    with torch.no_grad(), hook_recorder() as rec:
        model(tokens())
    assert len(rec) == 2 * 11 + 1
    assert "final_resid" in rec


def test_unknown_intervention_name_raises():
    model = tiny_model()
    with pytest.raises(KeyError, match="0.attn.qq"):
        with torch.no_grad(), hook_recorder(interventions={"0.attn.qq": zero_ablate()}):
            model(tokens())


def test_failing_intervention_leaves_no_state():
    model = tiny_model()

    def boom(x):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with hook_recorder(interventions={"0.attn.v": boom}):
            model(tokens())
    with torch.no_grad(), hook_recorder("0.attn.v") as rec:
        model(tokens())
    assert list(rec) == ["0.attn.v"]


def test_nested_recorders_rejected():
    with hook_recorder():
        with pytest.raises(RuntimeError, match="nested"):
            with hook_recorder():
                pass


def test_patch_with_itself_is_bit_identical():
    model = tiny_model()
    idx = tokens()
    with torch.no_grad(), hook_recorder() as rec:
        clean = model(idx)[0]
    interventions = {name: patch(rec[name]) for name in rec if name != "final_resid"}
    with torch.no_grad(), hook_recorder(interventions=interventions):
        patched = model(idx)[0]
    assert torch.equal(clean, patched)


def test_zero_ablation_changes_only_chosen_channels():
    model = tiny_model()
    with (
        torch.no_grad(),
        hook_recorder("0.mlp.post_act", {"0.mlp.post_act": zero_ablate([1, 5])}) as rec,
    ):
        model(tokens())
    post = rec["0.mlp.post_act"]
    assert torch.all(post[..., [1, 5]] == 0)
    assert post[..., 0].abs().sum() > 0


def test_mean_ablate_sets_means():
    model = tiny_model()
    means = torch.arange(16, dtype=torch.float32)
    with (
        torch.no_grad(),
        hook_recorder("0.attn.resid_delta", {"0.attn.resid_delta": mean_ablate(means, [2])}) as rec,
    ):
        model(tokens())
    assert torch.all(rec["0.attn.resid_delta"][..., 2] == 2.0)


def test_save_grads_uses_full_names():
    model = tiny_model()
    model.requires_grad_(True)
    idx = tokens()
    with hook_recorder(".*", save_grads=True) as rec:
        _, loss, _ = model(idx, targets=idx)
        loss.backward()
    assert "1.mlp.post_act.grad" in rec
    assert "0.attn.q.grad" in rec
    assert rec["1.mlp.post_act.grad"].shape == rec["1.mlp.post_act"].shape
    assert rec["0.attn.q.grad"].abs().sum() > 0


def test_threads_record_only_their_own():
    model = tiny_model()
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def run(name, idx):
        try:
            with torch.no_grad(), hook_recorder() as rec:
                barrier.wait()
                for _ in range(20):
                    model(idx)
            results[name] = rec["final_resid"].clone()
        except Exception as err:  # reported below
            errors.append(err)

    a, b = tokens(seed=1), tokens(batch=3, seed=2)
    threads = [
        threading.Thread(target=run, args=("a", a)),
        threading.Thread(target=run, args=("b", b)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with torch.no_grad(), hook_recorder("final_resid") as ref_a:
        model(a)
    assert results["a"].shape[0] == 2
    assert results["b"].shape[0] == 3
    assert torch.equal(results["a"], ref_a["final_resid"])


def test_all_nodes_circuit_reproduces_clean_logits():
    model = tiny_model(afrac=0.5)
    idx = tokens()
    means = mean_activations(model, [tokens(seed=5)])
    full = {loc: torch.arange(m.numel()) for loc, m in means.items()}
    with torch.no_grad():
        clean = model(idx)[0]
        with apply_circuit(model, full, means):
            circuit = model(idx)[0]
    assert torch.equal(clean, circuit)


def test_empty_circuit_sets_every_node_to_its_mean():
    model = tiny_model()
    means = mean_activations(model, [tokens(seed=5)])
    with torch.no_grad(), apply_circuit(model, {}, means, regex="0.mlp.post_act") as rec:
        model(tokens())
    assert torch.allclose(
        rec["0.mlp.post_act"], means["0.mlp.post_act"].expand_as(rec["0.mlp.post_act"])
    )


def test_circuit_with_unknown_location_rejected():
    model = tiny_model()
    means = mean_activations(model, [tokens()])
    with pytest.raises(KeyError, match="7.attn.q"):
        with apply_circuit(model, {"7.attn.q": torch.tensor([0])}, means):
            pass


def test_node_locations_count():
    assert len(node_locations(tiny_model(n_layer=3).config)) == 24
