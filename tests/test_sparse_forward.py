"""The CSR forward path gives the dense path's logits and stays out of autograd."""

import pytest
import torch

from inference.gpt import GPT, GPTConfig
from inference.hook_utils import hook_recorder
from inference.sparse import (
    DEFAULT_MIN_WEIGHTS,
    SparseLinear,
    disable_sparse_forward,
    enable_sparse_forward,
    tokens_per_chunk,
    weight_density,
)


def sparse_model(density=1 / 16, seed=0, **overrides):
    torch.manual_seed(seed)
    config = GPTConfig(
        block_size=32,
        vocab_size=64,
        n_layer=2,
        n_head=4,
        d_model=32,
        bias=True,
        rms_norm=True,
        tied_unembed=False,
        afrac=0.25,
        **overrides,
    )
    model = GPT(config).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                keep = torch.rand_like(module.weight) < density
                module.weight.mul_(keep)
    return model


def test_density_helper():
    assert weight_density(torch.tensor([[0.0, 1.0], [0.0, 0.0]])) == 0.25


@pytest.mark.parametrize("sink", [False, True])
def test_sparse_logits_match_dense(sink):
    model = sparse_model(sink=sink)
    idx = torch.randint(0, 64, (3, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), hook_recorder() as dense_rec:
        dense = model(idx)[0]

    swapped = enable_sparse_forward(model, min_weights=0)

    assert "lm_head" in swapped
    assert "transformer.h.1.mlp.c_fc" in swapped
    with torch.no_grad(), hook_recorder() as sparse_rec:
        sparse = model(idx)[0]
    torch.testing.assert_close(sparse, dense, atol=1e-5, rtol=0)
    for name in dense_rec:
        torch.testing.assert_close(sparse_rec[name], dense_rec[name], atol=1e-5, rtol=0, msg=name)


def test_sparse_linear_over_several_chunks():
    torch.manual_seed(0)
    linear = torch.nn.Linear(32, 24)
    with torch.no_grad():
        linear.weight.mul_(torch.rand_like(linear.weight) < 0.1)
    x = torch.randn(3, 100, 32)  # 300 tokens: two full chunks and a partial one
    chunk = tokens_per_chunk(32)
    assert 300 // chunk == 2
    assert 300 % chunk > 0

    with torch.no_grad():
        got = SparseLinear(linear)(x)
        want = linear(x)

    assert got.shape == (3, 100, 24)
    assert got.is_contiguous()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_chunk_size_bounds():
    assert tokens_per_chunk(8192) == 32
    assert tokens_per_chunk(2048) == 128
    assert tokens_per_chunk(16) == 128
    assert tokens_per_chunk(1 << 20) == 16


def test_state_dict_keys_unchanged():
    model = sparse_model()
    keys = list(model.state_dict())
    enable_sparse_forward(model, min_weights=0)
    assert list(model.state_dict()) == keys


def test_dense_layers_left_alone():
    model = sparse_model(density=1.0)
    assert enable_sparse_forward(model, max_density=0.5, min_weights=0) == []


def test_small_matrices_keep_dense_products():
    # CSR products were slower than dense ones on small matrices, so by default they stay dense.
    model = sparse_model()
    assert max(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)) < (
        DEFAULT_MIN_WEIGHTS
    )
    assert enable_sparse_forward(model) == []
    assert enable_sparse_forward(model, min_weights=0) != []


def test_min_weights_rejects_negative():
    with pytest.raises(ValueError, match="min_weights=-1 must be 0 or more"):
        enable_sparse_forward(sparse_model(), min_weights=-1)


def test_autograd_uses_dense_path():
    model = sparse_model()
    enable_sparse_forward(model, min_weights=0)
    model.requires_grad_(True)
    idx = torch.randint(0, 64, (2, 16))
    _, loss, _ = model(idx, targets=idx)
    loss.backward()
    assert model.transformer.h[0].attn.c_attn.weight.grad is not None


def test_weight_edit_invalidates_csr():
    model = sparse_model()
    enable_sparse_forward(model, min_weights=0)
    idx = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        before = model(idx)[0]
        model.lm_head.weight.mul_(2.0)
        after = model(idx)[0]
    assert not torch.allclose(before, after)


def test_disable_restores_linear():
    model = sparse_model()
    n = len(enable_sparse_forward(model, min_weights=0))
    assert disable_sparse_forward(model) == n
    assert not any(isinstance(m, SparseLinear) for m in model.modules())
