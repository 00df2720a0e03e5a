"""Benchmark the dense and sparse (CSR) forward paths, and the cost of recording hooks.

Builds models with random weights at several densities, in the shape of the bundled model and of
OpenAI's csp_yolo2 (d_model 2048, 128 heads x 16, d_mlp 8192), and measures, in one run on the same
inputs: tokens/s of the dense path, of the sparse path, their ratio, and the ratio of a forward pass
inside `hook_recorder()` to one without. The three are timed in turns, one pass each per round.

Each row also reports how far the sparse path's logits are from the dense path's, with AbsTopK on
(the model as it is) and off (same weights). The two paths sum in different orders, so where AbsTopK
meets a near-tie they can keep different channels. `parity` is "AbsTopK near-tie" only when the
logits agree within 1e-5 with AbsTopK off and the first channel swap is between magnitudes within
1e-5 of each other; any other difference over 1e-5 is "MISMATCH".

    python benchmarks/inference.py            # a table
    python benchmarks/inference.py --json     # one JSON object per measurement
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

PARITY_ATOL = 1e-5
CASES = ("bundled", "csp_yolo2_shape")
T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `inference` package; put the repo root there instead.
if sys.path and Path(sys.path[0]).resolve() == REPO / "benchmarks":
    sys.path[0] = str(REPO)

from inference.cli import finite_float, int_at_least  # noqa: E402  (needs the sys.path fix)
from training.config import MAX_THREADS  # noqa: E402


def density_value(text: str) -> float:
    """Parse one weight density: a number in (0, 1]."""
    value = finite_float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"density {text} is invalid; use a number in (0, 1]")
    return value


def comma_list(parse_one: Callable[[str], T]) -> Callable[[str], list[T]]:
    """Return an argparse type for a comma-separated list whose items `parse_one` parses."""

    def parse(text: str) -> list[T]:
        items = [item.strip() for item in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"{text!r} has an empty item; use e.g. 1,8")
        return [parse_one(item) for item in items]

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per measurement")
    parser.add_argument(
        "--densities",
        type=comma_list(density_value),
        default="0.0625,0.015625,0.0009765625",
        help="weight densities in (0, 1], comma-separated",
    )
    parser.add_argument(
        "--batches",
        type=comma_list(int_at_least(1)),
        default="1,8",
        help="batch sizes in sequences of --seq-len tokens, comma-separated",
    )
    parser.add_argument("--seq-len", type=int_at_least(1), default=256, help="tokens per sequence")
    parser.add_argument(
        "--repeats",
        type=int_at_least(1),
        default=3,
        help="minimum timed forward passes per path (median)",
    )
    parser.add_argument(
        "--min-seconds",
        type=finite_float,
        default=3.0,
        help="keep timing rounds until they add up to this many seconds per measurement",
    )
    parser.add_argument(
        "--yolo2-layers",
        type=int_at_least(1),
        default=2,
        help="layers of the csp_yolo2-shaped model (the release has 8; tokens/s scales ~1/n_layer)",
    )
    parser.add_argument(
        "--cases",
        type=comma_list(str),
        default="bundled,csp_yolo2_shape",
        help="model shapes to run, comma-separated: bundled, csp_yolo2_shape",
    )
    parser.add_argument(
        "--threads",
        type=int_at_least(1),
        default=os.cpu_count(),
        help="torch CPU threads (default: one per CPU)",
    )
    args = parser.parse_args(argv)

    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown --cases {unknown}; choose from {', '.join(CASES)}")
    if args.threads > MAX_THREADS:
        parser.error(f"--threads {args.threads} is invalid; use at most {MAX_THREADS}")
    return args


def bundled_shape() -> dict:
    """Return the bundled sparse model's config, or a stand-in of the same size when it is absent."""
    for config_path in sorted((REPO / "store" / "models").glob("*/beeg_config.json")):
        raw = json.loads(config_path.read_text())
        if not raw.get("name", config_path.parent.name).startswith("dense"):
            return {k: v for k, v in raw.items()}
    return dict(
        n_layer=4,
        d_model=256,
        n_head=8,
        d_mlp=1024,
        vocab_size=2048,
        block_size=256,
        rms_norm=True,
        bias=False,
        tied_unembed=False,
        afrac=0.25,
        enable_bigram_table=True,
    )


def yolo2_shape(n_layer: int) -> dict:
    return dict(
        n_layer=n_layer,
        d_model=2048,
        n_head=128,
        d_head=16,
        d_mlp=8192,
        vocab_size=2048,
        block_size=1024,
        rms_norm=True,
        bias=False,
        tied_unembed=False,
        afrac=0.25,
        sink=True,
        d_pos_emb=32,
        enable_bigram_table=True,
    )


def build(shape: dict, density: float, seq_len: int):
    import torch

    from inference.config import config_from_dict
    from inference.gpt import GPT

    shape = dict(shape, block_size=max(shape.get("block_size", seq_len), seq_len))
    config = config_from_dict(shape)
    torch.manual_seed(0)
    model = GPT(config).eval().requires_grad_(False)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(torch.rand_like(module.weight) < density)
    return model


def time_forwards(runs: dict, repeats: int, min_seconds: float) -> tuple[dict[str, float], int]:
    """Return the median seconds of each zero-argument function in `runs`, and the round count.

    Each round times every function once, so load from other processes on a shared CPU falls on all
    of them alike instead of on whichever ran during a busy spell. Rounds go on until there are
    `repeats` of them and they took `min_seconds` in total, so fast models get more samples.
    """
    for run in runs.values():
        run()  # warm-up: CSR conversion, allocator, thread pool
    times = {name: [] for name in runs}
    elapsed = 0.0
    while len(times["dense"]) < repeats or elapsed < min_seconds:
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            elapsed += times[name][-1]
    medians = {name: statistics.median(values) for name, values in times.items()}
    return medians, len(times["dense"])


def first_abstopk_mismatch(dense_hooks: dict, sparse_hooks: dict) -> tuple[str, float] | None:
    """Find the first hook, in forward order, where the two paths kept different channels.

    Returns the hook name and the largest magnitude gap, over the positions where the kept sets
    differ, between the channels that only one path kept (a channel missing on one side counts as
    magnitude 0). Returns None when both paths kept the same channels everywhere. Where the inputs
    agree up to rounding, AbsTopK can only swap channels whose magnitudes tie within that rounding:
    a gap near 1e-6 is a near-tie, and a large gap means the inputs already differed.
    """
    for name, dense in dense_hooks.items():
        sparse = sparse_hooks[name]
        dense_kept, sparse_kept = dense != 0, sparse != 0
        rows = (dense_kept != sparse_kept).any(dim=-1)  # positions where the kept sets differ
        if not rows.any():
            continue
        dense_only = dense[rows].abs() * (dense_kept & ~sparse_kept)[rows]  # (positions, width)
        sparse_only = sparse[rows].abs() * (sparse_kept & ~dense_kept)[rows]
        swapped = dense_only + sparse_only  # each channel is kept by at most one of the two paths
        high = swapped.max(dim=-1).values
        low = swapped.masked_fill(swapped == 0, float("inf")).min(dim=-1).values
        one_sided = (dense_only.amax(dim=-1) == 0) | (sparse_only.amax(dim=-1) == 0)
        low = low.masked_fill(one_sided, 0.0)
        return name, float((high - low).max())
    return None


def compare_paths(dense_model, sparse_model, idx) -> dict:
    """Return the max logit difference of the two paths with AbsTopK on and off, and any tie.

    `parity` is "within 1e-5", "AbsTopK near-tie" (the logits differ, but with AbsTopK off they agree
    within 1e-5 and the first channel swap has a magnitude gap within 1e-5), or "MISMATCH".
    """
    import torch

    from inference.hook_utils import hook_recorder

    with torch.no_grad():
        with hook_recorder() as dense_hooks:
            dense_logits = dense_model(idx)[0]
        with hook_recorder() as sparse_hooks:
            sparse_logits = sparse_model(idx)[0]
        diff = float((sparse_logits - dense_logits).abs().max())
        del dense_logits, sparse_logits
        mismatch = first_abstopk_mismatch(dense_hooks, sparse_hooks) if diff > PARITY_ATOL else None
        del dense_hooks, sparse_hooks

        saved = [model.config.abstopk_locations for model in (dense_model, sparse_model)]
        try:
            for model in (dense_model, sparse_model):
                model.config.abstopk_locations = frozenset()
            diff_off = float((sparse_model(idx)[0] - dense_model(idx)[0]).abs().max())
        finally:
            for model, locations in zip((dense_model, sparse_model), saved, strict=True):
                model.config.abstopk_locations = locations

    if diff <= PARITY_ATOL:
        parity = "within 1e-5"
    elif diff_off <= PARITY_ATOL and mismatch is not None and mismatch[1] <= PARITY_ATOL:
        parity = "AbsTopK near-tie"
    else:
        parity = "MISMATCH"
    return dict(
        max_abs_logit_diff=diff,
        max_abs_logit_diff_abstopk_off=diff_off,
        abstopk_first_mismatch=mismatch[0] if mismatch else None,
        abstopk_mismatch_gap=mismatch[1] if mismatch else None,
        parity=parity,
    )


def measure(case: str, shape: dict, density: float, batch: int, args) -> dict:
    import torch

    from inference.hook_utils import hook_recorder
    from inference.sparse import enable_sparse_forward

    dense_model = build(shape, density, args.seq_len)
    sparse_model = copy.deepcopy(dense_model)
    # Every Linear is at the target density, so max_density 1 swaps all that are large enough
    # (inference.sparse.DEFAULT_MIN_WEIGHTS); smaller ones keep dense products, as load_model does.
    csr_layers = len(enable_sparse_forward(sparse_model, max_density=1.0))
    idx = torch.randint(0, dense_model.config.vocab_size, (batch, args.seq_len))
    tokens = batch * args.seq_len

    def recorded():
        with hook_recorder():
            dense_model(idx)

    with torch.no_grad():
        seconds, rounds = time_forwards(
            dict(dense=lambda: dense_model(idx), sparse=lambda: sparse_model(idx), record=recorded),
            args.repeats,
            args.min_seconds,
        )
    return dict(
        case=case,
        n_layer=dense_model.config.n_layer,
        density=density,
        batch=batch,
        seq_len=args.seq_len,
        threads=torch.get_num_threads(),
        csr_layers=csr_layers,
        rounds=rounds,
        dense_tokens_per_s=round(tokens / seconds["dense"], 1),
        sparse_tokens_per_s=round(tokens / seconds["sparse"], 1),
        ratio=round(seconds["dense"] / seconds["sparse"], 2),
        record_overhead=round(seconds["record"] / seconds["dense"], 3),
        **compare_paths(dense_model, sparse_model, idx),
    )


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    from inference.allocator import keep_freed_memory_or_exit

    malloc = "reuse" if keep_freed_memory_or_exit() else "system"  # CIRCUIT_SPARSITY_MALLOC=system
    densities, batches, cases = args.densities, args.batches, args.cases
    shapes = {"bundled": bundled_shape(), "csp_yolo2_shape": yolo2_shape(args.yolo2_layers)}
    if not args.json:
        print(f"malloc: {malloc} (CIRCUIT_SPARSITY_MALLOC=system keeps glibc's defaults)")
        print(
            f"{'case':16} {'L':>2} {'density':>9} {'batch':>5} {'dense tok/s':>12} "
            f"{'sparse tok/s':>12} {'ratio':>6} {'rec.ovh':>7} {'max|dlogit|':>11} "
            f"{'topk off':>9}  parity"
        )
    for case in cases:
        for density in densities:
            for batch in batches:
                row = measure(case, shapes[case], density, batch, args) | {"malloc": malloc}
                if args.json:
                    print(json.dumps(row), flush=True)
                else:
                    print(
                        f"{row['case']:16} {row['n_layer']:>2} {density:>9.5f} {batch:>5} "
                        f"{row['dense_tokens_per_s']:>12.0f} {row['sparse_tokens_per_s']:>12.0f} "
                        f"{row['ratio']:>6.2f} {row['record_overhead']:>7.3f} "
                        f"{row['max_abs_logit_diff']:>11.2e} "
                        f"{row['max_abs_logit_diff_abstopk_off']:>9.2e}  {row['parity']}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
