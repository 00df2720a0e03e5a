"""The pruning pipeline: train gates, search k, and write one viz_data file per circuit.

Steps (Gao et al. 2025, "Weight-sparse transformers have interpretable circuits",
section 2.2 and appendix A.5):

1. Compute (or read from the cache) every node's mean activation on the
   validation corpus.
2. Train one gate per node on the task's train pairs (`pruning.train`).
3. Rank nodes by tau and bisect k for the smallest top-k circuit whose
   per-sequence loss on train pairs is at most the target (`pruning.search`).
4. For each requested k (and the k found), fit a logit scale and shift on the
   train pairs with LBFGS and evaluate the circuit on the test pairs.
5. Write its viz data: per-node and per-block ablation losses, edges, task
   samples and validation-corpus examples.

The gradient-attribution baseline (`pruning.attribution`) replaces step 2 and 3's
ranking with |d loss / d gate| at the full model.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from inference.circuit import num_total_nodes
from pruning.config import PruneConfig
from pruning.data import PairBatch, fit_logit_calibration, make_batch, sequence_losses
from pruning.edges import pair_data, residual_connections
from pruning.examples import activation_examples
from pruning.importances import (
    block_ablation_losses,
    first_order_node_losses,
    node_ablation_losses,
    task_sample_activations,
)
from pruning.search import circuit_from_scores, circuit_loss, circuit_pair_logits, circuit_size
from pruning.vizdata import count_edges, stored_loss
from registry.tasks import Task

logger = logging.getLogger(__name__)


@contextmanager
def phase(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Log the start and duration of a pipeline phase and add it to `timings` (seconds)."""
    logger.info("%s: start", name)
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    timings[name] = timings.get(name, 0.0) + seconds
    logger.info("%s: done in %.2f s", name, seconds)


@dataclass
class PruneSetup:
    """Everything a pruning run reads: model, task, means and evaluation batches."""

    model: torch.nn.Module
    task: Task
    means: dict[str, torch.Tensor]
    config: PruneConfig
    model_name: str
    windows: torch.Tensor | None = None  # validation windows for activation examples
    progress: bool = True
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        block_size = self.model.config.block_size
        cfg = self.config
        self.search_batch = make_batch(self.task.xs[: cfg.n_search_pairs], block_size)
        self.eval_pairs = self.task.xs_test[: cfg.n_eval_pairs]
        self.eval_batch = make_batch(self.eval_pairs, block_size)
        self.node_batch = make_batch(self.task.xs_test[: cfg.n_node_ablation_pairs], block_size)
        self.sample_pairs = self.task.xs_test[: cfg.n_task_sample_pairs]
        self.full_loss = _mean_loss(
            circuit_pair_logits(self.model, None, {}, self.eval_batch), self.eval_batch
        )


def _mean_loss(pair_logits: torch.Tensor, batch: PairBatch, scale=1.0, shift=0.0) -> float:
    return float(sequence_losses(pair_logits, batch, scale, shift).mean())


@dataclass
class Ranking:
    """Node scores from one method, with the history of how they were found."""

    method: str
    scores: dict[str, torch.Tensor]
    history: list[tuple[int, float]]  # (step, per-sequence loss) of the scoring run
    # Where the k search starts: the open gates after mask training (None: scan up from k = 1).
    start_k: int | None = None


def evaluate_circuit(setup: PruneSetup, circuit) -> dict:
    """Fit the logit calibration on train pairs and return test-pair losses (per sequence)."""
    model, means = setup.model, setup.means
    train_logits = circuit_pair_logits(model, circuit, means, setup.search_batch)
    scale, shift = fit_logit_calibration(
        train_logits,
        setup.search_batch,
        setup.config.n_lbfgs_steps,
        max_scale=setup.config.max_logit_scale,
    )
    test_logits = circuit_pair_logits(model, circuit, means, setup.eval_batch)
    return {
        "logit_scale": scale,
        "logit_shift": shift,
        "loss": _mean_loss(test_logits, setup.eval_batch, scale, shift),
        "loss_uncalibrated": _mean_loss(test_logits, setup.eval_batch),
    }


def loss_curve(setup: PruneSetup, ranking: Ranking, ks: Sequence[int]) -> list[dict]:
    """Return the uncalibrated test loss of the top-k circuit for each k.

    The k search uses uncalibrated losses too; only written circuits get a fitted
    calibration, which would triple the cost of each point here.
    """
    points = []
    for k in sorted(set(ks)):
        circuit = circuit_from_scores(setup.model.config, ranking.scores, k)
        logits = circuit_pair_logits(setup.model, circuit, setup.means, setup.eval_batch)
        points.append({"k": k, "loss_per_sequence": _mean_loss(logits, setup.eval_batch)})
    return points


def build_viz_data(
    setup: PruneSetup, ranking: Ranking, k: int, *, k_label: str, extra_config: dict
) -> dict:
    """Evaluate the top-k circuit of `ranking` and return its viz_data dict."""
    model, means, cfg = setup.model, setup.means, setup.config
    circuit = circuit_from_scores(model.config, ranking.scores, k)
    timings = setup.timings

    with phase("evaluate circuit", timings):
        result = evaluate_circuit(setup, circuit)
        calibration = {"scale": result["logit_scale"], "shift": result["logit_shift"]}
    exact = circuit_size(circuit) <= cfg.max_exact_node_ablations
    with phase("node ablations", timings):
        # The node and block losses use the first n_node_ablation_pairs test pairs, so their
        # deltas must be taken against the circuit's loss on those same pairs, not interv_loss.
        node_base_loss = circuit_loss(model, circuit, means, setup.node_batch, **calibration)
        if exact:
            node_losses = node_ablation_losses(
                model, circuit, means, setup.node_batch, progress=setup.progress, **calibration
            )
        else:
            # NOTE: large circuits get first-order estimates, because exact ablations
            # cost one forward pass over the batch per kept node.
            node_losses = first_order_node_losses(
                model, circuit, means, setup.node_batch, **calibration
            )
        block_losses = block_ablation_losses(model, circuit, means, setup.node_batch, **calibration)
    detailed = circuit_from_scores(model.config, ranking.scores, min(k, cfg.max_detailed_nodes))
    with phase("edges and task samples", timings):
        edges = pair_data(model, circuit)
        connections = residual_connections(model, circuit)
        tokens, activations, lengths = task_sample_activations(
            model, circuit, means, setup.sample_pairs, record=detailed
        )
    with phase("activation examples", timings):
        samples = (
            {} if setup.windows is None else activation_examples(model, detailed, setup.windows)
        )

    prune_config = {
        "method": ranking.method,
        "model": setup.model_name,
        "task": setup.task.name,
        "k": circuit_size(circuit),
        "k_label": k_label,
        "n_edges": count_edges(edges),
        "hyperparameters": cfg.to_dict(),
        "search_split": "train",
        "eval_split": "test",
        "n_eval_pairs": len(setup.eval_pairs),
        "node_ablation_pairs": cfg.n_node_ablation_pairs,
        "node_ablation_base_loss_per_sequence": node_base_loss,
        "ch_interv_losses_method": "exact" if exact else "first_order",
        "n_detailed_nodes": circuit_size(detailed),
        "logit_scale": result["logit_scale"],
        "logit_shift": result["logit_shift"],
        "interv_loss_per_sequence": result["loss"],
        "interv_loss_uncalibrated_per_sequence": result["loss_uncalibrated"],
        "full_model_loss_per_sequence": setup.full_loss,
        "timings_seconds": dict(timings),
        **extra_config,
    }
    final_step = ranking.history[-1][0] + 1 if ranking.history else 0
    all_loss = [(step, stored_loss(loss)) for step, loss in ranking.history]
    all_loss.append((final_step, stored_loss(result["loss"])))
    return {
        "circuit_data": circuit,
        "samples": samples,
        "importances": {
            "beeg_model_config": model.config.to_dict(),
            "loss": stored_loss(setup.full_loss),
            "interv_loss": stored_loss(result["loss"]),
            # Circuit loss on the node-ablation pairs: subtract this from ch_interv_losses
            # and layer_interv_losses for each node's and block's delta.
            "node_ablation_base_loss": stored_loss(node_base_loss),
            "ch_interv_losses": {
                loc: [stored_loss(x) for x in losses] for loc, losses in node_losses.items()
            },
            "layer_interv_losses": {name: stored_loss(x) for name, x in block_losses.items()},
            "pair_data": edges,
            "pair_data_connections": connections,
            "task_samples": (tokens, activations),
        },
        "all_loss": all_loss,
        "num_total_nodes": num_total_nodes(model.config),
        "prune_config": prune_config,
        "ablation_means": {loc: mean.clone() for loc, mean in means.items()},
        "task_sample_lengths": lengths,
    }
