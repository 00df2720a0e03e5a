"""Pruner: gates, losses, top-k circuits, and recovery of a hand-planted circuit."""

from __future__ import annotations

import math

import pytest
import torch

from inference.gpt import GPT, GPTConfig
from pruning.config import PruneConfig
from pruning.data import (
    bucketed_pair_logits,
    fit_logit_calibration,
    make_batch,
    pair_logits,
    sequence_losses,
)
from pruning.masks import heaviside_ste
from pruning.means import compute_means
from pruning.pipeline import PruneSetup
from pruning.search import circuit_from_scores, circuit_loss, search_k
from pruning.train import gated_task_loss, lr_factor, pairs_per_step, train_gates
from registry.tasks import Datapoint, Task

# Token ids of the planted task: the first token (A or B) decides the answer (X or Y)
# at the query token Q, several filler tokens later.
A, B, Q, X, Y = 1, 2, 10, 11, 12
FILLERS = range(3, 10)
# Residual channels: 0 "is A or B" (key), 1 the A/B sign (value), 2 "is Q" (query),
# 5 the attention output read by the unembedding, 7 a constant.
ESSENTIAL = {
    "0.attn.act_in": {0, 1, 2},
    "0.attn.q": {0},
    "0.attn.k": {0},
    "0.attn.v": {1},
    "0.attn.resid_delta": {5},
}


def planted_model() -> GPT:
    """Build a one-layer model whose task answer flows only through the ESSENTIAL nodes.

    Head 0 attends from Q to the first token (q channel 0 reads "is Q", k channel 0
    reads "is A or B"), copies its sign with v channel 1 and writes it to residual
    channel 5, which the unembedding reads. Fillers carry random signs on channel 1,
    so without that attention pattern the answer is lost. The MLP is all zeros.
    The unembedding is kept small (full-model loss about 0.014): with a loss near
    zero the task gradient vanishes and the sparsity penalty closes every gate.
    """
    config = GPTConfig(
        block_size=16,
        vocab_size=16,
        n_layer=1,
        n_head=2,
        d_model=8,
        d_mlp=8,
        bias=False,
        rms_norm=True,
        tied_unembed=False,
        flash=False,
    )
    model = GPT(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        for norm in (
            model.transformer.h[0].ln_1,
            model.transformer.h[0].ln_2,
            model.transformer.ln_f,
        ):
            norm.weight.fill_(1.0)

        wte = model.transformer.wte.weight  # (vocab_size, d_model)
        wte[:, 7] = 1.0
        wte[A, 0], wte[A, 1] = 1.0, 1.0
        wte[B, 0], wte[B, 1] = 1.0, -1.0
        for filler in FILLERS:
            wte[filler, 1] = 1.0 if filler % 2 else -1.0
        wte[Q, 2] = 1.0

        c_attn = model.transformer.h[0].attn.c_attn.weight  # (3 * 8, 8): q, k, v rows
        # q channel 0 <- "is Q" minus a constant, so that a mean-ablated "is Q"
        # gives a negative query and the head looks away from the first token.
        c_attn[0, 2] = 8.0
        c_attn[0, 7] = -2.0
        c_attn[8 + 0, 0] = 4.0  # k channel 0 <- "is A or B"
        c_attn[16 + 1, 1] = 1.0  # v channel 1 <- sign
        model.transformer.h[0].attn.c_proj.weight[5, 1] = 1.0  # residual channel 5 <- v channel 1

        model.lm_head.weight[X, 5] = 1.0
        model.lm_head.weight[Y, 5] = -1.0
    return model


def planted_task(n_train=256, n_test=64) -> Task:
    generator = torch.Generator().manual_seed(0)

    def pairs(n):
        result = []
        for _ in range(n):
            n_fill = int(torch.randint(2, 8, (1,), generator=generator))
            fill = [
                FILLERS[int(i)]
                for i in torch.randint(0, len(FILLERS), (n_fill,), generator=generator)
            ]
            result.append(Datapoint([A, *fill, Q], [B, *fill, Q], X, Y))
        return result

    return Task("planted", pairs(n_train), pairs(n_test))


def planted_means(model) -> dict:
    generator = torch.Generator().manual_seed(1)
    windows = torch.randint(1, Q + 1, (64, 12), generator=generator)  # "pretraining" text
    return compute_means(model, windows)


def test_heaviside_ste_forward_and_gradient():
    tau = torch.tensor([-0.5, 0.0, 0.3], requires_grad=True)
    gate = heaviside_ste(tau, temperature=2.0)
    assert gate.tolist() == [0.0, 0.0, 1.0]
    gate.sum().backward()
    sigmoid = torch.sigmoid(tau.detach() / 2.0)
    expected = sigmoid * (1 - sigmoid) / 2.0
    assert torch.allclose(tau.grad, expected)


def test_lr_factor_warmup_then_decay():
    assert lr_factor(0, 100, 0.05) == pytest.approx(0.2)
    assert lr_factor(4, 100, 0.05) == pytest.approx(1.0)
    assert lr_factor(5, 100, 0.05) == pytest.approx(1.0)
    assert lr_factor(52, 100, 0.05) == pytest.approx(48 / 95)
    assert lr_factor(100, 100, 0.05) == 0.0


def test_sequence_losses_hand_computed():
    batch = make_batch([Datapoint([1, 2], [1, 3], 5, 6)], block_size=8)
    pair_logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    losses = sequence_losses(pair_logits, batch)
    assert losses[0].item() == pytest.approx(math.log1p(math.exp(-2.0)))
    assert losses[1].item() == pytest.approx(math.log1p(math.exp(2.0)))


def test_make_batch_pads_and_orders():
    pairs = [Datapoint([1, 2, 3], [4, 5], 7, 8), Datapoint([6], [9, 9, 9, 9], 7, 8)]
    batch = make_batch(pairs, block_size=8)
    assert batch.tokens.tolist() == [[1, 2, 3, 0], [6, 0, 0, 0], [4, 5, 0, 0], [9, 9, 9, 9]]
    assert batch.lengths.tolist() == [3, 1, 2, 4]
    assert batch.is_patch.tolist() == [False, False, True, True]


def test_make_batch_rejects_long_sequence():
    with pytest.raises(ValueError, match="block_size is 4"):
        make_batch([Datapoint([1] * 5, [1], 2, 3)], block_size=4)


def test_calibration_lowers_loss():
    batch = make_batch([Datapoint([1], [2], 5, 6)] * 4, block_size=8)
    # Right sign everywhere but tiny margins, plus a bias towards the target token.
    pair_logits = torch.tensor([[0.3, 0.0]] * 4 + [[0.1, 0.0]] * 4)
    before = sequence_losses(pair_logits, batch).mean().item()
    scale, shift = fit_logit_calibration(pair_logits, batch, n_steps=16)
    after = sequence_losses(pair_logits, batch, scale, shift).mean().item()
    assert after < before
    assert scale > 1.0
    assert shift < 0.0


def test_calibration_scale_stays_bounded_on_separable_pairs():
    # Every train pair is right by a wide margin: the unbounded fit grew the scale to ~1e9, and
    # one wrong test pair then cost billions of nats (else_elif at k=16 in the embedded store).
    batch = make_batch([Datapoint([1], [2], 5, 6)] * 4, block_size=8)
    pair_logits = torch.tensor([[3.0, 0.0]] * 4 + [[0.0, 3.0]] * 4)
    scale, shift = fit_logit_calibration(pair_logits, batch, n_steps=50, max_scale=10.0)
    assert 1.0 < scale <= 10.0
    wrong = torch.tensor([[0.0, 2.0]] * 4 + [[0.0, 3.0]] * 4)  # the inputs now prefer alt
    assert sequence_losses(wrong, batch, scale, shift).max().item() < 10.0 * 2.0 + 1.0


def test_calibration_keeps_identity_when_fit_does_not_help():
    batch = make_batch([Datapoint([1], [2], 5, 6)] * 2, block_size=8)
    pair_logits = torch.zeros(4, 2)  # no information: (1, 0) is already optimal
    assert fit_logit_calibration(pair_logits, batch, n_steps=16) == (1.0, 0.0)
    with pytest.raises(ValueError, match="max_scale"):
        fit_logit_calibration(pair_logits, batch, n_steps=16, max_scale=1.0)


def test_circuit_from_scores_top_k_and_ties():
    config = GPTConfig(block_size=8, vocab_size=16, n_layer=1, n_head=1, d_model=4, d_mlp=4)
    scores = {loc: torch.zeros(4) for loc in circuit_from_scores(config, _zeros(config), 0)}
    scores["0.attn.q"] = torch.tensor([0.5, 1.0, 1.0, -1.0])
    scores["0.mlp.post_act"] = torch.tensor([0.9, 0.0, 0.0, 0.0])
    circuit = circuit_from_scores(config, scores, 3)
    assert circuit["0.attn.q"].tolist() == [1, 2]
    assert circuit["0.mlp.post_act"].tolist() == [0]
    assert sum(len(ids) for ids in circuit.values()) == 3
    with pytest.raises(ValueError, match="outside"):
        circuit_from_scores(config, scores, 33)


def _zeros(config):
    from inference.circuit import location_width, node_locations

    return {loc: torch.zeros(location_width(config, loc)) for loc in node_locations(config)}


def test_planted_model_needs_each_essential_node():
    model = planted_model()
    task = planted_task()
    means = planted_means(model)
    batch = make_batch(task.xs_test, model.config.block_size)
    essential = {loc: torch.tensor(sorted(ids)) for loc, ids in ESSENTIAL.items()}

    assert circuit_loss(model, None, means, batch) < 0.02
    assert circuit_loss(model, essential, means, batch) < 0.02
    for loc, ids in ESSENTIAL.items():
        for node in ids:
            reduced = dict(essential)
            reduced[loc] = torch.tensor(sorted(ids - {node}), dtype=torch.long)
            assert circuit_loss(model, reduced, means, batch) > 0.3, f"{loc} {node}"


def test_pruner_finds_planted_circuit():
    torch.manual_seed(0)
    model = planted_model()
    task = planted_task()
    means = planted_means(model)
    config = PruneConfig(n_steps=200, batch_size=32, n_search_pairs=128)

    gates, history = train_gates(model, task.xs, means, config, progress=False)
    scores = gates.scores()
    search_batch = make_batch(task.xs[:128], model.config.block_size)
    k, _ = search_k(model, scores, means, search_batch, config.target_loss)
    circuit = circuit_from_scores(model.config, scores, k)

    found = {loc: set(ids.tolist()) for loc, ids in circuit.items() if len(ids)}
    assert found == ESSENTIAL
    assert history[-1][1] < 0.15
    for loc, ids in ESSENTIAL.items():
        assert bool((scores[loc][sorted(ids)] > 0).all()), loc


def test_apply_circuit_matches_gated_training_forward():
    model = planted_model()
    task = planted_task(n_train=8, n_test=8)
    means = planted_means(model)
    batch = make_batch(task.xs_test, model.config.block_size)
    essential = {loc: torch.tensor(sorted(ids)) for loc, ids in ESSENTIAL.items()}

    from pruning.train import gated_task_loss

    full = circuit_from_scores(model.config, _zeros(model.config), 0)
    gates = {loc: torch.zeros(len(means[loc])) for loc in full}
    for loc, ids in essential.items():
        gates[loc][ids] = 1.0
    gated = gated_task_loss(model, gates, means, batch).item()
    assert gated == pytest.approx(circuit_loss(model, essential, means, batch), abs=1e-6)


def test_prune_setup_full_loss_on_test_pairs():
    model = planted_model()
    task = planted_task(n_train=16, n_test=8)
    setup = PruneSetup(
        model=model,
        task=task,
        means=planted_means(model),
        config=PruneConfig(n_search_pairs=8, n_node_ablation_pairs=4, n_task_sample_pairs=2),
        model_name="planted",
        progress=False,
    )
    assert len(setup.eval_batch) == 16
    assert len(setup.node_batch) == 8
    assert setup.full_loss < 0.02


def test_bucketed_logits_match_one_padded_run():
    torch.manual_seed(0)
    config = GPTConfig(
        block_size=16,
        vocab_size=16,
        n_layer=2,
        n_head=2,
        d_model=8,
        d_mlp=16,
        afrac=0.5,
        sink=True,
        enable_bigram_table=True,
    )
    model = GPT(config).eval()
    batch = make_batch(planted_task(n_train=100, n_test=1).xs, config.block_size)
    assert batch.lengths.unique().numel() > 1  # several lengths, so the groups differ
    assert len(batch) == 200  # more than one group of SEQUENCES_PER_BUCKET
    with torch.no_grad():
        one_run = pair_logits(model, batch)
        bucketed = bucketed_pair_logits(model, batch)
    torch.testing.assert_close(bucketed, one_run, atol=1e-5, rtol=0)


def test_gated_loss_rejects_per_sequence_gates():
    model = planted_model()
    task = planted_task(n_train=4, n_test=1)
    means = planted_means(model)
    batch = make_batch(task.xs, model.config.block_size)
    gates = {loc: torch.ones(len(mean)) for loc, mean in means.items()}
    gates["0.attn.q"] = torch.ones(len(batch), 1, len(means["0.attn.q"]))
    with pytest.raises(ValueError, match=r"gates at \['0.attn.q'\] must have shape"):
        gated_task_loss(model, gates, means, batch)


def _search_with_threshold(monkeypatch, needed: int, start: int | None):
    """Run search_k on a loss that reaches the target exactly from `needed` kept nodes on."""
    import pruning.search

    def loss_by_size(model, circuit, means, batch):
        return 0.1 if sum(len(ids) for ids in circuit.values()) >= needed else 1.0

    monkeypatch.setattr(pruning.search, "circuit_loss", loss_by_size)
    model = planted_model()
    scores = {loc: torch.rand(len(mean)) for loc, mean in planted_means(model).items()}
    batch = make_batch(planted_task(n_train=4, n_test=1).xs, model.config.block_size)
    return search_k(model, scores, {}, batch, 0.15, start=start)


def test_search_k_scans_up_without_start(monkeypatch):
    k, history = _search_with_threshold(monkeypatch, needed=11, start=None)
    assert k == 11
    assert [k for k, _ in history] == [1, 2, 4, 8, 16, 12, 10, 11]


def test_search_k_halves_from_start_above(monkeypatch):
    k, history = _search_with_threshold(monkeypatch, needed=11, start=40)
    assert k == 11
    assert [k for k, _ in history] == [40, 20, 10, 15, 13, 12, 11]


def test_search_k_doubles_from_start_below(monkeypatch):
    k, history = _search_with_threshold(monkeypatch, needed=11, start=3)
    assert k == 11
    assert [k for k, _ in history] == [3, 6, 12, 9, 11, 10]


def test_search_k_start_near_answer_saves_evaluations(monkeypatch):
    _, from_scan = _search_with_threshold(monkeypatch, needed=30, start=None)
    _, from_start = _search_with_threshold(monkeypatch, needed=30, start=40)
    assert len(from_start) < len(from_scan)


def test_search_k_unreachable_target_returns_all_nodes(monkeypatch):
    from inference.circuit import num_total_nodes

    n_total = num_total_nodes(planted_model().config)
    for start in (None, 5, n_total, 10 * n_total):
        k, history = _search_with_threshold(monkeypatch, needed=n_total + 1, start=start)
        assert k == n_total, start
        assert [k for k, _ in history].count(n_total) == 1, start


def test_node_gates_n_open_counts_positive_tau():
    from pruning.masks import NodeGates

    config = planted_model().config
    gates = NodeGates(config, init_bias=-1.0, init_noise=0.0)
    assert gates.n_open() == 0
    with torch.no_grad():
        gates.tau("0.attn.q")[[0, 3]] = 0.5
        gates.tau("0.mlp.post_act")[1] = 1e-6
    assert gates.n_open() == 3


def _pairs_of_length(n_pairs: int, length: int) -> list[Datapoint]:
    return [Datapoint([1] * length, [2] * length, 3, 4) for _ in range(n_pairs)]


def test_pairs_per_step_keeps_token_budget():
    config = PruneConfig(batch_size=64, max_batch_tokens=3072)
    # Short prompts: 64 pairs x 2 x 20 tokens = 2560 tokens, within the budget.
    assert pairs_per_step(_pairs_of_length(100, 20), config) == 64
    # Long prompts: 2 x 40 tokens per pair, so 3072 // 80 = 38 pairs per step.
    assert pairs_per_step(_pairs_of_length(100, 40), config) == 38
    # Never fewer than one pair, whatever the length.
    assert pairs_per_step(_pairs_of_length(3, 5000), config) == 1


def test_max_batch_tokens_must_be_positive():
    with pytest.raises(ValueError, match="max_batch_tokens=0 must be positive"):
        PruneConfig(max_batch_tokens=0)


def _store_with_small_tokenizer(root, n_merges: int):
    """Write `root/stdlib_2k` with the embedded tokenizer's first `n_merges` merges only."""
    import json
    from pathlib import Path

    embedded = Path(__file__).resolve().parents[1] / "store" / "stdlib_2k"
    merges = embedded.joinpath("vocab.bpe").read_text(encoding="utf-8").splitlines()
    ranks = json.loads(embedded.joinpath("encoder.json").read_text(encoding="utf-8"))

    n_tokens = 256 + n_merges
    folder = root / "stdlib_2k"
    folder.mkdir(parents=True)
    folder.joinpath("vocab.bpe").write_text("\n".join(merges[: 1 + n_merges]) + "\n", "utf-8")
    kept = {token: rank for token, rank in ranks.items() if rank < n_tokens}
    kept["<|endoftext|>"] = n_tokens
    folder.joinpath("encoder.json").write_text(json.dumps(kept), encoding="utf-8")


def test_model_encoding_reads_model_store(tmp_path):
    from pruning.run import model_encoding

    _store_with_small_tokenizer(tmp_path / "other", n_merges=100)
    model_dir = tmp_path / "other" / "models" / "m"
    model_dir.mkdir(parents=True)

    assert model_encoding(model_dir, "stdlib_2k").n_vocab == 357


def test_model_encoding_falls_back_to_default(tmp_path):
    from pruning.run import model_encoding

    outside = tmp_path / "elsewhere" / "m"
    outside.mkdir(parents=True)
    no_tokenizer = tmp_path / "bare" / "models" / "m"
    no_tokenizer.mkdir(parents=True)

    assert model_encoding(outside, "stdlib_2k").n_vocab == 2048
    assert model_encoding(no_tokenizer, "stdlib_2k").n_vocab == 2048
