"""Token data for pretraining: the corpus encoded once, then random windows of block_size + 1.

The encoded splits are cached as ``.npy`` files keyed by the tokenizer, the split settings and
``corpus.source_fingerprint`` (path, size and modification time of every candidate file). A second
run, or a resumed one, then skips both the encoding and the parsing of every corpus file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tiktoken
import torch

from registry import corpus
from training.distributed import SINGLE_PROCESS, DistributedContext

logger = logging.getLogger(__name__)


def _cache_key(
    encoding: tiktoken.Encoding,
    split: str,
    extra_dirs: Sequence[str],
    include_stdlib: bool,
    validation_fraction: float,
) -> str:
    digest = hashlib.sha256(encoding.name.encode())
    for token_bytes in encoding.token_byte_values():
        digest.update(token_bytes)
    digest.update(f"{split}\0{include_stdlib}\0{validation_fraction!r}\0".encode())
    digest.update(corpus.source_fingerprint(extra_dirs, include_stdlib).encode())
    return digest.hexdigest()[:16]


def load_split_tokens(
    encoding: tiktoken.Encoding,
    split: str,
    extra_dirs: Sequence[str],
    cache_dir: Path,
    include_stdlib: bool = True,
    validation_fraction: float = corpus.VALIDATION_FRACTION,
) -> np.ndarray:
    """Return the uint16 tokens of one corpus split, encoding and caching them on first use."""
    key = _cache_key(encoding, split, extra_dirs, include_stdlib, validation_fraction)
    cache_path = cache_dir / f"{split}-{key}.npy"
    if cache_path.is_file():
        return np.load(cache_path)

    started = time.perf_counter()
    files = corpus.list_files(split, extra_dirs, validation_fraction, include_stdlib)
    tokens = corpus.token_array(encoding, files)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # A name of its own per process, because under torchrun several processes may encode at once.
    partial = cache_dir / f"{cache_path.stem}.{socket.gethostname()}-{os.getpid()}.tmp.npy"
    np.save(partial, tokens)
    partial.replace(cache_path)
    logger.info(
        "encoded %s split: %d files, %d tokens in %.1f s",
        split,
        len(files),
        len(tokens),
        time.perf_counter() - started,
    )
    return tokens


def sample_batch(
    tokens: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator,
    context: DistributedContext = SINGLE_PROCESS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch_size`` random windows; return inputs and next-token targets, (batch, pos).

    Every rank draws the whole global batch, so the generator advances alike on all of them, and
    returns its own slice of ``batch_size / world_size`` windows.
    """
    if len(tokens) <= block_size + 1:
        raise ValueError(f"{len(tokens)} tokens are too few for windows of block_size {block_size}")
    starts = torch.randint(0, len(tokens) - block_size - 1, (batch_size,), generator=generator)
    starts = context.shard(starts)
    offsets = torch.arange(block_size + 1)
    windows = tokens[starts.unsqueeze(1) + offsets].long()  # (batch, block_size + 1)
    return windows[:, :-1], windows[:, 1:]


def fixed_eval_batches(
    tokens: torch.Tensor, n_batches: int, batch_size: int, block_size: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Return the same validation batches for every evaluation of a run."""
    generator = torch.Generator().manual_seed(seed + 1_000_003)
    return [sample_batch(tokens, batch_size, block_size, generator) for _ in range(n_batches)]
