"""The shipped presets load, and each stage of sparse_stdlib can continue the stage before it."""

import json
from itertools import pairwise
from pathlib import Path

import pytest

from inference.config import config_from_dict
from training.config import PRESET_DIR, load_run_config

STORE = Path(__file__).resolve().parents[1] / "store"
SPARSE_STAGES = ["embedded_sparse", "embedded_sparse_continue", "embedded_sparse_stage3"]


@pytest.mark.parametrize("preset", sorted(p.stem for p in PRESET_DIR.glob("*.toml")))
def test_preset_loads(preset):
    run = load_run_config(preset)
    assert run.train.name


def test_sparse_stages_share_model():
    models = [load_run_config(stage).model for stage in SPARSE_STAGES]
    for stage, model in zip(SPARSE_STAGES[1:], models[1:], strict=True):
        assert model == models[0], f"{stage} [model] differs from embedded_sparse"


def test_sparse_stages_chain_densities():
    runs = [load_run_config(stage).train for stage in SPARSE_STAGES]
    for before, after in pairwise(runs):
        assert after.init_from == "store/models/sparse_stdlib"
        assert after.start_density == before.target_density
        assert after.seed != before.seed


def test_shipped_sparse_model_matches_presets():
    shipped = json.loads((STORE / "models/sparse_stdlib/beeg_config.json").read_text())
    assert config_from_dict(shipped) == load_run_config(SPARSE_STAGES[-1]).model
    assert load_run_config(SPARSE_STAGES[-1]).train.target_density == 1 / 16
