"""The inference benchmark's parity report: it separates AbsTopK ties from real mismatches."""

from __future__ import annotations

import pytest
import torch
from benchmark_script import load_benchmark


@pytest.fixture(scope="module")
def bench_script():
    return load_benchmark("inference")


def hooks(*rows):
    """Return one hook whose positions are `rows`."""
    return {"0.attn.act_in": torch.tensor([rows])}  # (1, positions, width)


def test_same_channels_is_no_mismatch(bench_script):
    dense = hooks([0.5, 0.0, -0.3])
    sparse = hooks([0.5000001, 0.0, -0.3])
    assert bench_script.first_abstopk_mismatch(dense, sparse) is None


def test_near_tie_swap_has_tiny_gap(bench_script):
    dense = hooks([0.9, 0.30000001, 0.0], [0.1, 0.0, 0.2])
    sparse = hooks([0.9, 0.0, -0.3], [0.1, 0.0, 0.2])
    name, gap = bench_script.first_abstopk_mismatch(dense, sparse)
    assert name == "0.attn.act_in"
    assert gap < 1e-6


def test_real_swap_has_large_gap(bench_script):
    dense = hooks([0.9, 0.5, 0.0])
    sparse = hooks([0.9, 0.0, 0.1])
    _, gap = bench_script.first_abstopk_mismatch(dense, sparse)
    assert gap == pytest.approx(0.4)


def test_one_sided_channel_counts_from_zero(bench_script):
    dense = hooks([0.9, 0.5, 0.0])
    sparse = hooks([0.9, 0.0, 0.0])
    _, gap = bench_script.first_abstopk_mismatch(dense, sparse)
    assert gap == pytest.approx(0.5)


def test_first_hook_in_order_is_reported(bench_script):
    dense = {
        "0.attn.act_in": torch.tensor([[[1.0, 0.0]]]),
        "1.attn.act_in": torch.tensor([[[1.0, 0.0]]]),
    }
    sparse = {
        "0.attn.act_in": torch.tensor([[[1.0, 0.0]]]),
        "1.attn.act_in": torch.tensor([[[0.0, 1.0]]]),
    }
    name, _ = bench_script.first_abstopk_mismatch(dense, sparse)
    assert name == "1.attn.act_in"


def test_compare_paths_small_model(bench_script):
    from inference.sparse import enable_sparse_forward

    shape = dict(
        n_layer=2,
        d_model=32,
        n_head=4,
        d_mlp=64,
        vocab_size=64,
        block_size=16,
        rms_norm=True,
        afrac=0.25,
        sink=True,
    )
    dense_model = bench_script.build(shape, density=1 / 16, seq_len=16)
    sparse_model = bench_script.build(shape, density=1 / 16, seq_len=16)
    enable_sparse_forward(sparse_model, max_density=1.0)
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))

    report = bench_script.compare_paths(dense_model, sparse_model, idx)

    assert report["parity"] == "within 1e-5"
    assert report["max_abs_logit_diff"] <= 1e-5
    assert report["max_abs_logit_diff_abstopk_off"] <= 1e-5
    assert report["abstopk_first_mismatch"] is None
    assert dense_model.config.abstopk_locations  # restored after the AbsTopK-off pass


def test_compare_paths_flags_mismatch(bench_script):
    shape = dict(
        n_layer=1, d_model=32, n_head=4, d_mlp=64, vocab_size=64, block_size=16, afrac=0.25
    )
    dense_model = bench_script.build(shape, density=1 / 4, seq_len=16)
    other_model = bench_script.build(shape, density=1 / 4, seq_len=16)
    with torch.no_grad():
        other_model.lm_head.weight.mul_(2.0)
    idx = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))

    report = bench_script.compare_paths(dense_model, other_model, idx)

    assert report["parity"] == "MISMATCH"
    assert report["max_abs_logit_diff_abstopk_off"] > 1e-5


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--densities", "x"], "'x' is not a number"),
        (["--densities", "0"], "density 0 is invalid"),
        (["--densities", "0.5,,0.1"], "has an empty item"),
        (["--batches", "0"], "0 is invalid; use 1 or more"),
        (["--threads", "5000"], "--threads 5000 is invalid"),
        (["--cases", "bundled,other"], "unknown --cases ['other']"),
        (["--min-seconds", "inf"], "inf is invalid; use a finite number"),
    ],
)
def test_bad_argument_rejected(bench_script, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench_script.parse_args(argv)
    assert message in capsys.readouterr().err


def test_arguments_parse_to_lists(bench_script):
    args = bench_script.parse_args(["--densities", "0.5, 0.25", "--batches", "2,4"])
    assert args.densities == [0.5, 0.25]
    assert args.batches == [2, 4]
    assert args.cases == ["bundled", "csp_yolo2_shape"]


def test_json_row_has_required_keys():
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"
    argv = ["--cases", "bundled", "--densities", "0.0625", "--batches", "1", "--seq-len", "8"]
    argv += ["--repeats", "1", "--min-seconds", "0", "--json"]
    result = subprocess.run(
        [sys.executable, str(script), *argv], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    for key in ("case", "density", "batch", "dense_tokens_per_s", "sparse_tokens_per_s", "ratio"):
        assert key in row, key
    assert (row["case"], row["density"], row["batch"]) == ("bundled", 0.0625, 1)
    assert row["record_overhead"] > 0
    assert row["parity"] == "within 1e-5"
