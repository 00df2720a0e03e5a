"""End-to-end tests of the trainer on the tiny preset and a small corpus of this repo's code."""

import json
import signal
import time
from pathlib import Path

import pytest
import torch
from training_corpus import extra_dirs_value

from inference.gpt import load_model
from registry.store import Store
from registry.tokenizer import get_encoding
from training import trainer
from training.__main__ import main
from training.config import load_run_config
from training.schedule import density_at
from training.sparsity import scheduled_nnz, sparse_parameters

# Each test trains the tiny preset end to end (several seconds on 2 CPU cores).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def tiny_run(tmp_path: Path, *overrides: str):
    corpus_dirs = extra_dirs_value()
    return load_run_config(
        "tiny",
        [
            f'train.out_dir="{tmp_path / "store"}"',
            f'train.checkpoint_dir="{tmp_path / "checkpoints"}"',
            "train.include_stdlib=false",
            f"train.extra_dirs={corpus_dirs}",
            "train.validation_fraction=0.3",
            *overrides,
        ],
    )


@pytest.fixture(scope="module")
def encoding():
    return get_encoding("stdlib_2k")


def test_every_step_has_scheduled_nnz(tmp_path, encoding):
    run = tiny_run(tmp_path)
    train_tokens, _ = trainer.load_tokens(run, encoding)
    state = trainer.init_state(run)
    sparse = sparse_parameters(state.model)
    for step in range(run.train.max_steps):
        trainer.train_step(state, run, train_tokens, sparse)
        density = density_at(step, run.train.max_steps, run.train.target_density, 0.5)
        for name, param in sparse.items():
            n_rows = param.shape[0] if param.dim() == 2 else 1
            row_minimum = 4 if param.dim() == 2 else 0
            expected = scheduled_nnz(param.numel(), n_rows, density, row_minimum)
            assert int(torch.count_nonzero(param)) == expected, (step, name)
            if param.dim() == 2:
                assert int(torch.count_nonzero(param, dim=1).min()) >= 4, (step, name)


def test_tiny_run_writes_loadable_store(tmp_path, encoding):
    run = tiny_run(tmp_path)
    folder = trainer.train(run, encoding)

    model = load_model(str(folder))
    config = json.loads((folder / "beeg_config.json").read_text())
    assert config["tokenizer_name"] == "stdlib_2k"
    assert config["n_layer"] == run.model.n_layer
    c_fc = model.transformer.h[0].mlp.c_fc.weight
    assert int(torch.count_nonzero(c_fc)) == round(0.25 * c_fc.numel())

    lines = (tmp_path / "store/train_curves/tiny/progress.json").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [10, 20]
    for key in ("tokens", "lr", "density", "train_xent", "test_xent", "L0", "L0_non_embed"):
        assert key in records[-1], key
    assert "num_alive_neurons/c_fc/layer_1" in records[-1]
    assert records[-1]["tokens"] == 20 * 4 * 32


def test_resume_matches_uninterrupted_run(tmp_path, encoding):
    whole = trainer.train(tiny_run(tmp_path / "whole"), encoding)

    # Stop a second run after 10 of its 20 steps, checkpoint it, then resume to the end.
    first_half = tiny_run(tmp_path / "half")
    state = trainer.init_state(first_half)
    train_tokens, _ = trainer.load_tokens(first_half, encoding)
    sparse = sparse_parameters(state.model)
    for _ in range(10):
        trainer.train_step(state, first_half, train_tokens, sparse)
    trainer.save_state(state, first_half, Path(first_half.train.checkpoint_dir) / "tiny")
    resumed = trainer.train(first_half, encoding, resume=True)

    expected = torch.load(whole / "final_model.pt", weights_only=True)
    actual = torch.load(resumed / "final_model.pt", weights_only=True)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, msg=key)


def test_used_up_time_budget_ends_run(tmp_path, encoding):
    run = tiny_run(tmp_path, "train.time_budget_s=1e-9")
    trainer.train(run, encoding)

    lines = (tmp_path / "store/train_curves/tiny/progress.json").read_text().splitlines()
    record = json.loads(lines[-1])
    assert len(lines) == 1
    assert record["step"] == 1
    assert (tmp_path / "store/models/tiny/final_model.pt").is_file()


def test_init_from_copies_finished_weights(tmp_path, encoding):
    folder = trainer.train(tiny_run(tmp_path / "first"), encoding)
    run = tiny_run(tmp_path / "second", f'train.init_from="{folder}"', "train.anneal_frac=0.0")
    state = trainer.init_state(run)

    expected = torch.load(folder / "final_model.pt", weights_only=True)
    for key, value in state.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)


def test_init_from_rejects_other_config(tmp_path, encoding):
    folder = trainer.train(tiny_run(tmp_path / "first"), encoding)
    run = tiny_run(tmp_path / "second", f'train.init_from="{folder}"', "model.d_mlp=128")
    with pytest.raises(ValueError, match=r"differs from \[model\] in \['d_mlp'\]"):
        trainer.init_state(run)


def test_new_run_keeps_existing_run(tmp_path, encoding):
    run = tiny_run(tmp_path)
    trainer.train(run, encoding)
    weights = (tmp_path / "store/models/tiny/final_model.pt").read_bytes()

    with pytest.raises(FileExistsError, match="pass --resume to continue it, --overwrite"):
        trainer.train(tiny_run(tmp_path, "train.seed=5"), encoding)
    assert (tmp_path / "store/models/tiny/final_model.pt").read_bytes() == weights

    trainer.train(tiny_run(tmp_path, "train.seed=5"), encoding, overwrite=True)
    assert (tmp_path / "store/models/tiny/final_model.pt").read_bytes() != weights


def test_overwrite_deletes_old_checkpoint_first(tmp_path, encoding, monkeypatch):
    trainer.train(tiny_run(tmp_path), encoding)

    def fail(*args):
        raise RuntimeError("stopped before the first step")

    monkeypatch.setattr(trainer, "train_step", fail)
    with pytest.raises(RuntimeError):
        trainer.train(tiny_run(tmp_path), encoding, overwrite=True)
    assert not (tmp_path / "checkpoints/tiny/ckpt.pt").exists()
    assert not (tmp_path / "store/models/tiny/final_model.pt").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        trainer.train(tiny_run(tmp_path), encoding, resume=True)


def test_resume_rejects_other_seed(tmp_path, encoding):
    trainer.train(tiny_run(tmp_path, "train.max_steps=10"), encoding)
    with pytest.raises(ValueError, match=r"train settings \['seed'\] differ"):
        trainer.train(
            tiny_run(tmp_path, "train.max_steps=10", "train.seed=7"), encoding, resume=True
        )


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_stop_signal_writes_checkpoint_then_resumes(tmp_path, encoding, monkeypatch, stop_signal):
    run = tiny_run(tmp_path)
    step = trainer.train_step
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def step_then_interrupt(state, *args):
        result = step(state, *args)
        if state.step == 7:
            signal.raise_signal(stop_signal)
        return result

    monkeypatch.setattr(trainer, "train_step", step_then_interrupt)
    with pytest.raises(trainer.TrainingInterrupted, match="interrupted at step 7"):
        trainer.train(run, encoding)
    assert torch.load(tmp_path / "checkpoints/tiny/ckpt.pt", weights_only=True)["step"] == 7
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers

    monkeypatch.setattr(trainer, "train_step", step)
    resumed = trainer.train(run, encoding, resume=True)
    whole = trainer.train(tiny_run(tmp_path / "whole"), encoding)
    expected = torch.load(whole / "final_model.pt", weights_only=True)
    actual = torch.load(resumed / "final_model.pt", weights_only=True)
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, msg=key)

    # The step-10 record averages the losses of steps 1-10, from both sides of the interrupt.
    def curve(store: Path) -> list[tuple]:
        lines = (store / "train_curves/tiny/progress.json").read_text().splitlines()
        return [(r["step"], r["train_xent"], r["test_xent"]) for r in map(json.loads, lines)]

    assert curve(tmp_path / "store") == curve(tmp_path / "whole/store")


def test_cli_run_writes_complete_store(tmp_path):
    corpus_dirs = extra_dirs_value()
    main(
        [
            "train",
            "tiny",
            "--set",
            f'train.out_dir="{tmp_path / "store"}"',
            "--set",
            f'train.checkpoint_dir="{tmp_path / "checkpoints"}"',
            "--set",
            "train.include_stdlib=false",
            "--set",
            f"train.extra_dirs={corpus_dirs}",
            "--set",
            "train.validation_fraction=0.3",
            "--set",
            "train.max_steps=2",
        ]
    )

    store = Store(str(tmp_path / "store"))
    assert get_encoding("stdlib_2k", store).n_vocab == 2048
    assert (tmp_path / "store/models/tiny/final_model.pt").is_file()


def test_empty_validation_split_names_split(tmp_path, encoding):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "app.py").write_text((REPO / "app.py").read_text())
    run = tiny_run(tmp_path, f'train.extra_dirs=["{corpus}"]')
    with pytest.raises(ValueError, match="the validation split has 0 tokens"):
        trainer.load_tokens(run, encoding)


def test_repeated_signal_within_grace_is_one_stop(tmp_path, encoding, monkeypatch):
    # A launcher that passes the terminal's Ctrl-C on delivers it twice within milliseconds.
    step = trainer.train_step

    def step_then_two_signals(state, *args):
        result = step(state, *args)
        if state.step == 3:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(trainer, "train_step", step_then_two_signals)
    with pytest.raises(trainer.TrainingInterrupted, match="interrupted at step 3"):
        trainer.train(tiny_run(tmp_path), encoding)
    assert torch.load(tmp_path / "checkpoints/tiny/ckpt.pt", weights_only=True)["step"] == 3


def test_second_ctrl_c_after_grace_aborts(tmp_path, encoding, monkeypatch):
    step = trainer.train_step
    monkeypatch.setattr(trainer, "REPEAT_GRACE_S", 0.05)

    def step_then_two_signals(state, *args):
        result = step(state, *args)
        if state.step == 3:
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.1)
            signal.raise_signal(signal.SIGINT)  # raises KeyboardInterrupt here, mid-step
        return result

    monkeypatch.setattr(trainer, "train_step", step_then_two_signals)
    with pytest.raises(KeyboardInterrupt) as excinfo:
        trainer.train(tiny_run(tmp_path), encoding)
    assert not isinstance(excinfo.value, trainer.TrainingInterrupted)
    assert not (tmp_path / "checkpoints/tiny/ckpt.pt").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
