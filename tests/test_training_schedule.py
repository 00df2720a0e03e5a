"""Tests of the density and learning-rate schedules."""

import math

import pytest

from training.config import TrainConfig
from training.schedule import density_at, lr_at, lr_factor_at


def test_density_anneals_linearly_then_holds():
    total, target = 100, 0.1
    assert density_at(0, total, target, anneal_frac=0.5) == pytest.approx(1 - 0.9 / 50)
    assert density_at(24, total, target, anneal_frac=0.5) == pytest.approx(0.55)
    assert density_at(49, total, target, anneal_frac=0.5) == pytest.approx(target)
    assert density_at(99, total, target, anneal_frac=0.5) == pytest.approx(target)


def test_density_continues_from_start_density():
    total, start, target = 100, 1 / 8, 1 / 16
    assert density_at(0, total, target, 0.5, start_density=start) == pytest.approx(
        start - (start - target) / 50
    )
    assert density_at(49, total, target, 0.5, start_density=start) == pytest.approx(target)
    assert density_at(99, total, target, 0.5, start_density=start) == pytest.approx(target)


def test_density_rejects_start_below_target():
    with pytest.raises(ValueError, match="start_density"):
        density_at(0, 100, 0.25, anneal_frac=0.5, start_density=0.125)


def test_density_without_anneal_is_target():
    assert density_at(0, 100, 0.2, anneal_frac=0.0) == 0.2


def test_lr_factor_warms_up_then_decays_to_zero():
    total = 200  # warmup 1% = 2 steps
    assert lr_factor_at(0, total, warmup_frac=0.01) == pytest.approx(0.5)
    assert lr_factor_at(1, total, warmup_frac=0.01) == pytest.approx(1.0)
    assert lr_factor_at(2, total, warmup_frac=0.01) == pytest.approx(1.0)
    assert lr_factor_at(101, total, warmup_frac=0.01) == pytest.approx(0.5)
    assert lr_factor_at(200, total, warmup_frac=0.01) == pytest.approx(0.0)


def test_lr_scales_with_inverse_sqrt_density():
    dense = lr_at(50, 100, base_lr=1e-3, warmup_frac=0.01, density=1.0)
    sparse = lr_at(50, 100, base_lr=1e-3, warmup_frac=0.01, density=1 / 16)
    assert sparse == pytest.approx(4 * dense)
    assert math.isfinite(sparse)


def test_density_rejects_zero_target():
    with pytest.raises(ValueError, match="target_density"):
        density_at(0, 100, 0.0, anneal_frac=0.5)


def test_train_config_rejects_bad_start_density():
    with pytest.raises(ValueError, match="start_density.*0.125"):
        TrainConfig(target_density=0.125, start_density=0.0625)
    with pytest.raises(ValueError, match="start_density"):
        TrainConfig(target_density=0.125, start_density=1.5)
