"""Config options without a reference fixture: concatenated positions, ReLU residual, AbsTopK everywhere."""

import pytest
import torch

from inference.config import ABSTOPK_LOCATIONS
from inference.gpt import GPT, GPTConfig, causal_attention, sinusoidal_positions
from inference.hook_utils import hook_recorder


def build(**overrides):
    torch.manual_seed(0)
    base = dict(
        block_size=16, vocab_size=32, n_layer=2, n_head=2, d_model=16, bias=False, rms_norm=True
    )
    return GPT(GPTConfig(**{**base, **overrides})).eval()


@pytest.mark.parametrize("sinusoidal", [False, True])
def test_cat_pos_emb_widens_block_inputs(sinusoidal):
    model = build(d_pos_emb=4, sinusoidal_cat_pos_emb=sinusoidal)
    keys = model.state_dict().keys()
    assert "transformer.h.0.ln_p1.weight" in keys
    assert "transformer.h.1.ln_p2.weight" in keys
    assert model.transformer.wpe.weight.shape == (16, 4)
    assert model.transformer.h[0].attn.c_attn.weight.shape == (48, 20)

    with torch.no_grad(), hook_recorder() as rec:
        model(torch.randint(0, 32, (2, 8)))

    assert rec["0.attn.act_in"].shape == (2, 8, 20)
    assert rec["1.mlp.act_in"].shape == (2, 8, 20)
    # The last d_pos_emb channels of a block input are the normed position embeddings, equal across the batch.
    pos_part = rec["0.attn.act_in"][..., 16:]
    assert torch.allclose(pos_part[0], pos_part[1])


def test_sinusoidal_positions_are_fixed():
    model = build(d_pos_emb=6, sinusoidal_cat_pos_emb=True)
    assert not model.transformer.wpe.weight.requires_grad
    torch.testing.assert_close(model.transformer.wpe.weight, sinusoidal_positions(16, 6))


def test_cat_pos_emb_changes_with_position_only():
    model = build(d_pos_emb=4)
    idx = torch.full((1, 6), 3)
    with torch.no_grad():
        logits = model(idx)[0]
    assert not torch.allclose(logits[0, 0], logits[0, 5])


def test_relu_residual_keeps_stream_nonnegative():
    model = build(residual_activation_type="relu")
    with torch.no_grad(), hook_recorder() as rec:
        model(torch.randint(0, 32, (2, 8)))
    assert rec["0.resid_mid"].min() >= 0
    assert rec["final_resid"].min() >= 0


# The hook that records each AbsTopK location's output in layer 0.
ABSTOPK_HOOKS = {
    "attn_in": "0.attn.act_in",
    "attn_q": "0.attn.q",
    "attn_k": "0.attn.k",
    "attn_v": "0.attn.v",
    "attn_out": "0.attn.resid_delta",
    "mlp_in": "0.mlp.act_in",
    "mlp_neuron": "0.mlp.post_act",
    "mlp_out": "0.mlp.resid_delta",
    "resid_post_attn": "0.resid_mid",
    "resid_post_mlp": "1.resid_in",
}


def test_abstopk_hooks_cover_every_location():
    assert set(ABSTOPK_HOOKS) == set(ABSTOPK_LOCATIONS)


@pytest.mark.parametrize("location", ABSTOPK_LOCATIONS)
def test_abstopk_acts_at_its_location(location):
    hook = ABSTOPK_HOOKS[location]
    idx = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(0))
    plain = build(d_mlp=32)
    sparse = build(d_mlp=32, afrac=0.25, afrac_loctypes=location)  # same seed, same weights
    with torch.no_grad(), hook_recorder(hook) as plain_rec:
        plain(idx)
    with torch.no_grad(), hook_recorder(hook) as sparse_rec:
        sparse(idx)

    # Only this location differs, so its input is the plain model's tensor at the same hook.
    k = sparse.config.abstopk_k(location)
    assert int((plain_rec[hook] != 0).sum(-1).min()) > k
    top_channels = torch.topk(plain_rec[hook].abs(), k, dim=-1).indices
    top_values = plain_rec[hook].gather(-1, top_channels)
    expected = torch.zeros_like(plain_rec[hook]).scatter(-1, top_channels, top_values)
    torch.testing.assert_close(sparse_rec[hook], expected, atol=0, rtol=0)


def test_sinusoidal_positions_formula():
    # Periods 4 and 16 tokens: position 1 is a quarter and a sixteenth of a turn.
    codes = sinusoidal_positions(16, 4)
    turn = 2 * torch.pi
    expected = torch.tensor(
        [
            torch.sin(torch.tensor(turn / 4)),
            torch.sin(torch.tensor(turn / 16)),
            torch.cos(torch.tensor(turn / 4)),
            torch.cos(torch.tensor(turn / 16)),
        ]
    )
    torch.testing.assert_close(codes[0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(codes[1], expected)


def test_position_norms_feed_their_sublayer():
    model = build(d_pos_emb=4)
    with torch.no_grad():
        model.transformer.h[0].ln_p1.weight.zero_()  # attention's copy of the positions
    with torch.no_grad(), hook_recorder() as rec:
        model(torch.randint(0, 32, (2, 8)))
    assert rec["0.attn.act_in"].shape[-1] == 16 + 4
    assert torch.count_nonzero(rec["0.attn.act_in"][..., 16:]) == 0
    assert torch.count_nonzero(rec["0.mlp.act_in"][..., 16:]) > 0


def test_non_learnable_bigram_table_is_a_buffer():
    model = build(enable_bigram_table=True, learnable_bigram_table=False)
    assert "bigram_table" in dict(model.named_buffers())
    assert "bigram_table" not in dict(model.named_parameters())


def test_bigram_last_row_gets_no_gradient():
    model = build(enable_bigram_table=True, learnable_bigram_table=True).train()
    idx = torch.tensor([[31, 5, 31, 7]])  # 31: the last token id, as end of text is
    _, loss, _ = model(idx, targets=torch.tensor([[5, 31, 7, 2]]))
    loss.backward()

    grad = model.bigram_table.grad
    assert torch.count_nonzero(grad[31]) == 0
    assert torch.count_nonzero(grad[5]) > 0
    assert torch.count_nonzero(grad[7]) > 0


def test_logit_positions_match_full_logits():
    model = build(enable_bigram_table=True, sink=True, afrac=0.25)
    with torch.no_grad():
        model.bigram_table.normal_()  # zero at init, which would hide a wrong bigram row
    idx = torch.randint(0, 32, (3, 8), generator=torch.Generator().manual_seed(1))
    positions = torch.tensor([7, 0, 4])
    with torch.no_grad():
        full = model(idx)[0]
        picked = model(idx, logit_positions=positions)[0]
    assert picked.shape == (3, 32)
    torch.testing.assert_close(picked, full[torch.arange(3), positions], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "positions, message",
    [
        (torch.tensor([0, 8]), r"must lie in \[0, 8\)"),
        (torch.tensor([-1, 0]), r"must lie in \[0, 8\)"),
        (torch.tensor([0, 1, 2]), r"must be a \(2,\) integer tensor"),
    ],
)
def test_logit_positions_rejected(positions, message):
    model = build()
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(2, 8, dtype=torch.long), logit_positions=positions)


@pytest.mark.parametrize(
    ("positions", "message"),
    [
        ([0, 1], r"must be a torch.Tensor of positions \(a LongTensor of shape \(2,\)\); got list"),
        (torch.tensor([0.0, 1.0]), "got dtype torch.float32; convert it with logit_positions.long"),
        (torch.tensor([True, False]), "got dtype torch.bool; convert it with logit_positions.long"),
        (torch.tensor([0, 1], dtype=torch.uint8), "got dtype torch.uint8"),
    ],
)
def test_logit_positions_wrong_type_rejected(positions, message):
    model = build()
    with pytest.raises(TypeError, match=message):
        model(torch.zeros(2, 8, dtype=torch.long), logit_positions=positions)


def test_int32_logit_positions_match_int64():
    model = build()
    idx = torch.randint(0, 32, (2, 8), generator=torch.Generator().manual_seed(1))
    positions = torch.tensor([5, 2])
    with torch.no_grad():
        expected = model(idx, logit_positions=positions)[0]
        picked = model(idx, logit_positions=positions.int())[0]
    assert torch.equal(picked, expected)


def test_logit_positions_reject_targets():
    model = build()
    idx = torch.zeros(2, 8, dtype=torch.long)
    with pytest.raises(ValueError, match="either targets or logit_positions"):
        model(idx, targets=idx, logit_positions=torch.tensor([1, 2]))


@pytest.mark.parametrize("sink_value", [-3.0, 0.0, 4.0])
def test_sink_sdpa_matches_explicit_with_grads(sink_value):
    torch.manual_seed(0)
    B, n_head, T, d_head = 2, 3, 7, 4
    q, k, v = (torch.randn(B, n_head, T, d_head, requires_grad=True) for _ in range(3))
    sink_logit = torch.full((n_head,), sink_value).add_(torch.arange(n_head)).requires_grad_(True)

    outputs, grads = [], []
    for use_sdpa in (False, True):
        y = causal_attention(q, k, v, sink_logit, use_sdpa=use_sdpa)
        outputs.append(y)
        grads.append(torch.autograd.grad(y.square().sum(), (q, k, v, sink_logit)))

    assert outputs[1].shape == (B, n_head, T, d_head)
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-6, rtol=0)
    for name, sdpa_grad, explicit_grad in zip("qkvs", grads[1], grads[0], strict=True):
        torch.testing.assert_close(sdpa_grad, explicit_grad, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("sink", [False, True])
def test_nan_queries_differ_between_paths(sink):
    # Pins the difference that causal_attention's docstring notes: if a torch upgrade changes
    # either path, this fails and the note needs rewording.
    q = torch.full((1, 2, 3, 4), float("nan"))
    k, v = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    sink_logit = torch.zeros(2) if sink else None
    explicit = causal_attention(q, k, v, sink_logit, use_sdpa=False)
    sdpa = causal_attention(q, k, v, sink_logit, use_sdpa=True)
    assert explicit.isnan().all()
    assert torch.equal(sdpa, torch.zeros_like(sdpa))
