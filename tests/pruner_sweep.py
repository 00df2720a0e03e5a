"""Pruner sweeps on tiny models, small enough for tests: a few mask-training steps and pairs."""

from __future__ import annotations

import torch

from pruning.config import PruneConfig
from pruning.means import compute_means
from pruning.pipeline import PruneSetup
from pruning.run import rank_by_mask_training, run_sweep
from registry.tasks import get_task

TASK = "single_double_quote"
WINDOW_TOKENS = 32  # tokens per pretraining window for the ablation means and the examples
EXAMPLE_WINDOWS = 4  # windows the top and bottom examples come from


def prune_small_sweep(model, store_root, model_name: str, ks, *, n_windows: int, **config):
    """Prune `TASK` on `model` with mask training and write `viz/<model_name>/<TASK>/prune_v4/<k>`.

    The ablation means come from `n_windows` fixed random token windows, the examples from the
    first EXAMPLE_WINDOWS of them. `config` sets PruneConfig fields. Returns run_sweep's summary.
    """
    windows = torch.randint(
        0, 2047, (n_windows, WINDOW_TOKENS), generator=torch.Generator().manual_seed(0)
    )
    setup = PruneSetup(
        model=model,
        task=get_task(TASK),
        means=compute_means(model, windows),
        config=PruneConfig(**config),
        model_name=model_name,
        windows=windows[:EXAMPLE_WINDOWS],
        progress=False,
    )
    return run_sweep(setup, rank_by_mask_training(setup), store_root=store_root, ks=ks)
