"""Weight sparsity for training: which tensors are sparse, and the top-k magnitude projection.

After every optimizer step the trainer keeps, in each sparse tensor, the ``k = round(density *
numel)`` entries of largest magnitude and zeroes the rest. A row of a 2-D weight is one output
neuron or attention channel of a Linear layer, or one token or position of an embedding. Each row
keeps at least ``min_per_row`` entries, so no neuron is cut off entirely:

1. keep the ``min_per_row`` largest-magnitude entries of every row;
2. fill the remaining ``k - n_rows * min_per_row`` slots with the largest-magnitude entries left,
   over the whole tensor.

Sparse tensors are every weight matrix, embedding, unembedding and bias. Norm weights, the bigram
table and attention-sink logits stay dense.
"""

from __future__ import annotations

import torch
import torch.nn as nn

DENSE_NAME_PARTS = ("ln_", "bigram_table", "sink_logit")


def sparse_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Return the trainable parameters that the projection keeps sparse, by name."""
    params = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if any(part in name for part in DENSE_NAME_PARTS):
            continue
        params[name] = param
    return params


def scheduled_nnz(numel: int, n_rows: int, density: float, min_per_row: int) -> int:
    """Return the number of entries a tensor keeps at ``density``, at least ``min_per_row`` per row."""
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density must be in (0, 1], got {density}")
    k = round(density * numel)
    return min(numel, max(k, n_rows * min_per_row, 1))


def topk_mask(weight: torch.Tensor, k: int, min_per_row: int) -> torch.Tensor:
    """Return a bool mask with exactly ``k`` True entries: the top ``min_per_row`` of each row first,
    then the largest magnitudes of the rest. A 1-D tensor has no row minimum."""
    magnitude = weight.detach().abs()
    if magnitude.dim() == 1 or min_per_row == 0:
        flat = magnitude.reshape(-1)
        mask = torch.zeros_like(flat, dtype=torch.bool)
        mask[torch.topk(flat, k, sorted=False).indices] = True
        return mask.view_as(weight)

    n_rows, n_cols = magnitude.shape
    per_row = min(min_per_row, n_cols)
    mask = torch.zeros_like(magnitude, dtype=torch.bool)
    mask.scatter_(1, torch.topk(magnitude, per_row, dim=1, sorted=False).indices, True)

    n_rest = k - n_rows * per_row
    assert n_rest >= 0, "scheduled_nnz guarantees room for the per-row minimum"
    if n_rest > 0:
        # Rank the entries not yet kept; -1 puts the kept ones below every magnitude.
        rest = magnitude.masked_fill(mask, -1.0).reshape(-1)
        mask.view(-1)[torch.topk(rest, n_rest, sorted=False).indices] = True
    return mask


@torch.no_grad()
def project_to_density(
    params: dict[str, nn.Parameter], density: float, min_per_row: int
) -> dict[str, int]:
    """Zero all but the scheduled top-k magnitudes of each tensor, in place; return k by name."""
    kept = {}
    for name, param in params.items():
        n_rows = param.shape[0] if param.dim() == 2 else 1
        row_minimum = min_per_row if param.dim() == 2 else 0
        k = scheduled_nnz(param.numel(), n_rows, density, row_minimum)
        kept[name] = k
        if k == param.numel():
            continue
        param.mul_(topk_mask(param, k, row_minimum))
    return kept
