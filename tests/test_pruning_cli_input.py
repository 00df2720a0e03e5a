"""Bad input to `python -m pruning`: one-line errors before the model load, no silent overwrite."""

from pathlib import Path

import pytest

import pruning.run
from pruning.__main__ import main

MODEL_DIR = Path(__file__).resolve().parents[1] / "store" / "models" / "sparse_stdlib"


def _sweep(tmp_path, *extra):
    return main(["sweep", "--model-dir", str(MODEL_DIR), "--store", str(tmp_path / "out"), *extra])


@pytest.fixture
def no_model_load(monkeypatch):
    """Make the model load fail loudly, so a test proves its error comes before it."""

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the input was checked")

    monkeypatch.setattr(pruning.run, "load_model_for_pruning", fail)


@pytest.mark.parametrize("option", ["--target-loss", "--k-coef", "--lr"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_option_rejected(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exit_info:
        _sweep(tmp_path, "--task", "single_double_quote", option, value)
    assert exit_info.value.code == 2
    assert f"{value} is invalid; use a finite number" in capsys.readouterr().err


def test_unknown_task_before_model_load(tmp_path, no_model_load):
    with pytest.raises(SystemExit) as exit_info:
        _sweep(tmp_path, "--task", "no_such_task")
    message = str(exit_info.value)
    assert message.startswith("error: unknown tasks ['no_such_task']; available:")
    assert "single_double_quote" in message


def test_k_above_node_count_before_model_load(tmp_path, no_model_load):
    with pytest.raises(SystemExit, match=r"error: k values \[99999999\] are above 5632"):
        _sweep(tmp_path, "--task", "single_double_quote", "--ks", "99999999")


def test_existing_sweep_kept_without_overwrite(tmp_path, no_model_load):
    old = tmp_path / "out/viz/sparse_stdlib/single_double_quote/prune_v4/16/viz_data.pt"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"earlier run")

    with pytest.raises(SystemExit, match="already exists; pass --overwrite to replace it,"):
        _sweep(tmp_path, "--task", "single_double_quote")
    assert old.read_bytes() == b"earlier run"

    with pytest.raises(AssertionError, match="the model was loaded"):
        _sweep(tmp_path, "--task", "single_double_quote", "--overwrite")
    assert not old.parent.parent.exists()  # cleared, so no stale k folder mixes with the new run


def test_store_that_is_a_file(tmp_path, no_model_load):
    (tmp_path / "out").write_text("")
    with pytest.raises(
        SystemExit,
        match="out is a file, so .* cannot be an output folder; pass a store folder with --store",
    ):
        _sweep(tmp_path, "--task", "single_double_quote")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "EOFError"),
        (b"PK\x03\x04 cut short", "RuntimeError"),
        (b"# a README renamed to .pt\n", "UnpicklingError"),
    ],
)
def test_verify_damaged_file_is_one_line(tmp_path, content, message):
    damaged = tmp_path / "viz_data.pt"
    damaged.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(damaged), "--model-dir", str(MODEL_DIR)])
    text = str(exit_info.value)
    assert text.startswith(f"error: cannot load {damaged} ({message}")
    assert text.endswith("or run the sweep again")


@pytest.mark.parametrize(
    "option",
    [
        ["--store", "/tmp/unused"],
        ["--lr", "0.01"],
        ["--k-coef", "0.1"],
        ["--overwrite"],
        ["--baseline"],
        ["--example-windows", "4"],
    ],
)
def test_search_rejects_options_it_ignores(capsys, no_model_load, option):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", "--model-dir", str(MODEL_DIR), "--task", "single_double_quote", *option])
    assert exit_info.value.code == 2
    assert f"unrecognized arguments: {' '.join(option)}" in capsys.readouterr().err


def test_search_help_lists_only_its_options(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    text = capsys.readouterr().out
    for option in ("--store", "--lr", "--k-coef", "--overwrite", "--baseline", "--example-windows"):
        assert option not in text, option
    assert "--n-trials" in text
