"""Mask training: learn one gate per node so the task survives with few nodes open.

Each step runs a batch of pairs with every node mixed with its mean by its gate
(`pruning.masks`) and minimizes task loss + k_coef * (number of open gates) with
AdamW over the taus. The learning rate warms up linearly over `warmup_frac` of
the steps, then decays linearly to zero. The gradient norm is clipped and every
tau is clamped to [-1, 1] after each step.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from inference.hook_utils import hook_recorder
from pruning.config import PruneConfig
from pruning.data import bucketed_pair_logits, make_batch, sequence_losses
from pruning.masks import NodeGates, gated_interventions
from registry.tasks import Datapoint

logger = logging.getLogger(__name__)

LOG_EVERY_STEPS = 10


@contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Turn off gradients of the model's parameters inside the block, restoring them after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)
        model.train(was_training)


def lr_factor(step: int, n_steps: int, warmup_frac: float) -> float:
    """Return the lr multiplier: linear warmup, then linear decay to zero at `n_steps`."""
    n_warmup = int(warmup_frac * n_steps)
    if step < n_warmup:
        return (step + 1) / n_warmup
    return max(0.0, (n_steps - step) / max(1, n_steps - n_warmup))


def pairs_per_step(pairs: Sequence[Datapoint], config: PruneConfig) -> int:
    """Return the pairs of one mask-training step: `batch_size`, fewer if the step's two sequences
    per pair would average more than `max_batch_tokens` tokens (at least 1)."""
    if not pairs:
        return config.batch_size
    mean_tokens = sum(len(pair.inputs) + len(pair.patch_from_inputs) for pair in pairs) / len(pairs)
    fitting = max(1, int(config.max_batch_tokens // mean_tokens))
    if fitting < config.batch_size:
        logger.info(
            "mask training: %d pairs per step instead of %d (%.1f tokens per pair, "
            "max_batch_tokens %d)",
            fitting,
            config.batch_size,
            mean_tokens,
            config.max_batch_tokens,
        )
    return min(config.batch_size, fitting)


def _batch_indices(n_pairs: int, batch_size: int, generator: torch.Generator) -> Iterator[list]:
    while True:
        order = torch.randperm(n_pairs, generator=generator).tolist()
        for start in range(0, n_pairs - min(batch_size, n_pairs) + 1, min(batch_size, n_pairs)):
            yield order[start : start + batch_size]


def gated_task_loss(model, gates: dict, means: dict, batch, scale=1.0, shift=0.0) -> torch.Tensor:
    """Return the mean per-sequence task loss with every node gated by `gates`.

    Each gate has shape (width,), the same for every sequence, because the batch runs in
    length-sorted groups (`bucketed_pair_logits`).
    """
    per_sequence = sorted(loc for loc, gate in gates.items() if gate.dim() != 1)
    if per_sequence:
        raise ValueError(f"gates at {per_sequence} must have shape (width,), one gate per node")
    interventions = gated_interventions(gates, means)
    with hook_recorder(regex=None, interventions=interventions):
        logits = bucketed_pair_logits(model, batch)
    return sequence_losses(logits, batch, scale, shift).mean()


def train_gates(
    model: torch.nn.Module,
    pairs: Sequence[Datapoint],
    means: dict[str, torch.Tensor],
    config: PruneConfig,
    *,
    progress: bool = True,
) -> tuple[NodeGates, list[tuple[int, float]]]:
    """Train node gates on `pairs`; return them and the (step, task loss) history.

    The history contains the per-sequence task loss of the gated model every
    `LOG_EVERY_STEPS` steps and at the last step.
    """
    generator = torch.Generator().manual_seed(config.seed)
    gates = NodeGates(
        model.config,
        init_bias=config.init_noise_bias,
        init_noise=config.init_noise_scale,
        generator=generator,
    )
    optimizer = torch.optim.AdamW(
        gates.parameters(),
        lr=config.lr,
        betas=(0.9, config.beta2),
        weight_decay=config.weight_decay,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config.n_steps, config.warmup_frac)
    )
    batches = _batch_indices(len(pairs), pairs_per_step(pairs, config), generator)
    history: list[tuple[int, float]] = []

    bar = tqdm(range(config.n_steps), desc="mask training", disable=not progress, leave=False)
    with frozen(model):
        for step in bar:
            batch = make_batch([pairs[i] for i in next(batches)], model.config.block_size)
            step_gates = gates.gates(config.heaviside_temp)
            task_loss = gated_task_loss(model, step_gates, means, batch)
            n_open = sum(gate.sum() for gate in step_gates.values())
            loss = task_loss + config.k_coef * n_open

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(gates.parameters(), config.grad_clip)
            optimizer.step()
            schedule.step()
            gates.clamp_()

            if step % LOG_EVERY_STEPS == 0 or step == config.n_steps - 1:
                history.append((step, float(task_loss.detach())))
                bar.set_postfix(task_loss=f"{float(task_loss.detach()):.4f}", n_open=int(n_open))
    logger.info(
        "mask training: %d steps, last task loss %.4f with %d open gates",
        config.n_steps,
        history[-1][1],
        int(n_open),
    )
    return gates, history
