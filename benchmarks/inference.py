"""Benchmark the dense and sparse (CSR) forward paths, and the cost of recording hooks.

Builds models with random weights at several densities, in the shape of the bundled model and of
OpenAI's csp_yolo2 (d_model 2048, 128 heads x 16, d_mlp 8192), and measures, in one run on the same
inputs: tokens/s of the dense path, of the sparse path, their ratio, and the ratio of a forward pass
inside `hook_recorder()` to one without.

    python benchmarks/inference.py            # a table
    python benchmarks/inference.py --json     # one JSON object per measurement
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
# `inference` package; put the repo root there instead.
if sys.path and Path(sys.path[0]).resolve() == REPO / "benchmarks":
    sys.path[0] = str(REPO)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per measurement")
    parser.add_argument(
        "--densities",
        default="0.0625,0.015625,0.0009765625",
        help="weight densities, comma-separated",
    )
    parser.add_argument(
        "--batches", default="1,8", help="batch sizes of 256-token sequences, comma-separated"
    )
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per sequence")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed forward passes per measurement (median)"
    )
    parser.add_argument(
        "--yolo2-layers",
        type=int,
        default=2,
        help="layers of the csp_yolo2-shaped model (the release has 8; tokens/s scales ~1/n_layer)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    return parser.parse_args()


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


def time_forward(model, idx, repeats: int, record: bool = False) -> float:
    import torch

    from inference.hook_utils import hook_recorder

    def once():
        with torch.no_grad():
            if record:
                with hook_recorder():
                    model(idx)
            else:
                model(idx)

    once()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(case: str, shape: dict, density: float, batch: int, args) -> dict:
    import torch

    from inference.sparse import disable_sparse_forward, enable_sparse_forward

    model = build(shape, density, args.seq_len)
    idx = torch.randint(0, model.config.vocab_size, (batch, args.seq_len))
    tokens = batch * args.seq_len

    dense_s = time_forward(model, idx, args.repeats)
    record_s = time_forward(model, idx, args.repeats, record=True)
    enable_sparse_forward(model, max_density=1.0)
    sparse_s = time_forward(model, idx, args.repeats)
    with torch.no_grad():
        sparse_logits = model(idx)[0]
        disable_sparse_forward(model)
        dense_logits = model(idx)[0]
    return dict(
        case=case,
        n_layer=model.config.n_layer,
        density=density,
        batch=batch,
        seq_len=args.seq_len,
        dense_tokens_per_s=round(tokens / dense_s, 1),
        sparse_tokens_per_s=round(tokens / sparse_s, 1),
        ratio=round(dense_s / sparse_s, 2),
        record_overhead=round(record_s / dense_s, 3),
        max_abs_logit_diff=float((sparse_logits - dense_logits).abs().max()),
    )


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    densities = [float(d) for d in args.densities.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    cases = [("bundled", bundled_shape()), ("csp_yolo2_shape", yolo2_shape(args.yolo2_layers))]
    if not args.json:
        print(
            f"{'case':16} {'L':>2} {'density':>9} {'batch':>5} {'dense tok/s':>12} "
            f"{'sparse tok/s':>12} {'ratio':>6} {'rec.ovh':>7} {'max|dlogit|':>11}"
        )
    for case, shape in cases:
        for density in densities:
            for batch in batches:
                row = measure(case, shape, density, batch, args)
                if args.json:
                    print(json.dumps(row), flush=True)
                else:
                    print(
                        f"{row['case']:16} {row['n_layer']:>2} {density:>9.5f} {batch:>5} "
                        f"{row['dense_tokens_per_s']:>12.0f} {row['sparse_tokens_per_s']:>12.0f} "
                        f"{row['ratio']:>6.2f} {row['record_overhead']:>7.3f} "
                        f"{row['max_abs_logit_diff']:>11.2e}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
