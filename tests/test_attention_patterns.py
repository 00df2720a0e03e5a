"""Head attention patterns, per-channel contributions, and next-token predictions of a circuit.

Every check compares with what the model itself computes: the recorded head output `attn.y`
must equal the pattern applied to the recorded values, on the explicit and the SDPA path, with
and without an attention sink.
"""

import math

import pytest
import torch

from inference.attention import (
    attention_probs,
    causal_mask,
    channel_score_contributions,
    head_output,
    record_head,
    weighted_value_contributions,
)
from inference.checks import OutOfRangeError
from inference.circuit import mean_activations
from inference.gpt import GPT, GPTConfig
from inference.hook_utils import hook_recorder
from inference.next_token import top_next_tokens

D_HEAD = 8
N_HEAD = 2


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    config = GPTConfig(
        block_size=16,
        vocab_size=32,
        n_layer=2,
        n_head=N_HEAD,
        d_head=D_HEAD,
        d_model=16,
        bias=False,
        rms_norm=True,
        tied_unembed=False,
        **overrides,
    )
    model = GPT(config).eval()
    if config.sink:
        with torch.no_grad():
            for block in model.transformer.h:
                block.attn.attn_imp.sink_logit.copy_(torch.tensor([0.5, -1.0]))
    return model


def tokens(length=9, seed=1):
    return torch.randint(0, 32, (1, length), generator=torch.Generator().manual_seed(seed))


def recorded_head_output(model, idx, layer, head):
    with torch.no_grad(), hook_recorder(regex=f"{layer}.attn.y") as records:
        model(idx)
    return records[f"{layer}.attn.y"][0, :, head * D_HEAD : (head + 1) * D_HEAD]  # (pos, d_head)


def test_head_rows_sum_to_one():
    head = record_head(tiny_model(), tokens(), layer=1, head=1)
    probs = head.probs
    assert probs.shape == (9, 9)
    below = probs[causal_mask(9)]
    assert bool((below >= 0).all())
    assert torch.allclose(torch.nansum(probs, dim=-1), torch.ones(9), atol=1e-6)


def test_head_pattern_is_causal():
    probs = record_head(tiny_model(), tokens(), layer=0, head=0).probs
    above = ~causal_mask(9)
    assert bool(torch.isnan(probs[above]).all())
    assert not bool(torch.isnan(probs[~above]).any())
    assert probs[0, 0].item() == pytest.approx(1.0)  # query 0 attends only to key 0


@pytest.mark.parametrize("flash", [False, True])
@pytest.mark.parametrize("sink", [False, True])
def test_pattern_times_values_is_head_output(flash, sink):
    model = tiny_model(flash=flash, sink=sink)
    idx = tokens()
    for layer in range(2):
        for head in range(N_HEAD):
            recorded = record_head(model, idx, layer, head)
            expected = recorded_head_output(model, idx, layer, head)
            output = head_output(recorded.probs, recorded.v)
            assert torch.allclose(output, expected, atol=1e-5), (layer, head)


def test_sink_takes_a_share_of_each_row():
    head = record_head(tiny_model(sink=True), tokens(), layer=0, head=0)
    assert head.sink_logit == pytest.approx(0.5)
    sums = torch.nansum(head.probs, dim=-1)
    assert bool((sums < 1).all())
    # The sink's share at query 0: its logit against the single score q0 . k0 / sqrt(d_head).
    score = float(head.q[0] @ head.k[0]) / math.sqrt(D_HEAD)
    sink_share = math.exp(0.5) / (math.exp(0.5) + math.exp(score))
    assert float(sums[0]) == pytest.approx(1 - sink_share, abs=1e-6)


def test_channel_contributions_sum_to_scores():
    head = record_head(tiny_model(), tokens(), layer=1, head=0)
    total = sum(channel_score_contributions(head.q, head.k, c) for c in range(D_HEAD))
    scores = (head.q @ head.k.T) / math.sqrt(D_HEAD)
    mask = causal_mask(9)
    assert torch.allclose(total[mask], scores[mask], atol=1e-6)
    assert bool(torch.isnan(total[~mask]).all())
    # The softmax of the summed contributions is the head's pattern.
    rebuilt = torch.softmax(total.masked_fill(~mask, float("-inf")), dim=-1)
    assert torch.allclose(rebuilt[mask], head.probs[mask], atol=1e-6)


def test_channel_contribution_is_outer_product():
    q = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    k = torch.tensor([[0.5, 4.0], [2.0, 1.0]])
    contributions = channel_score_contributions(q, k, channel=1)
    scale = 1 / math.sqrt(2)
    assert contributions[0, 0].item() == pytest.approx(2.0 * 4.0 * scale)
    assert contributions[1, 0].item() == pytest.approx(-1.0 * 4.0 * scale)
    assert contributions[1, 1].item() == pytest.approx(-1.0 * 1.0 * scale)
    assert math.isnan(contributions[0, 1].item())


def test_weighted_values_sum_to_output_channel():
    model = tiny_model(sink=True)
    idx = tokens()
    head = record_head(model, idx, layer=1, head=1)
    expected = recorded_head_output(model, idx, 1, 1)
    for channel in range(D_HEAD):
        weighted = weighted_value_contributions(head.probs, head.v, channel)
        assert torch.allclose(torch.nansum(weighted, dim=-1), expected[:, channel], atol=1e-5)


def test_attention_probs_without_model():
    q = torch.zeros(3, 4)
    probs = attention_probs(q, torch.randn(3, 4))
    assert torch.allclose(probs[2], torch.full((3,), 1 / 3))
    assert torch.allclose(probs[1, :2], torch.full((2,), 0.5))


@pytest.mark.parametrize(
    ("layer", "head", "message"),
    [(2, 0, "layer 2 is out of range"), (0, 2, "head 2 is out of range")],
)
@pytest.mark.parametrize("caught", [OutOfRangeError, IndexError, ValueError])
def test_record_head_rejects_bad_head(layer, head, message, caught):
    with pytest.raises(caught, match=message):
        record_head(tiny_model(), tokens(), layer, head)


@pytest.mark.parametrize(
    ("layer", "head", "message"),
    [
        (True, 0, "layer must be an integer; got the bool True"),
        (1.5, 0, r"layer must be an integer; got 1\.5 \(float\)"),
        (1.0, 0, r"layer must be an integer; got 1\.0 \(float\)"),
        ("0", 0, r"layer must be an integer; got '0' \(str\)"),
        (0, 2.5, r"head must be an integer; got 2\.5 \(float\)"),
        (0, False, "head must be an integer; got the bool False"),
    ],
)
def test_record_head_rejects_non_integer(layer, head, message):
    with pytest.raises(TypeError, match=message):
        record_head(tiny_model(), tokens(), layer, head)


def test_record_head_rejects_list_idx():
    with pytest.raises(TypeError, match="idx must be a torch.Tensor of token ids, .* got list"):
        record_head(tiny_model(), [[1, 2, 3]], 0, 0)


@pytest.mark.parametrize("sink_logit", [None, 0.5])
def test_attention_on_input_device(sink_logit):
    # The meta device replaces CUDA here. A mask or sink made on the CPU cannot mix with either.
    q = torch.zeros(4, D_HEAD, device="meta")
    assert attention_probs(q, q, sink_logit).device.type == "meta"
    assert channel_score_contributions(q, q, 1).device.type == "meta"


def test_channel_out_of_range_rejected():
    head = record_head(tiny_model(), tokens(), 0, 0)
    with pytest.raises(
        OutOfRangeError, match="^channel 8 is out of range: a head has channels 0 to 7$"
    ):
        channel_score_contributions(head.q, head.k, D_HEAD)
    with pytest.raises(
        OutOfRangeError, match="^channel -1 is out of range: a head has channels 0 to 7$"
    ):
        weighted_value_contributions(head.probs, head.v, -1)
    with pytest.raises(TypeError, match="channel must be an integer; got 1.5"):
        channel_score_contributions(head.q, head.k, 1.5)


# ---------------------------------------------------------------------------------------------
# Next-token predictions of the full model and of a circuit


def full_circuit(means):
    return {location: torch.arange(mean.numel()) for location, mean in means.items()}


def test_top_tokens_match_softmax():
    model = tiny_model()
    idx = tokens()
    predictions = top_next_tokens(model, idx, position=4)
    with torch.no_grad():
        logits = model(idx)[0][0, 4]
    probabilities = torch.softmax(logits, dim=-1)
    expected = torch.topk(probabilities, 5)
    assert [p.token_id for p in predictions] == expected.indices.tolist()
    assert [p.probability for p in predictions] == pytest.approx(expected.values.tolist())
    assert predictions[0].logit == pytest.approx(float(logits.max()))


def test_top_tokens_also_lists_given_tokens():
    model = tiny_model()
    idx = tokens()
    with torch.no_grad():
        logits = model(idx)[0][0, 4]
    probabilities = torch.softmax(logits, dim=-1)
    rare = int(torch.argmin(probabilities))
    top = top_next_tokens(model, idx, position=4)
    predictions = top_next_tokens(model, idx, position=4, also=[rare, top[0].token_id])
    assert predictions[:5] == top
    assert [p.token_id for p in predictions[5:]] == [rare, top[0].token_id]
    assert predictions[5].probability == pytest.approx(float(probabilities[rare]))
    assert predictions[5].logit == pytest.approx(float(logits[rare]))
    with pytest.raises(OutOfRangeError, match="token id 99999 in `also` is outside the vocabulary"):
        top_next_tokens(model, idx, position=4, also=[99999])


def test_all_nodes_circuit_top_tokens_equal_full_model():
    model = tiny_model(sink=True)
    means = mean_activations(model, [tokens(length=12, seed=5)])
    idx = tokens()
    full = top_next_tokens(model, idx, position=8)
    circuit = top_next_tokens(model, idx, position=8, circuit=full_circuit(means), means=means)
    assert circuit == full


def test_empty_circuit_top_tokens_differ():
    model = tiny_model()
    means = mean_activations(model, [tokens(length=12, seed=5)])
    idx = tokens()
    full = top_next_tokens(model, idx, position=8)
    empty = top_next_tokens(model, idx, position=8, circuit={}, means=means)
    assert [p.probability for p in empty] != pytest.approx([p.probability for p in full])


@pytest.mark.parametrize(
    ("position", "kwargs", "message"),
    [
        (9, {}, "^position 9 is out of range: the sequence has positions 0 to 8$"),
        (-1, {}, "^position -1 is out of range: the sequence has positions 0 to 8$"),
        (0, {"circuit": {}}, "needs the mean activations"),
        (0, {"count": 0}, "count must be at least 1"),
    ],
)
def test_top_tokens_reject_bad_input(position, kwargs, message):
    with pytest.raises(ValueError, match=message):
        top_next_tokens(tiny_model(), tokens(), position, **kwargs)


@pytest.mark.parametrize(
    ("position", "kwargs", "message"),
    [
        (2.5, {}, r"position must be an integer; got 2\.5 \(float\)"),
        (True, {}, "position must be an integer; got the bool True"),
        (None, {}, "position must be an integer; got None"),
        (0, {"count": 2.5}, r"count must be an integer; got 2\.5"),
        (0, {"also": [3.7]}, r"each token id in `also` must be an integer; got 3\.7"),
        (0, {"also": [True]}, "each token id in `also` must be an integer; got the bool True"),
        (0, {"also": "ab"}, "`also` must be a list of token ids; got str 'ab'"),
        (0, {"also": 3}, "`also` must be a list of token ids; got int 3"),
    ],
)
def test_top_tokens_reject_non_integers(position, kwargs, message):
    with pytest.raises(TypeError, match=message):
        top_next_tokens(tiny_model(), tokens(), position, **kwargs)


def test_top_tokens_reject_list_idx():
    with pytest.raises(TypeError, match="idx must be a torch.Tensor of token ids, .* got list"):
        top_next_tokens(tiny_model(), [[1, 2, 3]], 0)


def test_top_tokens_accept_integer_tensors():
    model = tiny_model()
    idx = tokens()
    expected = top_next_tokens(model, idx, 4, also=[7, 9])
    assert top_next_tokens(model, idx, torch.tensor(4), also=torch.tensor([7, 9])) == expected
