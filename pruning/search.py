"""Circuits from node scores: keep the top k nodes, evaluate them, and bisect k.

A circuit keeps the k nodes with the highest score (tau after mask training, or
an attribution score for the baseline) and mean-ablates every other node through
`inference.circuit.apply_circuit`, the same function the verifier and the web
app use. `search_k` brackets the smallest k that reaches the target loss by
doubling or halving k, then bisects the bracket. Without a start it doubles from
k = 1. Mask training passes its count of open gates as the start, so the search
begins near the size of the trained circuit. The loss is not exactly monotonic
in k, so the result is what the search finds rather than a proven minimum.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch

from inference.circuit import apply_circuit, location_width, node_locations
from pruning.data import PairBatch, bucketed_pair_logits, sequence_losses

logger = logging.getLogger(__name__)

EVAL_BATCH_SEQUENCES = 512


def circuit_from_scores(config, scores: Mapping[str, torch.Tensor], k: int) -> dict:
    """Return location -> sorted LongTensor of the k highest-scoring nodes (ties: lower index)."""
    locations = node_locations(config)
    flat = torch.cat([scores[location].float() for location in locations])
    if not 0 <= k <= flat.numel():
        raise ValueError(f"k={k} is outside [0, {flat.numel()}], the model's number of nodes")
    order = torch.argsort(flat, descending=True, stable=True)[:k]
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[order] = True

    circuit = {}
    offset = 0
    for location in locations:
        width = location_width(config, location)
        circuit[location] = torch.nonzero(keep[offset : offset + width]).flatten()
        offset += width
    return circuit


def circuit_size(circuit: Mapping[str, torch.Tensor]) -> int:
    return sum(int(ids.numel()) for ids in circuit.values())


@torch.no_grad()
def circuit_pair_logits(
    model, circuit, means, batch: PairBatch, *, invert: bool = False
) -> torch.Tensor:
    """Return (2B, 2) [target, alt] logits with everything outside `circuit` mean-ablated.

    With `invert=True` the circuit's own nodes are ablated instead. `circuit=None`
    runs the full model.
    """
    outputs = []
    for start in range(0, len(batch), EVAL_BATCH_SEQUENCES):
        rows = slice(start, start + EVAL_BATCH_SEQUENCES)
        part = batch.select(rows)
        if circuit is None:
            outputs.append(bucketed_pair_logits(model, part))
        else:
            with apply_circuit(model, circuit, means, invert=invert):
                outputs.append(bucketed_pair_logits(model, part))
    return torch.cat(outputs)


def circuit_loss(model, circuit, means, batch: PairBatch, *, invert=False, scale=1.0, shift=0.0):
    """Return the mean per-sequence task loss of a circuit (see `circuit_pair_logits`)."""
    pair_logits = circuit_pair_logits(model, circuit, means, batch, invert=invert)
    return float(sequence_losses(pair_logits, batch, scale, shift).mean())


def search_k(
    model, scores, means, batch: PairBatch, target_loss: float, *, start: int | None = None
) -> tuple[int, list[tuple[int, float]]]:
    """Find the smallest k whose top-k circuit has loss <= `target_loss` on `batch`.

    Brackets the answer first. Without `start`, scans k = 1, 2, 4, ... up to all
    nodes and stops at the first k that reaches the target. The scan matters
    because mean-ablating many unneeded nodes can bring the loss below the full
    model's, so a circuit may reach a target that all nodes miss. With `start`
    (clamped to [1, all nodes]), evaluates k = start first, then halves k while
    the target is reached, or doubles it while it is missed. Then bisects between
    the last miss and the first hit. Returns k and the (k, loss) of every
    evaluation in order. When no k of the bracket search reaches the target,
    returns the total node count.
    """
    n_total = sum(location_width(model.config, loc) for loc in node_locations(model.config))
    history: list[tuple[int, float]] = []

    def loss_at(k: int) -> float:
        loss = circuit_loss(model, circuit_from_scores(model.config, scores, k), means, batch)
        history.append((k, loss))
        logger.debug("k search: k=%d loss=%.4f", k, loss)
        return loss

    if start is None:
        low, high = _bracket_upward(loss_at, 1, n_total, target_loss)
    else:
        first = min(max(start, 1), n_total)
        if loss_at(first) <= target_loss:
            low, high = _bracket_downward(loss_at, first, target_loss)
        elif first == n_total:
            low, high = n_total + 1, None
        else:
            low, high = _bracket_upward(loss_at, 2 * first, n_total, target_loss)
            low = max(low, first + 1)
    if high is None:
        logger.info(
            "no top-k circuit reaches the target %.4f on the search pairs (all %d nodes: %.4f)",
            target_loss,
            n_total,
            history[-1][1],
        )
        return n_total, history

    while low < high:
        middle = (low + high) // 2
        if loss_at(middle) <= target_loss:
            high = middle
        else:
            low = middle + 1
    return high, history


def _bracket_upward(loss_at, first: int, n_total: int, target_loss: float):
    """Double k from `first` (capped at `n_total`) until it reaches the target.

    Returns (low, high): the smallest k not yet ruled out and the first k that
    reached the target, or (low, None) when even `n_total` misses it.
    """
    low = 0
    k = min(first, n_total)
    while True:
        if loss_at(k) <= target_loss:
            return low, k
        low = k + 1
        if k >= n_total:
            return low, None
        k = min(2 * k, n_total)


def _bracket_downward(loss_at, first: int, target_loss: float):
    """Halve k from `first`, which reaches the target, until k misses it or reaches 1.

    Returns (low, high): one above the k that missed (0 if none did) and the
    smallest k that reached the target.
    """
    high = first
    k = first // 2
    while k >= 1:
        if loss_at(k) > target_loss:
            return k + 1, high
        high = k
        k //= 2
    return 0, high
