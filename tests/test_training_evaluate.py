"""Tests of the task-accuracy evaluation of full models."""

import pytest
import torch

from inference.gpt import GPT
from registry.tasks import Datapoint, Task
from training.config import load_run_config
from training.evaluate import last_token_logits, task_accuracy


@pytest.fixture
def model():
    torch.manual_seed(0)
    run = load_run_config("tiny", ["model.block_size=64"])
    return GPT(run.model).eval()


def test_padded_batch_matches_single_sequences(model):
    sequences = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    batched = last_token_logits(model, sequences)
    for row, seq in enumerate(sequences):
        with torch.no_grad():
            single, _, _ = model(torch.tensor([seq]))
        torch.testing.assert_close(batched[row], single[0, -1])


def test_constant_preference_gets_half_the_sequences(model):
    # Only final_logits_bias decides: token 1 always beats token 2.
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.bigram_table.zero_()
        model.final_logits_bias[1] = 5.0
    pairs = [Datapoint([3, 4, i], [3, 5, i], target_tokid=1, target_alt_tokid=2) for i in range(6)]
    result = task_accuracy(model, Task(name="toy", xs=[], xs_test=pairs))
    assert result.n_pairs == 6
    assert result.sequences_correct == 6
    assert result.pairs_correct == 0


def test_too_long_sequences_raise(model):
    with pytest.raises(ValueError, match="exceed block_size 64"):
        last_token_logits(model, [[1] * 65])


def test_eval_tasks_cli_rejects_unknown_task():
    from pathlib import Path

    from training.__main__ import main

    model_dir = Path(__file__).resolve().parents[1] / "store" / "models" / "sparse_stdlib"
    with pytest.raises(SystemExit) as exit_info:
        main(["eval-tasks", str(model_dir), "--task", "quotes"])
    message = str(exit_info.value)
    assert message.startswith("error: unknown task 'quotes'")
    assert "single_double_quote" in message
