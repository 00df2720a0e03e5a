"""A sparse forward path for weight-sparse models: CSR matrix products for sparse Linear layers.

The released models keep as few as 1 in 1000 weights. A dense matmul spends almost all of its work on
zeros; `torch.sparse.mm` with a CSR weight does work proportional to nnz. `enable_sparse_forward`
swaps each `nn.Linear` whose weight density is at most `max_density` for a `SparseLinear` that shares
the same parameters (so state-dict keys and hooks are unchanged) and multiplies by a CSR copy of the
weight when no gradient is needed. Under autograd it falls back to the dense product, so training,
pruning and `save_grads` see the exact dense path. Each product takes a chunk of tokens at a time
(`tokens_per_chunk`) so that the input it reads stays in cache.

NOTE: CSR and dense products sum in different orders. Where AbsTopK sees a near-tie at its k-th
largest magnitude, that rounding can keep a different entry, and the logits then differ by far more
than 1e-5 (seen on random csp_yolo2-sized weights, not on the small models in the tests).
`benchmarks/inference.py` reports the logit difference with AbsTopK off too, and checks that the
first swapped channels tie within 1e-5.

The default `max_density` of 1/8 comes from `benchmarks/inference.py` on a 2-core x86 CPU, where CSR
products beat dense ones from roughly density 1/16 down; re-measure on other hardware. Small
matrices (under `min_weights` entries) keep dense products, which are as fast or faster there.
"""

from __future__ import annotations

import logging
import threading
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

logger = logging.getLogger(__name__)

DEFAULT_MAX_DENSITY = 1 / 8
# Weight matrices with fewer entries than this keep dense products. With 2 threads on a 2-core x86
# CPU, CSR products made the bundled model's forward pass (128 x 512 and 128 x 2048 matrices at
# densities 1/16 to 1/1024) 12-20% slower. They made csp_yolo2's (2048 x 8192 and up) 1.7-3.2x
# faster. NOTE: sizes between those two were not measured, so the cutoff is an estimate.
DEFAULT_MIN_WEIGHTS = 1 << 20

# Chunk sizes come from timing csp_yolo2-sized products (2048 x 8192, 8192 x 2080, 2048 x 2048) on
# one x86 core at densities 1/16 to 1/1024. There, 32 to 128 tokens per call ran 2 to 5 times faster
# than 2048 tokens in one call. Below 16 tokens per call, MKL's fixed cost per call dominates.
# NOTE: with 2 torch threads on 2 cores that two other processes kept busy, OpenMP's default wait
# policy made each of the many short products stall. A chunked 2048 x 8192 product took 1.3 s
# against 0.2 s as one call. With OMP_WAIT_POLICY=PASSIVE set before torch starts, it took 55 ms.
# On the idle machine PASSIVE made the csp_yolo2-shaped forward 6-17% slower, so nothing sets it.
CHUNK_BYTES = 1 << 20
MIN_CHUNK_TOKENS = 16
MAX_CHUNK_TOKENS = 128


def tokens_per_chunk(in_features: int) -> int:
    """Return how many tokens each CSR product takes, so that its input slice stays in cache.

    A CSR product adds one input row (one channel over the chunk's tokens) per nonzero weight. With
    every token at once, those rows span the whole input and each nonzero reads it from memory. The
    chunk is about `CHUNK_BYTES` of float32 input: 32 tokens at in_features 8192, 128 at 2048.
    """
    return max(MIN_CHUNK_TOKENS, min(MAX_CHUNK_TOKENS, CHUNK_BYTES // (4 * in_features)))


def to_csr_int32(weight: torch.Tensor) -> torch.Tensor:
    """Convert a dense matrix to CSR with int32 indices when they fit, else int64.

    torch's MKL product converts int64 indices to int32 on every call, which took 15-20% of a
    2048 x 8192 product at density 1/64 on one x86 core. Converting once here saves that.
    """
    csr = weight.to_sparse_csr()
    if csr.values().numel() >= torch.iinfo(torch.int32).max:
        return csr
    return torch.sparse_csr_tensor(
        csr.crow_indices().to(torch.int32),
        csr.col_indices().to(torch.int32),
        csr.values(),
        csr.shape,
        check_invariants=False,  # the indices come from to_sparse_csr, so they are valid
    )


def weight_density(weight: torch.Tensor) -> float:
    """Fraction of nonzero entries (nnz / numel)."""
    return float(torch.count_nonzero(weight)) / max(1, weight.numel())


class SparseLinear(nn.Module):
    """`nn.Linear` drop-in that multiplies by a cached CSR copy of its weight outside autograd."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self._csr: torch.Tensor | None = None
        self._csr_key: tuple | None = None
        self._lock = threading.Lock()

    def _weight_csr(self) -> torch.Tensor:
        # Rebuild when the weight was modified in place or moved to another device.
        key = (self.weight._version, self.weight.device, self.weight.data_ptr())
        with self._lock:
            if self._csr is None or self._csr_key != key:
                with warnings.catch_warnings():
                    # torch marks CSR tensors "beta"; the products used here are covered by tests.
                    warnings.filterwarnings("ignore", message="Sparse CSR tensor support")
                    self._csr = to_csr_int32(self.weight.detach())
                self._csr_key = key
            return self._csr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad):
            return F.linear(x, self.weight, self.bias)
        lead = x.shape[:-1]
        rows = x.reshape(-1, self.in_features)  # (N, in_features)
        weight = self._weight_csr()
        y = rows.new_empty(rows.size(0), self.out_features)  # (N, out_features), row-major
        chunk = tokens_per_chunk(self.in_features)
        for start in range(0, rows.size(0), chunk):
            part = rows[start : start + chunk].T  # (in_features, chunk)
            y[start : start + chunk] = torch.sparse.mm(weight, part).T
        if self.bias is not None:
            y += self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, csr=True"


def enable_sparse_forward(
    model: nn.Module,
    max_density: float = DEFAULT_MAX_DENSITY,
    min_weights: int = DEFAULT_MIN_WEIGHTS,
) -> list[str]:
    """Swap for a SparseLinear every Linear whose weight density is <= `max_density` and whose
    weight has at least `min_weights` entries; return their names.

    `min_weights=0` swaps small matrices too.
    """
    if not 0.0 <= max_density <= 1.0:
        raise ValueError(f"max_density={max_density} must be in [0, 1]")
    if min_weights < 0:
        raise ValueError(f"min_weights={min_weights} must be 0 or more")
    swapped = []
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is not nn.Linear:
                continue
            if weight_density(child.weight) > max_density:
                continue
            if child.weight.numel() < min_weights:
                continue
            setattr(parent, child_name, SparseLinear(child))
            swapped.append(f"{parent_name}.{child_name}" if parent_name else child_name)
    logger.info(
        "sparse forward: %d Linear layers use CSR products (density <= %.4g, >= %d weights)",
        len(swapped),
        max_density,
        min_weights,
    )
    return swapped


def disable_sparse_forward(model: nn.Module) -> int:
    """Turn every SparseLinear back into an nn.Linear sharing the same parameters; return the count."""
    count = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, SparseLinear):
                linear = nn.Linear(
                    child.in_features, child.out_features, bias=child.bias is not None
                )
                linear.weight = child.weight
                linear.bias = child.bias
                setattr(parent, child_name, linear)
                count += 1
    return count
