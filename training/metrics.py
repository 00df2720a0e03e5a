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
def alive_neurons(model: GPT, inputs: torch.Tensor) -> dict[str, int]:
    """Count, per layer, the MLP neurons whose activation is nonzero on at least one input token."""
    was_training = model.training
    model.eval()
    with hook_recorder(regex=r"\d+\.mlp\.post_act") as records:
        model(inputs)
    model.train(was_training)

    counts = {}
    for layer in range(model.config.n_layer):
        post_act = records[f"{layer}.mlp.post_act"]  # (batch, pos, d_mlp)
        fired = (post_act != 0).reshape(-1, post_act.shape[-1]).any(dim=0)
        counts[f"num_alive_neurons/c_fc/layer_{layer}"] = int(fired.sum())
    return counts
