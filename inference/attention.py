"""Attention patterns of one head, and what a single q, k or v channel contributes to them.

The model's attention (`inference.gpt.causal_attention`) computes, per head, scores
`s[i, j] = q[i] . k[j] / sqrt(d_head)` for query position i and key position j <= i, then a softmax
over j (plus an optional sink slot, a zero-value key with a learned logit per head). Because the score
is a sum over the head's channels, channel c adds `q[i, c] * k[j, c] / sqrt(d_head)` to it.
A value channel c reaches the head output as `y[i, c] = sum_j p[i, j] * v[j, c]`.

Matrices here are (query pos, key pos). Entries with key > query, which causal attention never
reads, are NaN so that plots can leave them blank.

    with torch.no_grad():
        head = record_head(model, idx, layer=1, head=0)  # idx: (1, T) token ids
    probs = head.probs  # (T, T), rows sum to 1 minus the sink's share
    contribution = channel_score_contributions(head.q, head.k, channel=3)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from inference.checks import check_index, check_single_sequence
from inference.hook_utils import hook_recorder


@dataclass(frozen=True)
class HeadActivations:
    """One head's q, k and v on one sequence, each (pos, d_head), and its attention probabilities."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    probs: torch.Tensor  # (pos, pos); NaN above the diagonal
    sink_logit: float | None


def causal_mask(length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Return the (pos, pos) boolean mask of the entries causal attention reads (key <= query)."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def attention_probs(
    q: torch.Tensor, k: torch.Tensor, sink_logit: float | None = None
) -> torch.Tensor:
    """Compute one head's causal softmax attention from q and k of shape (pos, d_head).

    With a sink, the softmax also covers the sink slot, so each row sums to 1 minus the sink's
    share. Returns (pos, pos) probabilities with NaN above the diagonal.
    """
    length, d_head = q.shape
    scores = (q @ k.T) / math.sqrt(d_head)  # (pos, pos)
    mask = causal_mask(length, q.device)
    scores = scores.masked_fill(~mask, float("-inf"))
    if sink_logit is not None:
        sink = torch.full((length, 1), float(sink_logit), dtype=scores.dtype, device=q.device)
        probs = F.softmax(torch.cat([sink, scores], dim=-1), dim=-1)[:, 1:]  # drop the sink column
    else:
        probs = F.softmax(scores, dim=-1)
    return probs.masked_fill(~mask, float("nan"))


def channel_score_contributions(q: torch.Tensor, k: torch.Tensor, channel: int) -> torch.Tensor:
    """Return what channel `channel` adds to the attention scores: q[i, c] * k[j, c] / sqrt(d_head).

    `q` and `k` are (pos, d_head). Summed over every channel of the head, these give the scores
    that the softmax reads. Returns (pos, pos) with NaN above the diagonal.
    """
    length, d_head = q.shape
    channel = _check_channel(channel, d_head)
    contributions = torch.outer(q[:, channel], k[:, channel]) / math.sqrt(d_head)  # (pos, pos)
    return contributions.masked_fill(~causal_mask(length, q.device), float("nan"))


def weighted_value_contributions(
    probs: torch.Tensor, v: torch.Tensor, channel: int
) -> torch.Tensor:
    """Return p[i, j] * v[j, c]: how much key j adds to output channel c at query i.

    `probs` is (pos, pos) from `attention_probs`, `v` is (pos, d_head). Each row, NaN entries
    skipped, sums to the head's output `y[i, c]`. Returns (pos, pos) with NaN above the diagonal.
    """
    channel = _check_channel(channel, v.shape[1])
    return probs * v[:, channel].unsqueeze(0)  # (pos, pos): column j scaled by v[j, c]


def head_output(probs: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Return the head's output y (pos, d_head): `probs` from `attention_probs` applied to `v`."""
    return torch.nan_to_num(probs) @ v


def _check_channel(channel: int, d_head: int) -> int:
    return check_index(channel, "channel", d_head, "a head")


@torch.no_grad()
def record_head(
    model: torch.nn.Module, idx: torch.Tensor, layer: int, head: int
) -> HeadActivations:
    """Run `model` on one sequence `idx` (1, pos) and return head `head` of layer `layer`.

    q, k and v are the recorded hook activations (after AbsTopK, as the model uses them).
    Raises TypeError when `layer` or `head` is not an integer (a bool or float included) or `idx`
    is not a tensor, ValueError when `idx` is not (1, pos), and `OutOfRangeError` (an IndexError
    and a ValueError) naming the layer or head when the model has no such one.
    """
    config = model.config
    layer = check_index(layer, "layer", config.n_layer, "the model")
    head = check_index(head, "head", config.n_head, "the model")
    check_single_sequence(idx)

    with hook_recorder(regex=rf"{layer}\.attn\.(q|k|v)") as records:
        model(idx)
    channels = slice(head * config.d_head, (head + 1) * config.d_head)
    q, k, v = (records[f"{layer}.attn.{name}"][0, :, channels].float() for name in "qkv")

    sink_module = model.transformer.h[layer].attn.attn_imp
    sink_logit = None if sink_module is None else float(sink_module.sink_logit[head])
    return HeadActivations(q, k, v, attention_probs(q, k, sink_logit), sink_logit)
