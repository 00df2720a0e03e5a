"""Mean activations over the pretraining distribution, cached on disk per model file.

Pruned nodes are replaced by their mean activation over token windows of the
validation split of the standard-library corpus (`registry.corpus`), averaged
over every position (one mean per channel). Computing them takes one forward
pass over those windows, so the result is cached under the download cache
folder, keyed by the SHA-256 of the model files and of the window tokens.

The windows are cached too, because listing the corpus parses every standard
library file. Their key is the corpus fingerprint (paths, sizes and modification
times), the tokenizer's tokens and the window count and length.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from inference.circuit import mean_activations

logger = logging.getLogger(__name__)

MEANS_CACHE_SUBDIR = "ablation_means"
WINDOWS_CACHE_SUBDIR = "validation_windows"
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


def encoding_identity(encoding) -> str:
    """Return a SHA-256 of a tiktoken encoding's name and the bytes of every token id."""
    digest = hashlib.sha256(encoding.name.encode())
    for token_id in range(encoding.n_vocab):
        try:
            token = encoding.decode_single_token_bytes(token_id)
        except KeyError:  # an id that the encoding leaves unassigned
            token = b""
        digest.update(len(token).to_bytes(4, "little") + token)
    return digest.hexdigest()


def _read_cache(path: Path, cache_name: str):
    """Return the contents of a cache file, or None when it is missing or damaged.

    A damaged file (cut short by a kill, say) is deleted with a warning, so the caller recomputes
    and rewrites it instead of failing on every later run.
    """
    if not path.is_file():
        return None
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as err:
        logger.warning("%s: cache file %s is damaged (%s); deleting it", cache_name, path, err)
        path.unlink(missing_ok=True)
        return None
    logger.info("%s: read from cache %s", cache_name, path)
    return contents


def cached_validation_windows(
    encoding, n_windows: int, window_len: int, *, cache_root: Path | None = None
) -> torch.Tensor:
    """Return `validation_windows(...)`, from the disk cache while the corpus files are unchanged."""
    from registry import corpus

    key = json.dumps(
        [
            corpus.source_fingerprint(),
            corpus.VALIDATION_FRACTION,
            encoding_identity(encoding),
            n_windows,
            window_len,
        ]
    )
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    path = _cache_root(cache_root) / WINDOWS_CACHE_SUBDIR / f"{name}.pt"
    cached = _read_cache(path, "validation windows")
    if cached is not None:
        return cached

    windows = validation_windows(encoding, n_windows, window_len)
    _save_atomic(windows, path)
    logger.info("validation windows: cached at %s", path)
    return windows


def model_file_identity(model_dir: str | os.PathLike) -> str:
    """Return the SHA-256 of a model folder's config and weights files."""
    digest = hashlib.sha256()
    for name in ("beeg_config.json", "final_model.pt"):
        path = Path(model_dir) / name
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _cache_root(cache_root: Path | None) -> Path:
    if cache_root is None:
        from registry.cache import cache_dir

        cache_root = cache_dir()
    return Path(cache_root)


def _save_atomic(value, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(value, temporary)
    os.replace(temporary, path)


def _cache_path(identity: str, windows: torch.Tensor, cache_root: Path | None) -> Path:
    window_digest = hashlib.sha256(windows.numpy().tobytes()).hexdigest()[:16]
    return _cache_root(cache_root) / MEANS_CACHE_SUBDIR / f"{identity[:32]}-{window_digest}.pt"


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
    cached = _read_cache(path, "ablation means")
    if cached is not None:
        return cached

    means = compute_means(model, windows)
    _save_atomic(means, path)
    logger.info("ablation means: computed and cached at %s", path)
    return means
