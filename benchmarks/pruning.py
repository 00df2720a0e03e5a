"""Benchmark circuit pruning: learned masks against attribution, k-search time, sparse against dense.

    python benchmarks/pruning.py                                    # every task the model solves
    python benchmarks/pruning.py --tasks single_double_quote --quick  # a smoke run
    python benchmarks/pruning.py --json                             # one JSON object per task

Steps, for each task:
1. Score the full models' pair accuracy on the task's 128 test pairs
   (`training.evaluate.task_accuracy`). The sparse model "solves" a task when it gets at least
   --min-accuracy of the pairs right. The other tasks are skipped, and the report gives the reason.
2. On the sparse model, train the node masks and bisect k for the smallest circuit that reaches
   --target-loss (per-sequence task loss on train pairs), as `python -m pruning prune` does.
   The time of these two steps is the "k search" time. The ablation means are computed once per
   model (and cached on disk) before any timing starts.
3. Run the same bisection on the gradient-attribution scores (`pruning.attribution`), the
   baseline that learned masks should beat: target at most half its nodes at the same loss.
4. If the dense model solves the task too, run step 2 on it. Circuit edges are the nonzero weights
   between kept nodes (`pruning.vizdata.count_edges`); the last line gives the geometric mean over
   tasks of dense edges / sparse edges, counted where both circuits reach the target loss.

Nothing is written to the store. Times are wall-clock seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# A script's own folder comes first on sys.path, so this file would shadow the `pruning` package.
# The repo root takes that place instead.
if sys.path and Path(sys.path[0]).resolve() == REPO / "benchmarks":
    sys.path[0] = str(REPO)

NODE_RATIO_TARGET = 0.5  # learned-mask nodes / attribution nodes
K_SEARCH_SECONDS_TARGET = 60.0
QUICK_STEPS = 40  # mask training steps with --quick (default: PruneConfig.n_steps)
QUICK_SEARCH_PAIRS = 64  # train pairs per k-search evaluation with --quick


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )

    # Which models.
    parser.add_argument(
        "--store",
        type=Path,
        default=REPO / "store",
        help="store folder holding models/<name>/ (default: the embedded store)",
    )
    parser.add_argument("--sparse-model", default="sparse_stdlib", help="weight-sparse model name")
    parser.add_argument(
        "--dense-model", default="dense_baseline", help="dense model name for the edge comparison"
    )
    parser.add_argument(
        "--dense",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="prune the dense model too (step 4)",
    )

    # Which tasks, and the search settings.
    parser.add_argument(
        "--tasks", nargs="+", default=None, help="task names (default: every registered task)"
    )
    parser.add_argument(
        "--min-accuracy",
        type=float,
        default=0.7,
        help="fraction of test pairs the full model must get right for a task to count as solved",
    )
    parser.add_argument(
        "--target-loss",
        type=float,
        default=None,
        help="per-sequence task loss (nats) every circuit must reach (default: the pruner's 0.15)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_STEPS} mask training steps and {QUICK_SEARCH_PAIRS} search pairs, for a smoke run",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the mask initialisation")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's own choice)"
    )

    # Output.
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object per task, then a summary object"
    )

    args = parser.parse_args(argv)
    check_args(parser, args)
    return args


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error for an out-of-range value, a missing model or an unknown task."""
    from registry.tasks import list_task_names

    if not 0.0 <= args.min_accuracy <= 1.0:
        parser.error(f"--min-accuracy {args.min_accuracy} must be in [0, 1]")
    options = ["sparse_model", "dense_model"] if args.dense else ["sparse_model"]
    for option in options:
        folder = args.store / "models" / getattr(args, option)
        if not folder.is_dir():
            flag = "--" + option.replace("_", "-")
            parser.error(f"model folder {folder} not found; check --store and {flag}")
    unknown = sorted(set(args.tasks or []) - set(list_task_names()))
    if unknown:
        parser.error(f"unknown --tasks {unknown}; known tasks: {', '.join(list_task_names())}")


def prune_config(args):
    from pruning.config import PruneConfig

    settings = {"seed": args.seed}
    if args.target_loss is not None:
        settings["target_loss"] = args.target_loss
    if args.quick:
        settings.update(n_steps=QUICK_STEPS, n_search_pairs=QUICK_SEARCH_PAIRS)
    return PruneConfig(**settings)


def learned_circuit(setup) -> dict:
    """Train masks and bisect k on one task; return the circuit's size, edges and timings."""
    from pruning.run import rank_by_mask_training

    started = time.perf_counter()
    ranking = rank_by_mask_training(setup)
    trained = time.perf_counter()
    result = searched_circuit(setup, ranking.scores, start=ranking.start_k)
    result["mask_training_s"] = trained - started
    result["k_search_s"] = result["mask_training_s"] + result["bisection_s"]
    return result


def searched_circuit(setup, scores, start: int | None = None) -> dict:
    """Search k on `scores` from `start`; return nodes, edges, loss and whether the target was met."""
    from pruning.edges import pair_data
    from pruning.search import circuit_from_scores, search_k
    from pruning.vizdata import count_edges

    started = time.perf_counter()
    k, history = search_k(
        setup.model, scores, setup.means, setup.search_batch, setup.config.target_loss, start=start
    )
    bisection_s = time.perf_counter() - started
    loss = next(loss for evaluated_k, loss in reversed(history) if evaluated_k == k)
    circuit = circuit_from_scores(setup.model.config, scores, k)
    return {
        "nodes": k,
        "edges": count_edges(pair_data(setup.model, circuit)),
        "loss_per_sequence": loss,
        "target_reached": loss <= setup.config.target_loss,
        "bisection_s": bisection_s,
        "n_evaluations": len(history),
    }


def attribution_circuit(setup) -> dict:
    from pruning.run import rank_by_attribution

    started = time.perf_counter()
    ranking = rank_by_attribution(setup)
    result = searched_circuit(setup, ranking.scores)
    result["scoring_s"] = time.perf_counter() - started - result["bisection_s"]
    return result


class Model:
    """One model loaded for pruning, with its task accuracies computed on demand."""

    def __init__(self, folder: Path, config):
        from pruning.run import load_model_for_pruning

        self.loaded = load_model_for_pruning(
            folder, n_mean_windows=256, window_len=128, n_example_windows=0
        )
        self.config = config

    @property
    def name(self) -> str:
        return self.loaded.name

    def task(self, task_name: str):
        from registry.tasks import get_task

        return get_task(task_name, self.loaded.encoding)

    def longest_prompt(self, task_name: str) -> int:
        """Return the token count of the task's longest sequence, train and test pairs."""
        task = self.task(task_name)
        return max(
            len(sequence)
            for pair in task.xs + task.xs_test
            for sequence in (pair.inputs, pair.patch_from_inputs)
        )

    def accuracy(self, task_name: str) -> float:
        from training.evaluate import task_accuracy

        return task_accuracy(self.loaded.model, self.task(task_name)).pair_accuracy

    def setup(self, task_name: str):
        from pruning.run import setup_task

        return setup_task(self.loaded, task_name, self.config, progress=False)


def benchmark_task(task_name: str, sparse: Model, dense: Model | None, min_accuracy: float) -> dict:
    """Run steps 1-4 of the module docstring on one task and return its row."""
    row: dict = {"task": task_name, "sparse_model": sparse.name}
    block_size = sparse.loaded.model.config.block_size
    longest = sparse.longest_prompt(task_name)
    if longest > block_size:
        row["sparse_accuracy"] = None
        row["skipped"] = (
            f"its longest prompt has {longest} tokens, over {sparse.name}'s block_size {block_size}"
        )
        return row
    row["sparse_accuracy"] = sparse.accuracy(task_name)
    if row["sparse_accuracy"] < min_accuracy:
        row["skipped"] = (
            f"{sparse.name} gets {row['sparse_accuracy']:.1%} of test pairs right "
            f"(< {min_accuracy:.0%})"
        )
        return row

    setup = sparse.setup(task_name)
    row["full_loss_per_sequence"] = setup.full_loss
    row["learned"] = learned_circuit(setup)
    row["attribution"] = attribution_circuit(setup)
    row["node_ratio"] = row["learned"]["nodes"] / max(1, row["attribution"]["nodes"])

    if dense is not None:
        row["dense_model"] = dense.name
        row["dense_accuracy"] = dense.accuracy(task_name)
        if row["dense_accuracy"] < min_accuracy:
            row["dense_skipped"] = (
                f"{dense.name} gets {row['dense_accuracy']:.1%} of test pairs right "
                f"(< {min_accuracy:.0%})"
            )
        else:
            row["dense"] = learned_circuit(dense.setup(task_name))
            row["edge_ratio"] = _edge_ratio(row)
    return row


def _edge_ratio(row: dict) -> float | None:
    """Return dense edges / sparse edges when both circuits reach the target, else None."""
    sparse, dense = row["learned"], row["dense"]
    if not (sparse["target_reached"] and dense["target_reached"]) or sparse["edges"] == 0:
        return None
    return dense["edges"] / sparse["edges"]


def geometric_mean(values: list[float]) -> float | None:
    positive = [v for v in values if v > 0]
    if not positive:
        return None
    return math.exp(sum(math.log(v) for v in positive) / len(positive))


HEADER = (
    f"{'task':<28} {'acc':>6} {'nodes':>6} {'attrib':>6} {'ratio':>6} "
    f"{'search s':>8} {'edges':>7} {'dense':>7} {'d/s':>6}"
)


def format_row(row: dict) -> str:
    if "skipped" in row:
        accuracy = row["sparse_accuracy"]
        accuracy_text = "-" if accuracy is None else f"{accuracy:.1%}"
        return f"{row['task']:<28} {accuracy_text:>6}  skipped: {row['skipped']}"
    learned, attribution = row["learned"], row["attribution"]
    dense = row.get("dense")
    cells = [
        f"{row['task']:<28}",
        f"{row['sparse_accuracy']:>6.1%}",
        f"{learned['nodes']:>6}{'' if learned['target_reached'] else '*'}",
        f"{attribution['nodes']:>6}{'' if attribution['target_reached'] else '*'}",
        f"{row['node_ratio']:>6.2f}",
        f"{learned['k_search_s']:>8.1f}",
        f"{learned['edges']:>7}",
        f"{dense['edges'] if dense else '-':>7}",
        f"{row['edge_ratio']:>6.2f}" if row.get("edge_ratio") else f"{'-':>6}",
    ]
    return " ".join(cells)


def summary(rows: list[dict], quick: bool = False) -> dict:
    """Return the pass counts of the three targets and the geometric mean edge ratio."""
    pruned = [row for row in rows if "skipped" not in row]
    edge_ratios = [row["edge_ratio"] for row in pruned if row.get("edge_ratio")]
    return {
        "quick": quick,
        "tasks_pruned": len(pruned),
        "tasks_skipped": len(rows) - len(pruned),
        "node_ratio_target": NODE_RATIO_TARGET,
        "node_ratio_met": sum(row["node_ratio"] <= NODE_RATIO_TARGET for row in pruned),
        "k_search_s_target": K_SEARCH_SECONDS_TARGET,
        "k_search_met": sum(
            row["learned"]["k_search_s"] < K_SEARCH_SECONDS_TARGET for row in pruned
        ),
        "edge_ratio_tasks": len(edge_ratios),
        "edge_ratio_geometric_mean": geometric_mean(edge_ratios),
    }


def print_report(rows: list[dict], result: dict, args) -> None:
    for row in rows:
        if "dense_skipped" in row:
            print(f"  {row['task']}: dense circuit not pruned: {row['dense_skipped']}")
    pruned = result["tasks_pruned"]
    print()
    print(f"targets, over {pruned} pruned tasks ({result['tasks_skipped']} skipped):")
    print(
        f"  (a) learned nodes / attribution nodes <= {NODE_RATIO_TARGET}: "
        f"met on {result['node_ratio_met']} of {pruned}"
    )
    print(
        f"  (b) k search (mask training + bisection) < {K_SEARCH_SECONDS_TARGET:.0f} s: "
        f"met on {result['k_search_met']} of {pruned}"
    )
    mean = result["edge_ratio_geometric_mean"]
    mean_text = "n/a" if mean is None else f"{mean:.2f}"
    print(
        f"  (c) dense / sparse circuit edges, geometric mean over {result['edge_ratio_tasks']} "
        f"tasks where both circuits reach the target: {mean_text} (target > 1)"
    )
    print("  * = no circuit reached the target loss; k is then every node")
    if result["quick"]:
        print(
            f"  --quick: {QUICK_STEPS} mask steps and {QUICK_SEARCH_PAIRS} search pairs; circuit "
            "sizes and times are a smoke test, not representative: rerun without --quick"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    from registry.tasks import list_task_names

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from inference.allocator import keep_freed_memory_or_exit

    keep_freed_memory_or_exit()
    config = prune_config(args)
    tasks = args.tasks or list_task_names()

    sparse = Model(args.store / "models" / args.sparse_model, config)
    dense = Model(args.store / "models" / args.dense_model, config) if args.dense else None
    if not args.json:
        print(
            f"{sparse.name} vs attribution and {dense.name if dense else '(no dense model)'}; "
            f"target loss {config.target_loss} per sequence, {config.n_steps} mask steps, "
            f"{torch.get_num_threads()} torch threads"
        )
        print(HEADER)
    rows = []
    for task_name in tasks:
        row = benchmark_task(task_name, sparse, dense, args.min_accuracy)
        rows.append(row)
        print(json.dumps(row) if args.json else format_row(row), flush=True)
    result = summary(rows, quick=args.quick)
    if args.json:
        print(json.dumps({"summary": result}))
    else:
        print_report(rows, result, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
