"""Task pairs as padded token batches, and the two-token task loss at the last real position.

A batch of B pairs becomes 2B sequences: the B `inputs` first, then the B
`patch_from_inputs`, right-padded with token 0. For sequence n the loss is
-log softmax([logit(target), logit(alt)])[correct], where the correct token is
the target for the first half and the alternative for the second half. Losses
here are per sequence; the viz-data files store twice that value (the sum over
the pair), following the upstream convention.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from registry.tasks import Datapoint

# Group size of `bucketed_pair_logits`: large enough that a forward pass is not dominated by
# per-call overhead, small enough that the groups' lengths differ. On the bundled tasks (11 to
# 34 tokens), groups of 32 pad a mask-training batch by 13-19%, against 27-39% for groups of 64.
# A mask-training step of `sparse_stdlib` then took 7-11% less CPU time on one thread. Groups of
# 16 took more again.
SEQUENCES_PER_BUCKET = 32


@dataclass
class PairBatch:
    """2B right-padded sequences with their lengths and answer tokens."""

    tokens: torch.Tensor  # (2B, T) long, padded with 0
    lengths: torch.Tensor  # (2B,) long
    target: torch.Tensor  # (2B,) long: the datapoint's target token (same for both halves)
    alt: torch.Tensor  # (2B,) long: the datapoint's alternative token
    is_patch: torch.Tensor  # (2B,) bool: True for the second half, whose correct token is alt

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, rows: torch.Tensor | slice) -> PairBatch:
        """Return the sequences at `rows`, with padding cut to the longest of them."""
        lengths = self.lengths[rows]
        width = int(lengths.max()) if lengths.numel() else 0
        return PairBatch(
            tokens=self.tokens[rows, :width],
            lengths=lengths,
            target=self.target[rows],
            alt=self.alt[rows],
            is_patch=self.is_patch[rows],
        )


def make_batch(datapoints: Sequence[Datapoint], block_size: int) -> PairBatch:
    """Pad a list of pairs into one batch, first all inputs then all patched sequences."""
    if not datapoints:
        raise ValueError("make_batch needs at least one datapoint")
    sequences = [d.inputs for d in datapoints] + [d.patch_from_inputs for d in datapoints]
    longest = max(len(s) for s in sequences)
    if longest > block_size:
        raise ValueError(
            f"a task sequence has {longest} tokens but the model's block_size is {block_size}; "
            "use a task with shorter prompts or a model with a longer context"
        )
    if min(len(s) for s in sequences) == 0:
        raise ValueError("a task sequence is empty; every prompt needs at least one token")

    tokens = torch.zeros(len(sequences), longest, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        tokens[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
    target = torch.tensor([d.target_tokid for d in datapoints] * 2, dtype=torch.long)
    alt = torch.tensor([d.target_alt_tokid for d in datapoints] * 2, dtype=torch.long)
    n = len(datapoints)
    return PairBatch(
        tokens=tokens,
        lengths=torch.tensor([len(s) for s in sequences], dtype=torch.long),
        target=target,
        alt=alt,
        is_patch=torch.arange(2 * n) >= n,
    )


def pair_logits(model, batch: PairBatch) -> torch.Tensor:
    """Run `model` on the batch; return (2B, 2) [target, alt] logits at each last real position.

    Only that position is unembedded, so the cost of the vocabulary-wide logits does not grow
    with the padded length.
    """
    last = model(batch.tokens, logit_positions=batch.lengths - 1)[0]  # (2B, vocab_size)
    pair = torch.stack([batch.target, batch.alt], dim=1).to(last.device)
    return last.gather(1, pair)


def bucketed_pair_logits(model, batch: PairBatch) -> torch.Tensor:
    """Return `pair_logits` of the batch, run in groups of similar length to skip most padding.

    Rows are sorted by length and split into groups of about `SEQUENCES_PER_BUCKET`, each
    padded only to its own longest sequence. Causal attention keeps padding out of every
    real position, so the logits equal one padded run's up to float rounding. Interventions
    must act on every row alike: a per-sequence gate would meet the wrong rows here.
    """
    n_buckets = max(1, round(len(batch) / SEQUENCES_PER_BUCKET))
    if n_buckets == 1:
        return pair_logits(model, batch)
    order = torch.argsort(batch.lengths, stable=True)
    parts = [pair_logits(model, batch.select(rows)) for rows in order.tensor_split(n_buckets)]
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order))
    return torch.cat(parts)[inverse]


def sequence_losses(
    pair_logits: torch.Tensor, batch: PairBatch, scale=1.0, shift=0.0
) -> torch.Tensor:
    """Return the (2B,) per-sequence losses from [target, alt] logits.

    `scale` multiplies both logits and `shift` is added to the target token's
    logit, the calibration fitted by `fit_logit_calibration`.
    """
    log_odds = scale * (pair_logits[:, 0] - pair_logits[:, 1]) + shift  # log p(target)/p(alt)
    sign = 1.0 - 2.0 * batch.is_patch.to(log_odds.device, log_odds.dtype)
    return -F.logsigmoid(sign * log_odds)


def fit_logit_calibration(
    pair_logits: torch.Tensor, batch: PairBatch, n_steps: int, max_scale: float = 10.0
) -> tuple[float, float]:
    """Fit a scale in (0, max_scale) and a shift of the [target, alt] logits with LBFGS.

    The scale is ``max_scale * sigmoid(u)``: when the circuit separates every train pair, the
    unbounded fit would grow the scale without limit, and one wrong test pair would then cost
    billions of nats. The fit keeps (1, 0) unless it lowers the mean train loss.
    """
    if max_scale <= 1.0:
        raise ValueError(f"max_scale must be above 1 (the identity scale), got {max_scale}")
    if n_steps == 0:
        return 1.0, 0.0
    pair_logits = pair_logits.detach().double()
    u = torch.full((), -math.log(max_scale - 1.0), dtype=torch.float64, requires_grad=True)
    shift = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([u, shift], lr=1.0, max_iter=n_steps)

    def train_loss():
        return sequence_losses(pair_logits, batch, max_scale * torch.sigmoid(u), shift).mean()

    def closure():
        optimizer.zero_grad()
        loss = train_loss()
        loss.backward()
        return loss

    with torch.no_grad():
        before = float(train_loss())
    optimizer.step(closure)
    with torch.no_grad():
        after = float(train_loss())
        scale = float(max_scale * torch.sigmoid(u))
    shift = shift.detach()
    if not (math.isfinite(after) and math.isfinite(float(shift)) and after < before):
        return 1.0, 0.0
    return scale, float(shift)
