"""Density and learning-rate schedules of the weight-sparse training recipe.

Density falls linearly from ``start_density`` (1 for a fresh run) to the target over the first
``anneal_frac`` of the steps, then stays at the target. The learning rate warms up linearly over ``warmup_frac`` of the steps, then decays
linearly to zero at the last step. It is multiplied by ``1 / sqrt(density)`` of the same step, so it
rises while density falls (the "sharkfin" shape of Gao et al. 2025, Appendix A).
"""

from __future__ import annotations

import math


def density_at(
    step: float,
    total_steps: int,
    target_density: float,
    anneal_frac: float,
    start_density: float = 1.0,
) -> float:
    """Return the weight density in force after optimizer step ``step`` (0-based; may be fractional).

    ``start_density`` below 1 continues a sparse model: it starts at the density it was trained to.
    """
    if not 0.0 < target_density <= 1.0:
        raise ValueError(f"target_density must be in (0, 1], got {target_density}")
    if not target_density <= start_density <= 1.0:
        raise ValueError(
            f"start_density must be in [target_density, 1] = [{target_density}, 1], "
            f"got {start_density}"
        )
    anneal_steps = anneal_frac * total_steps
    if anneal_steps <= 0:
        return target_density
    progress = min(1.0, (step + 1) / anneal_steps)
    return start_density - (start_density - target_density) * progress


def lr_factor_at(step: float, total_steps: int, warmup_frac: float) -> float:
    """Return the warmup-then-linear-decay multiplier of the base learning rate at ``step``."""
    warmup_steps = max(1, math.ceil(warmup_frac * total_steps))
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    return max(0.0, 1.0 - (step - warmup_steps) / decay_steps)


def lr_at(
    step: float, total_steps: int, base_lr: float, warmup_frac: float, density: float
) -> float:
    """Return the learning rate of step ``step``: base_lr x schedule / sqrt(density)."""
    return base_lr * lr_factor_at(step, total_steps, warmup_frac) / math.sqrt(density)
