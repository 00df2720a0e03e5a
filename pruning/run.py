"""Run a whole sweep for one task: rank nodes, search k, write every circuit and sweep.json."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from inference.circuit import num_total_nodes
from pruning.attribution import attribution_scores
from pruning.pipeline import PruneSetup, Ranking, build_viz_data, loss_curve, phase
from pruning.search import search_k
from pruning.train import train_gates
from pruning.vizdata import (
    K_OPTIM,
    SWEEP_FILE,
    sweep_dir,
    viz_dir,
    write_sweep_json,
    write_viz_data,
)

logger = logging.getLogger(__name__)

PRUNE_SWEEP = "prune_v4"
ATTRIBUTION_SWEEP = "attribution_topk"


def rank_by_mask_training(setup: PruneSetup) -> Ranking:
    with phase("mask training", setup.timings):
        gates, history = train_gates(
            setup.model, setup.task.xs, setup.means, setup.config, progress=setup.progress
        )
    return Ranking(
        method=PRUNE_SWEEP, scores=gates.scores(), history=history, start_k=gates.n_open()
    )


def rank_by_attribution(setup: PruneSetup) -> Ranking:
    with phase("gradient attribution", setup.timings):
        scores = attribution_scores(
            setup.model, setup.task.xs, setup.means, setup.config.batch_size
        )
    return Ranking(method=ATTRIBUTION_SWEEP, scores=scores, history=[])


def default_curve_ks(n_total: int) -> list[int]:
    """Return 0, the powers of two below `n_total`, and `n_total`."""
    powers = [2**i for i in range(int(math.log2(max(1, n_total))) + 1) if 2**i < n_total]
    return [0, *powers, n_total]


def run_sweep(
    setup: PruneSetup,
    ranking: Ranking,
    *,
    store_root: str | Path,
    ks: Sequence[int] = (),
    sweep_name: str | None = None,
    write_k_optim: bool = True,
) -> dict:
    """Search k, write a viz_data file for each k (and k_optim) and the sweep.json summary."""
    sweep_name = sweep_name or ranking.method
    config = setup.config
    n_total = num_total_nodes(setup.model.config)
    bad = [k for k in ks if not 0 <= k <= n_total]
    if bad:
        raise ValueError(f"k values {bad} are outside [0, {n_total}], this model's node count")

    with phase("k search", setup.timings):
        k_optim, search_history = search_k(
            setup.model,
            ranking.scores,
            setup.means,
            setup.search_batch,
            config.target_loss,
            start=ranking.start_k,
        )
    logger.info("k search: k_optim=%d after %d evaluations", k_optim, len(search_history))
    loss_at_k_optim = next(loss for k, loss in reversed(search_history) if k == k_optim)
    target_reached = loss_at_k_optim <= config.target_loss
    if not target_reached:
        logger.warning(
            "task %s: no circuit reaches the target loss %.3f (all nodes: %.3f); "
            "k_optim keeps every node. Pass a higher --target-loss for a smaller circuit",
            setup.task.name,
            config.target_loss,
            loss_at_k_optim,
        )

    with phase("loss curve", setup.timings):
        curve = loss_curve(setup, ranking, [*default_curve_ks(n_total), *ks, k_optim])

    written: list[int | str] = []
    shared = {
        "sweep": sweep_name,
        "k_sweep": [[p["k"], p["loss_per_sequence"]] for p in curve],
        "k_search": [list(item) for item in search_history],
        "target_loss_per_sequence": config.target_loss,
        "target_reached": target_reached,
    }
    labels = [(k, str(k)) for k in sorted(set(ks))]
    if write_k_optim:
        labels.append((k_optim, K_OPTIM))
    for k, label in labels:
        started = time.perf_counter()
        viz = build_viz_data(setup, ranking, k, k_label=label, extra_config=shared)
        path = viz_dir(store_root, setup.model_name, setup.task.name, sweep_name, label)
        write_viz_data(viz, path / "viz_data.pt")
        logger.info("circuit k=%s: %.2f s", label, time.perf_counter() - started)
        written.append(label if label == K_OPTIM else k)

    summary = {
        "model": setup.model_name,
        "task": setup.task.name,
        "method": ranking.method,
        "num_total_nodes": n_total,
        "k_optim": k_optim,
        "target_loss_per_sequence": config.target_loss,
        "target_reached": target_reached,
        "full_model_loss_per_sequence": setup.full_loss,
        "eval_split": "test",
        "points": curve,
        "written_ks": written,
        "timings_seconds": dict(setup.timings),
    }
    sweep_folder = sweep_dir(store_root, setup.model_name, setup.task.name, sweep_name)
    write_sweep_json(summary, sweep_folder / SWEEP_FILE)
    return summary


@dataclass
class LoadedModel:
    """A model with what every task run on it shares: encoding, ablation means, example windows."""

    model: torch.nn.Module
    name: str
    encoding: object  # tiktoken.Encoding
    means: dict[str, torch.Tensor]
    example_windows: torch.Tensor | None
    timings: dict[str, float] = field(default_factory=dict)


def model_encoding(model_dir: str | Path, tokenizer_name: str):
    """Return the encoding `tokenizer_name`, read from the store that contains `model_dir`.

    A model folder at `<store>/models/<name>` uses the tokenizer files of `<store>` when that
    store has them. Otherwise, and for a folder outside any store, the default store's are used
    (CIRCUIT_SPARSITY_STORE, else the embedded store).
    """
    from registry.store import Store
    from registry.tokenizer import ENCODING_FOLDERS, get_encoding

    model_dir = Path(model_dir).resolve()
    folder = ENCODING_FOLDERS.get(tokenizer_name)
    if folder is not None and model_dir.parent.name == "models":
        store_root = model_dir.parent.parent
        if (store_root / folder / "encoder.json").is_file():
            return get_encoding(tokenizer_name, Store(store_root))
        logger.info(
            "%s has no %s/encoder.json: encoding %s comes from the default store",
            store_root,
            folder,
            tokenizer_name,
        )
    return get_encoding(tokenizer_name)


def load_model_for_pruning(
    model_dir: str | Path, *, n_mean_windows: int, window_len: int, n_example_windows: int
) -> LoadedModel:
    """Load a model folder, its encoding and its (cached) ablation means over validation windows."""
    from inference.gpt import load_model
    from pruning.means import cached_means, cached_validation_windows, model_file_identity

    timings: dict[str, float] = {}
    with phase("load model", timings):
        model = load_model(str(model_dir))
        encoding = model_encoding(model_dir, model.config.tokenizer_name)
    with phase("ablation means", timings):
        window_len = min(window_len, model.config.block_size)
        windows = cached_validation_windows(encoding, n_mean_windows, window_len)
        means = cached_means(model, windows, identity=model_file_identity(model_dir))
    step = max(1, len(windows) // max(1, n_example_windows))
    example_windows = windows[::step][:n_example_windows] if n_example_windows else None
    name = Path(model_dir).resolve().name
    return LoadedModel(model, name, encoding, means, example_windows, timings)


def setup_task(loaded: LoadedModel, task_name: str, config, *, progress: bool) -> PruneSetup:
    """Build the task in the model's encoding and prepare its batches and full-model loss."""
    from registry.tasks import get_task

    timings = dict(loaded.timings)
    with phase("task and full model loss", timings):
        task = get_task(task_name, loaded.encoding)
        setup = PruneSetup(
            model=loaded.model,
            task=task,
            means=loaded.means,
            config=config,
            model_name=loaded.name,
            windows=loaded.example_windows,
            progress=progress,
            timings=timings,
        )
    logger.info(
        "task %s: %d train / %d test pairs; full-model loss %.4f per sequence",
        task.name,
        len(task.xs),
        len(task.xs_test),
        setup.full_loss,
    )
    return setup
