"""The model's most likely next tokens at one position, from the full model or from a circuit alone.

With a circuit, the model runs under `inference.circuit.apply_circuit`: every node outside the
circuit is set to its mean activation. Probabilities are the softmax of the raw logits over the
whole vocabulary. The pruner's logit calibration (a scale and shift fitted on the logits of a
task's two target tokens) is not applied here.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from inference.checks import OutOfRangeError, as_integer, check_index, check_single_sequence
from inference.circuit import Circuit, apply_circuit


@dataclass(frozen=True)
class TokenPrediction:
    """One candidate next token: its id, softmax probability and raw logit."""

    token_id: int
    probability: float
    logit: float


@torch.no_grad()
def top_next_tokens(
    model: torch.nn.Module,
    idx: torch.Tensor,
    position: int,
    count: int = 5,
    *,
    circuit: Circuit | None = None,
    means: Mapping[str, torch.Tensor] | None = None,
    also: Sequence[int] = (),
) -> list[TokenPrediction]:
    """Return the `count` most likely tokens after `position` of the sequence `idx` (1, pos).

    Then one entry for each token id in `also`, in that order, whether or not it is in the top
    (e.g. a task's two answer tokens). With `circuit`, every node outside it is mean-ablated with
    `means` (location -> (width,)). Raises TypeError for an `idx` that is not a tensor or a
    `position`, `count` or `also` id that is not an integer, ValueError for an `idx` that is not
    (1, pos), a count below 1 or a circuit without means, and `OutOfRangeError` (an IndexError and
    a ValueError) for a position outside the sequence or an `also` id outside the vocabulary.
    """
    check_single_sequence(idx)
    position = check_index(position, "position", idx.size(1), "the sequence")
    count = as_integer(count, "count")
    if count < 1:
        raise ValueError(f"count must be at least 1; got {count}")
    also_ids = _also_ids(also, model.config.vocab_size)

    if circuit is None:
        logits = model(idx)[0]
    else:
        if means is None:
            raise ValueError("a circuit needs the mean activations of its ablated nodes")
        with apply_circuit(model, circuit, means):
            logits = model(idx)[0]
    row = logits[0, position].float()  # (vocab_size,)
    probabilities = torch.softmax(row, dim=-1)
    top = torch.topk(probabilities, min(count, row.numel()))
    ids = [int(token_id) for token_id in top.indices] + also_ids
    return [
        TokenPrediction(token_id, float(probabilities[token_id]), float(row[token_id]))
        for token_id in ids
    ]


def _also_ids(also: Sequence[int], vocab_size: int) -> list[int]:
    """Return the token ids of `also` as ints, checked against the vocabulary."""
    if isinstance(also, str | bytes) or not isinstance(also, Iterable):
        raise TypeError(
            f"`also` must be a list of token ids; got {type(also).__name__} {reprlib.repr(also)}"
        )
    ids = [as_integer(token_id, "each token id in `also`") for token_id in also]
    for token_id in ids:
        if not 0 <= token_id < vocab_size:
            raise OutOfRangeError(
                f"token id {token_id} in `also` is outside the vocabulary 0..{vocab_size - 1}"
            )
    return ids
