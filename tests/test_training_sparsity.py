"""Tests of the top-k magnitude projection that keeps weights sparse during training."""

import pytest
import torch

from inference.gpt import GPT
from training.config import load_run_config
from training.sparsity import (
    project_to_density,
    scheduled_nnz,
    sparse_parameters,
    topk_mask,
)


def test_topk_mask_keeps_largest_magnitudes():
    weight = torch.tensor([[0.1, -5.0, 0.2, 3.0], [0.3, 0.0, -0.4, 0.05]])
    mask = topk_mask(weight, k=3, min_per_row=0)
    expected = torch.tensor([[False, True, False, True], [False, False, True, False]])
    assert torch.equal(mask, expected)


def test_topk_mask_row_minimum_beats_global_rank():
    weight = torch.tensor([[9.0, 8.0, 7.0, 6.0], [0.1, 0.2, 0.01, 0.02]])
    mask = topk_mask(weight, k=4, min_per_row=2)
    # Row 1 keeps its two largest although every row-0 entry is larger.
    assert mask[1].tolist() == [True, True, False, False]
    assert mask[0].tolist() == [True, True, False, False]
    assert int(mask.sum()) == 4


def test_scheduled_nnz_rounds_and_respects_row_minimum():
    assert scheduled_nnz(numel=1000, n_rows=10, density=0.25, min_per_row=4) == 250
    assert scheduled_nnz(numel=1000, n_rows=10, density=0.001, min_per_row=4) == 40
    assert scheduled_nnz(numel=12, n_rows=3, density=0.1, min_per_row=8) == 12


@pytest.mark.parametrize("density", [0.0, -0.5, 1.5])
def test_scheduled_nnz_rejects_invalid_density(density):
    with pytest.raises(ValueError, match="density must be in"):
        scheduled_nnz(numel=100, n_rows=10, density=density, min_per_row=4)


def test_sparse_parameters_exempt_norms_bigram_sink():
    run = load_run_config("tiny")
    names = set(sparse_parameters(GPT(run.model)))
    assert "transformer.wte.weight" in names
    assert "lm_head.weight" in names
    assert "transformer.h.0.attn.c_attn.bias" in names
    assert not any("ln_" in name for name in names)
    assert "bigram_table" not in names
    assert not any("sink_logit" in name for name in names)


def test_projection_gives_scheduled_nnz_per_tensor():
    torch.manual_seed(0)
    run = load_run_config("tiny")
    params = sparse_parameters(GPT(run.model))
    with torch.no_grad():
        for param in params.values():
            param.normal_()  # biases start at zero, which would hide the count
    kept = project_to_density(params, density=0.05, min_per_row=4)
    for name, param in params.items():
        assert int(torch.count_nonzero(param)) == kept[name], name
        if param.dim() == 2:
            per_row = torch.count_nonzero(param, dim=1)
            assert int(per_row.min()) >= min(4, param.shape[1]), name
