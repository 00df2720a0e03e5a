"""Mean activations over the pretraining distribution, cached on disk per model file.

Pruned nodes are replaced by their mean activation over token windows of the
validation split of the standard-library corpus (`registry.corpus`), averaged
over every position (one mean per channel). Computing them takes one forward
pass over those windows, so the result is cached under the download cache
folder, keyed by the SHA-256 of the model files and of the window tokens.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from inference.circuit import mean_activations

logger = logging.getLogger(__name__)

MEANS_CACHE_SUBDIR = "ablation_means"
MEANS_BATCH_SIZE = 32


def validation_windows(encoding, n_windows: int, window_len: int) -> torch.Tensor:
    """Return (n_windows, window_len) token windows spread evenly over the validation split."""
    from registry import corpus

    files = corpus.list_files("validation")
    tokens = corpus.token_array(encoding, files)
    if len(tokens) < window_len + 1:
        raise ValueError(
            f"the validation corpus has {len(tokens)} tokens, fewer than one window of "
            f"{window_len}; check registry.corpus finds the standard library"
        )
    starts = np.linspace(0, len(tokens) - window_len, n_windows).astype(np.int64)
    windows = np.stack([tokens[start : start + window_len] for start in starts])
    logger.info(
        "validation windows: %d x %d tokens from %d files (%d tokens)",
        n_windows,
        window_len,
        len(files),
        len(tokens),
    )
    return torch.from_numpy(windows.astype(np.int64))


def model_file_identity(model_dir: str | os.PathLike) -> str:
    """Return the SHA-256 of a model folder's config and weights files."""
    digest = hashlib.sha256()
    for name in ("beeg_config.json", "final_model.pt"):
        path = Path(model_dir) / name
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _cache_path(identity: str, windows: torch.Tensor, cache_root: Path | None) -> Path:
    if cache_root is None:
        from registry.cache import cache_dir

        cache_root = cache_dir()
    window_digest = hashlib.sha256(windows.numpy().tobytes()).hexdigest()[:16]
    return Path(cache_root) / MEANS_CACHE_SUBDIR / f"{identity[:32]}-{window_digest}.pt"


def compute_means(model: torch.nn.Module, windows: torch.Tensor) -> dict[str, torch.Tensor]:
    batches = (windows[i : i + MEANS_BATCH_SIZE] for i in range(0, len(windows), MEANS_BATCH_SIZE))
    return mean_activations(model, batches)


def cached_means(
    model: torch.nn.Module,
    windows: torch.Tensor,
    *,
    identity: str | None,
    cache_root: Path | None = None,
) -> dict[str, torch.Tensor]:
    """Return the mean activation of every node, from the disk cache when present.

    With `identity=None` (a model that is not a file, as in tests) nothing is cached.
    """
    if identity is None:
        return compute_means(model, windows)

    path = _cache_path(identity, windows, cache_root)
    if path.is_file():
        logger.info("ablation means: read from cache %s", path)
        return torch.load(path, map_location="cpu", weights_only=True)

    means = compute_means(model, windows)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(means, temporary)
    os.replace(temporary, path)
    logger.info("ablation means: computed and cached at %s", path)
    return means
