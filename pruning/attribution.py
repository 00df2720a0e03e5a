"""The gradient-attribution baseline: score each node by |d task loss / d gate| at the full model.

With every gate at 1, the gradient of the task loss with respect to a node's gate
is sum over positions of (x - mean) * dL/dx, the first-order estimate of how much
mean-ablating that node changes the loss. Keeping the top-k nodes by its absolute
value is the baseline that Gao et al. 2025 compare their learned masks against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from inference.circuit import location_width, node_locations
from pruning.data import make_batch
from pruning.train import frozen, gated_task_loss
from registry.tasks import Datapoint


def attribution_scores(
    model, pairs: Sequence[Datapoint], means: dict, batch_size: int
) -> dict[str, torch.Tensor]:
    """Return location -> |d loss / d gate| summed over `pairs`, for every node."""
    config = model.config
    gates = {
        loc: torch.ones(location_width(config, loc), requires_grad=True)
        for loc in node_locations(config)
    }
    with frozen(model):
        for start in range(0, len(pairs), batch_size):
            batch = make_batch(pairs[start : start + batch_size], config.block_size)
            loss = gated_task_loss(model, gates, means, batch) * len(batch)
            loss.backward()
    return {loc: gate.grad.abs().detach() for loc, gate in gates.items()}
