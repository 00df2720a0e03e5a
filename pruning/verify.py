"""Check a viz_data file against the model by rerunning its circuit with real interventions.

Three numbers, all per-sequence task losses on the task's test pairs, run through
`inference.circuit.apply_circuit`:

The pairs are the first `n_eval_pairs` test pairs, as recorded in prune_config.

(a) sufficiency: everything outside the circuit mean-ablated, with the stored
    logit calibration; it must equal the stored `interv_loss` (halved);
(b) necessity: only the circuit's nodes mean-ablated;
(c) a random circuit with the same number of nodes, for comparison with (a).
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch

from inference.circuit import location_width, node_locations
from pruning.data import make_batch
from pruning.search import circuit_loss
from registry.tasks import get_task

logger = logging.getLogger(__name__)

ABSOLUTE_TOLERANCE = 1e-4
RELATIVE_TOLERANCE = 1e-3


def random_circuit(config, n_nodes: int, seed: int) -> dict[str, torch.Tensor]:
    """Return a circuit of `n_nodes` nodes drawn uniformly from all nodes of the model."""
    locations = node_locations(config)
    widths = [location_width(config, loc) for loc in locations]
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(sum(widths), generator=generator)[:n_nodes]
    keep = torch.zeros(sum(widths), dtype=torch.bool)
    keep[chosen] = True
    circuit, offset = {}, 0
    for loc, width in zip(locations, widths, strict=True):
        circuit[loc] = torch.nonzero(keep[offset : offset + width]).flatten()
        offset += width
    return circuit


def verify_viz_data(
    viz_path: str | Path, model, *, seed: int = 0, encoding=None
) -> dict[str, float]:
    """Recompute the losses of a viz_data file; return them with the stored value.

    `encoding` builds the task (default: the model's tokenizer_name from the default store).
    """
    try:
        viz = torch.load(viz_path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as err:
        # torch raises RuntimeError for a damaged zip and EOFError for an empty file.
        raise ValueError(
            f"cannot load {viz_path} ({type(err).__name__}: {err}); pass a viz_data.pt "
            "written by `python -m pruning sweep`, or run the sweep again"
        ) from err
    if not isinstance(viz, dict) or "prune_config" not in viz:
        raise ValueError(
            f"{viz_path} has no prune_config, so it is not a viz_data.pt of this project's "
            "pruner; pass one written by `python -m pruning sweep`"
        )
    prune_config = viz["prune_config"]
    missing = [key for key in ("task", "logit_scale", "logit_shift") if key not in prune_config]
    if missing:
        raise ValueError(
            f"{viz_path}: prune_config lacks {missing}; verify needs a file written by this "
            "project's pruner"
        )
    if "ablation_means" not in viz:
        raise ValueError(f"{viz_path}: no ablation_means; cannot rerun the circuit")

    task = get_task(prune_config["task"], encoding or model.config.tokenizer_name)
    n_eval_pairs = int(prune_config.get("n_eval_pairs", len(task.xs_test)))
    batch = make_batch(task.xs_test[:n_eval_pairs], model.config.block_size)
    circuit, means = viz["circuit_data"], viz["ablation_means"]
    calibration = {"scale": prune_config["logit_scale"], "shift": prune_config["logit_shift"]}
    n_nodes = sum(int(ids.numel()) for ids in circuit.values())

    results = {
        "stored_interv_loss": float(viz["importances"]["interv_loss"]) / 2.0,
        "circuit": circuit_loss(model, circuit, means, batch, **calibration),
        "circuit_uncalibrated": circuit_loss(model, circuit, means, batch),
        "circuit_ablated": circuit_loss(model, circuit, means, batch, invert=True),
        "random_circuit": circuit_loss(
            model, random_circuit(model.config, n_nodes, seed), means, batch
        ),
        "full_model": circuit_loss(model, None, means, batch),
        "n_nodes": float(n_nodes),
    }
    return results


def losses_match(results: dict[str, float]) -> bool:
    stored, recomputed = results["stored_interv_loss"], results["circuit"]
    return abs(stored - recomputed) <= ABSOLUTE_TOLERANCE + RELATIVE_TOLERANCE * abs(stored)
