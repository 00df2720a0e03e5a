"""Evaluation metrics logged to ``progress.json``: validation loss, L0 and alive MLP neurons."""

from __future__ import annotations

import torch
import torch.nn as nn

from inference.gpt import GPT
from inference.hook_utils import hook_recorder

EMBEDDING_NAMES = ("transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight")


@torch.no_grad()
def mean_loss(model: GPT, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Return the mean next-token cross-entropy (nats) over the batches."""
    was_training = model.training
    model.eval()
    losses = [float(model(inputs, targets)[1]) for inputs, targets in batches]
    model.train(was_training)
    return sum(losses) / len(losses)


def l0_counts(sparse_params: dict[str, nn.Parameter]) -> tuple[int, int]:
    """Return (nonzero entries of all sparse tensors, the same without embeddings/unembedding)."""
    total = 0
    non_embed = 0
    for name, param in sparse_params.items():
        nnz = int(torch.count_nonzero(param))
        total += nnz
        if name not in EMBEDDING_NAMES:
            non_embed += nnz
    return total, non_embed


@torch.no_grad()
def fired_neurons(model: GPT, inputs: torch.Tensor) -> torch.Tensor:
    """Return a bool tensor (n_layer, d_mlp): whether each MLP neuron is nonzero on any input token."""
    was_training = model.training
    model.eval()
    with hook_recorder(regex=r"\d+\.mlp\.post_act") as records:
        model(inputs)
    model.train(was_training)

    fired = []
    for layer in range(model.config.n_layer):
        post_act = records[f"{layer}.mlp.post_act"]  # (batch, pos, d_mlp)
        fired.append((post_act != 0).reshape(-1, post_act.shape[-1]).any(dim=0))
    return torch.stack(fired)


def alive_counts(fired: torch.Tensor) -> dict[str, int]:
    """Return the progress.json entries that count the fired MLP neurons of each layer."""
    return {
        f"num_alive_neurons/c_fc/layer_{layer}": int(row.sum()) for layer, row in enumerate(fired)
    }
