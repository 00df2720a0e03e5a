"""The pruning benchmark script, run on the tiny store: every row has the three measurements."""

from __future__ import annotations

import json

import pytest
import torch
from benchmark_script import load_benchmark
from tiny_store import MODEL, build_tiny_store

import pruning.means
from inference.circuit import num_total_nodes
from inference.gpt import load_model
from registry import corpus

TASK = "single_double_quote"


@pytest.fixture(scope="module")
def bench_script():
    return load_benchmark("pruning")


@pytest.fixture
def tiny_store(tmp_path, monkeypatch):
    """Return a tiny store whose pruning runs use random windows instead of the corpus."""

    def random_windows(encoding, n_windows, window_len):
        generator = torch.Generator().manual_seed(0)
        return torch.randint(0, 2047, (n_windows, window_len), generator=generator)

    monkeypatch.setenv("CIRCUIT_SPARSITY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pruning.means, "validation_windows", random_windows)
    monkeypatch.setattr(corpus, "source_fingerprint", lambda: "random windows")
    return build_tiny_store(tmp_path / "store")


def run(bench_script, store, capsys, *options) -> list[dict]:
    arguments = ["--store", str(store), "--sparse-model", MODEL, "--dense-model", MODEL]
    assert bench_script.main([*arguments, "--tasks", TASK, "--quick", "--json", *options]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_benchmark_rows_on_tiny_store(bench_script, tiny_store, capsys):
    rows = run(bench_script, tiny_store, capsys, "--min-accuracy", "0")
    assert [row.get("task") for row in rows] == [TASK, None]
    row, summary = rows[0], rows[1]["summary"]

    n_total = num_total_nodes(load_model(str(tiny_store / "models" / MODEL)).config)
    for method in ("learned", "attribution", "dense"):
        circuit = row[method]
        assert 0 <= circuit["nodes"] <= n_total, method
        assert circuit["edges"] >= 0, method
        assert circuit["bisection_s"] > 0, method
    learned = row["learned"]
    assert learned["k_search_s"] == pytest.approx(
        learned["mask_training_s"] + learned["bisection_s"]
    )
    assert row["node_ratio"] == pytest.approx(
        learned["nodes"] / max(1, row["attribution"]["nodes"])
    )
    # The same model on both sides: the dense circuit is the sparse one.
    assert row["dense"]["edges"] == learned["edges"]
    assert summary["tasks_pruned"] == 1
    assert summary["tasks_skipped"] == 0


def test_benchmark_skips_unsolved_task(bench_script, tiny_store, capsys):
    rows = run(bench_script, tiny_store, capsys, "--min-accuracy", "1")
    row = rows[0]
    assert row["skipped"].startswith(f"{MODEL} gets ")
    assert row["skipped"].endswith("of test pairs right (< 100%)")
    assert "learned" not in row
    assert rows[1]["summary"]["tasks_skipped"] == 1


def test_benchmark_rejects_missing_model(bench_script, tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_script.main(["--store", str(tmp_path), "--sparse-model", "absent"])
    assert "model folder" in capsys.readouterr().err


def test_benchmark_rejects_unknown_task(bench_script, tiny_store, capsys):
    with pytest.raises(SystemExit):
        bench_script.main(
            ["--store", str(tiny_store), "--sparse-model", MODEL, "--no-dense", "--tasks", "nope"]
        )
    assert "unknown --tasks ['nope']" in capsys.readouterr().err


def test_benchmark_skips_task_longer_than_context(bench_script, tiny_store, capsys):
    # The tiny model's block_size is 64; else_elif's longest prompt is over 70 tokens.
    arguments = ["--store", str(tiny_store), "--sparse-model", MODEL, "--no-dense"]
    assert (
        bench_script.main([*arguments, "--tasks", "else_elif", "--quick", "--min-accuracy", "0"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("else_elif"))
    assert "skipped: its longest prompt has" in row
    assert "over tiny_sparse's block_size 64" in row.replace(MODEL, "tiny_sparse")
    assert any("--quick" in line and "not representative" in line for line in lines)
