"""Optuna search over pruning hyperparameters: trials, storages, and workers sharing one study."""

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from test_pruning import planted_means, planted_model, planted_task

from pruning.config import PruneConfig
from pruning.hpsearch import SEARCH_SPACE, make_storage, run_search

TESTS = Path(__file__).parent
FAST = PruneConfig(n_steps=30, batch_size=16, n_search_pairs=64)


def test_trials_return_circuit_sizes():
    model = planted_model()
    study = run_search(
        model, planted_task().xs, planted_means(model), FAST, n_trials=2, study_name="s"
    )

    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert 1 <= trial.value <= 64  # nodes of the planted model
        if trial.value < 64:
            assert trial.user_attrs["final_loss"] <= FAST.target_loss
        for name, (low, high) in SEARCH_SPACE.items():
            assert low <= trial.params[name] <= high


@pytest.mark.parametrize(
    ("value", "message"),
    [("journal:", "names no file"), ("study.db", "not a database URL")],
)
def test_bad_storage_rejected(value, message):
    with pytest.raises(ValueError, match=message):
        make_storage(value)


def test_zero_trials_rejected():
    model = planted_model()
    with pytest.raises(ValueError, match="n_trials=0"):
        run_search(model, planted_task().xs, {}, FAST, n_trials=0, study_name="s")


@pytest.mark.slow
def test_two_workers_share_one_journal_study(tmp_path):
    storage = f"journal:{tmp_path / 'study.log'}"
    worker = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from test_pruning import planted_means, planted_model, planted_task
        from pruning.config import PruneConfig
        from pruning.hpsearch import run_search
        model = planted_model()
        config = PruneConfig(n_steps=30, batch_size=16, n_search_pairs=64)
        run_search(model, planted_task().xs, planted_means(model), config,
                   n_trials=2, study_name="shared", storage={storage!r})
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", worker]) for _ in range(2)]
    codes = [process.wait(timeout=300) for process in processes]

    assert codes == [0, 0]
    study = optuna.load_study(study_name="shared", storage=make_storage(storage))
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    assert len({t.user_attrs["worker_pid"] for t in complete}) == 2


def test_shared_study_rejects_other_target_loss(tmp_path):
    model = planted_model()
    means = planted_means(model)
    storage = f"journal:{tmp_path / 'study.log'}"
    run_search(model, planted_task().xs, means, FAST, n_trials=1, study_name="s", storage=storage)

    other_seed = dataclasses.replace(FAST, seed=5)  # another worker's seed is fine
    study = run_search(
        model, planted_task().xs, means, other_seed, n_trials=1, study_name="s", storage=storage
    )
    assert len(study.trials) == 2

    other_target = dataclasses.replace(FAST, target_loss=5.0)
    with pytest.raises(ValueError, match=r"study 's' was started with \{'target_loss': 0.15\}"):
        run_search(
            model,
            planted_task().xs,
            means,
            other_target,
            n_trials=1,
            study_name="s",
            storage=storage,
        )
