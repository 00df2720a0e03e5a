"""Assemble and write `viz_data.pt` files and the `sweep.json` beside them.

File layout: `<store>/viz/<model>/<task>/<sweep>/<k>/viz_data.pt`, where `<k>` is
the number of kept nodes or `k_optim` for the circuit found by the k search.
Task losses in `importances` and `all_loss` follow the upstream convention:
twice the per-sequence loss (the sum over the two sequences of a pair), because
readers halve them once. Every loss inside `prune_config` and `sweep.json` is
per sequence and has `per_sequence` in its key.

Keys beyond the upstream format: `ablation_means` (location -> mean activation)
and `task_sample_lengths` (the real length of each task sample). Stored
activations are float16 and example tokens int16 when the values fit
(`value_storage_dtype`, `token_storage_dtype`), which halves the largest files.

`sweep.json` (one per sweep folder) records the loss-versus-k curve:
{"model", "task", "method", "num_total_nodes", "k_optim", "target_loss_per_sequence",
 "target_reached", "full_model_loss_per_sequence", "eval_split", "points": [{"k",
 "loss_per_sequence"}, ...], "written_ks": [...]}. Point losses are uncalibrated,
like the k search; each written circuit's calibrated loss is in its prune_config.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

VIZ_FILE = "viz_data.pt"
SWEEP_FILE = "sweep.json"
K_OPTIM = "k_optim"
FLOAT16_MAX = 65504.0


def stored_loss(per_sequence: float) -> float:
    """Convert a per-sequence task loss to the stored (pair-summed) convention."""
    return 2.0 * float(per_sequence)


def token_storage_dtype(vocab_size: int) -> torch.dtype:
    """Return the smallest signed integer dtype that represents every token id below `vocab_size`."""
    return torch.int16 if vocab_size <= 2**15 else torch.int32


def value_storage_dtype(values: torch.Tensor) -> torch.dtype:
    """Return float16, or float32 when a value would overflow float16."""
    if values.numel() and float(values.abs().max()) > FLOAT16_MAX:
        logger.info("activation values exceed the float16 range; storing them as float32")
        return torch.float32
    return torch.float16


def count_edges(pair_data: list) -> int:
    """Count nonzero weights between kept nodes, bias rows excluded."""
    total = 0
    for matrix, src_ids, _tgt_ids, _locations in pair_data:
        n_src = len(src_ids) - (1 if src_ids and src_ids[-1] == "bias" else 0)
        total += int((matrix[:n_src] != 0).sum())
    return total


def sweep_dir(store_root: str | os.PathLike, model: str, task: str, sweep: str) -> Path:
    return Path(store_root) / "viz" / model / task / sweep


def viz_dir(store_root: str | os.PathLike, model: str, task: str, sweep: str, k) -> Path:
    return sweep_dir(store_root, model, task, sweep) / str(k)


def _atomic_write_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    write(temporary)
    os.replace(temporary, path)


def write_viz_data(viz_data: dict, path: Path) -> None:
    """Save `viz_data` atomically and check that it loads with weights_only=True."""
    _atomic_write_bytes(path, lambda temporary: torch.save(viz_data, temporary))
    torch.load(path, map_location="cpu", weights_only=True)
    logger.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)


def write_sweep_json(summary: dict, path: Path) -> None:
    text = json.dumps(summary, indent=1, sort_keys=True)
    _atomic_write_bytes(path, lambda temporary: Path(temporary).write_text(text + "\n"))
    logger.info("wrote %s", path)
