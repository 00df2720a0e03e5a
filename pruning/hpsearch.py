"""Hyperparameter search for the pruner with Optuna: the smallest circuit at the target loss.

Each trial trains node gates with hyperparameters drawn around the search centres of Gao et al.
(2025), then bisects k to the target task loss; the trial's value is that k (fewer nodes is better).
The study lives in an Optuna storage, so several processes, on one machine or many, cooperate on one
study by running the same command with the same `--storage` and `--study-name`:

- no storage: in memory, one process;
- `journal:<path>`: a journal file (file locks, one machine or a shared file system);
- any database URL Optuna accepts (`sqlite:///study.db`, `postgresql://...`): many machines.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import optuna

from pruning.config import PruneConfig
from pruning.data import make_batch
from pruning.search import search_k
from pruning.train import train_gates
from registry.tasks import Datapoint

logger = logging.getLogger(__name__)

# Log-uniform ranges, one decade either side of the paper's search centres (heaviside_temp: 0.3-3).
# k_coef spans 1e-5 to 1e-2, so the pruner's default of 1e-3 sits inside the range, not at its edge.
SEARCH_SPACE: dict[str, tuple[float, float]] = {
    "k_coef": (1e-5, 1e-2),
    "lr": (1e-3, 1e-2),
    "init_noise_bias": (1e-2, 1.0),
    "weight_decay": (1e-4, 1e-2),
    "heaviside_temp": (0.3, 3.0),
}
JOURNAL_PREFIX = "journal:"


def make_storage(storage: str | None) -> Any:
    """Turn a `--storage` value into what optuna.create_study takes (None: in memory)."""
    if not storage:
        return None
    if storage.startswith(JOURNAL_PREFIX):
        path = storage[len(JOURNAL_PREFIX) :]
        if not path:
            raise ValueError(f"storage {storage!r} names no file; use journal:/path/to/study.log")
        backend = optuna.storages.journal.JournalFileBackend(path)
        return optuna.storages.JournalStorage(backend)
    if "://" not in storage:
        raise ValueError(
            f"storage {storage!r} is not a database URL or journal:<path>; "
            "use e.g. sqlite:///study.db or journal:study.log"
        )
    return storage


def trial_config(trial: optuna.Trial, base: PruneConfig) -> PruneConfig:
    """Draw one trial's hyperparameters from SEARCH_SPACE on top of `base`."""
    values = {
        name: trial.suggest_float(name, low, high, log=True)
        for name, (low, high) in SEARCH_SPACE.items()
    }
    return dataclasses.replace(base, seed=base.seed + trial.number, **values)


def run_search(
    model,
    pairs: Sequence[Datapoint],
    means: dict,
    base: PruneConfig,
    *,
    n_trials: int,
    study_name: str,
    storage: str | None = None,
) -> optuna.Study:
    """Run `n_trials` trials in this process on the (possibly shared) study; return the study."""
    if n_trials < 1:
        raise ValueError(f"n_trials={n_trials} must be at least 1")
    search_batch = make_batch(list(pairs)[: base.n_search_pairs], model.config.block_size)

    def objective(trial: optuna.Trial) -> int:
        config = trial_config(trial, base)
        gates, _ = train_gates(model, pairs, means, config, progress=False)
        k, history = search_k(
            model, gates.scores(), means, search_batch, config.target_loss, start=gates.n_open()
        )
        trial.set_user_attr("worker_pid", os.getpid())
        # The loss at k, which is not always the last evaluation of the search.
        loss_at_k = next(loss for evaluated_k, loss in reversed(history) if evaluated_k == k)
        trial.set_user_attr("final_loss", loss_at_k)
        logger.info("trial %d: k=%d with %s", trial.number, k, trial.params)
        return k

    study = optuna.create_study(
        study_name=study_name,
        storage=make_storage(storage),
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=base.seed + os.getpid() % 1000),
    )
    _check_study_settings(study, base)
    study.optimize(objective, n_trials=n_trials)
    return study


def _check_study_settings(study: optuna.Study, base: PruneConfig) -> None:
    """Record the settings that trials do not draw on a new study, or check them on a shared one.

    Trials run with other settings give k values that cannot be compared, so a mismatch raises.
    """
    # The seed may differ between workers: it only moves the gate initialisation and batch order.
    drawn = {*SEARCH_SPACE, "seed"}
    fixed = {key: value for key, value in base.to_dict().items() if key not in drawn}
    saved = study.user_attrs.get("fixed_settings")
    if saved is None:
        study.set_user_attr("fixed_settings", fixed)
        return
    changed = sorted(key for key in fixed if saved.get(key) != fixed[key])
    if changed:
        was = {key: saved.get(key) for key in changed}
        raise ValueError(
            f"study {study.study_name!r} was started with {was}, not "
            f"{ {key: fixed[key] for key in changed} }; use the same settings or another "
            "--study-name"
        )
