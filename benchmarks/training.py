"""Benchmark the cost of the weight-sparsity projection in a training step.

Times optimizer steps of a preset's model (by default the embedded sparse model) on random token
ids. Steps with and without the top-k projection that follows each AdamW update alternate, and the
script prints tokens/s of both and their ratio, measured in one run.

    python benchmarks/training.py                     # a short report
    python benchmarks/training.py --json              # the figures as one JSON object
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `training` package; put the repo root there instead.
if sys.path and Path(sys.path[0]).resolve() == REPO / "benchmarks":
    sys.path[0] = str(REPO)

from inference.cli import exit_on_bad_input, int_at_least  # noqa: E402  (after the path fix)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", default="embedded_sparse", help="training preset (name or .toml)"
    )
    parser.add_argument(
        "--steps", type=int_at_least(1), default=10, help="timed steps of each kind"
    )
    parser.add_argument(
        "--threads", type=int_at_least(1), default=os.cpu_count(), help="torch CPU threads"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    from training.config import load_run_config
    from training.sparsity import project_to_density, sparse_parameters
    from training.trainer import build_optimizer, clip_grad_rms

    torch.set_num_threads(args.threads)
    from inference.allocator import keep_freed_memory_or_exit

    keep_freed_memory_or_exit()
    with exit_on_bad_input(logging.getLogger("benchmarks.training")):  # a bad preset or value
        run = load_run_config(args.preset)
    train = run.train
    torch.manual_seed(train.seed)

    from inference.gpt import GPT

    model = GPT(run.model).train()
    optimizer = build_optimizer(model, run)
    sparse = sparse_parameters(model)
    project_to_density(sparse, train.target_density, train.min_per_row)
    shape = (train.batch_size, run.model.block_size)

    def step(project: bool) -> float:
        idx = torch.randint(0, run.model.vocab_size, shape)
        start = time.perf_counter()
        _, loss, _ = model(idx, idx)
        loss.backward()
        clip_grad_rms(list(model.parameters()), train.grad_rms_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if project:
            project_to_density(sparse, train.target_density, train.min_per_row)
        return time.perf_counter() - start

    for _ in range(2):  # warm-up
        step(True)
    with_projection, without_projection = [], []
    for _ in range(args.steps):  # alternate, so drifts in machine load hit both kinds alike
        with_projection.append(step(True))
        without_projection.append(step(False))

    tokens = shape[0] * shape[1]
    with_s = statistics.median(with_projection)
    without_s = statistics.median(without_projection)
    result = {
        "preset": args.preset,
        "tokens_per_step": tokens,
        "target_density": train.target_density,
        "sparse_tensors": len(sparse),
        "tokens_per_s_with_projection": round(tokens / with_s, 1),
        "tokens_per_s_without_projection": round(tokens / without_s, 1),
        "projection_cost_fraction": round(with_s / without_s - 1.0, 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"preset {args.preset}: {tokens} tokens per step, {len(sparse)} sparse tensors")
    print(f"with projection:    {result['tokens_per_s_with_projection']:.0f} tokens/s")
    print(f"without projection: {result['tokens_per_s_without_projection']:.0f} tokens/s")
    print(
        f"projection costs {100 * result['projection_cost_fraction']:.1f}% of a step (target < 30%)"
    )


if __name__ == "__main__":
    main()
