"""Load a model folder (`beeg_config.json` + `final_model.pt`) strictly and safely.

`load_model` accepts a local folder, an http(s) URL of a model folder in a store (files are fetched
through the registry's on-disk cache), or the name of a model in the configured store. Checkpoints are
read with `torch.load(weights_only=True, mmap=True)` on the CPU, so no pickle code runs and tensors
are paged in only when used. State-dict loading is strict: every missing or unexpected key is reported
at once; only `final_logits_bias` may be absent (it then stays zero).
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import torch

from inference.config import GPTConfig, config_from_dict
from inference.gpt import GPT
from inference.sparse import DEFAULT_MAX_DENSITY, enable_sparse_forward

logger = logging.getLogger(__name__)

CONFIG_FILE = "beeg_config.json"
WEIGHTS_FILE = "final_model.pt"
OPTIONAL_KEYS = frozenset({"final_logits_bias"})
WRAPPER_PREFIXES = ("_orig_mod.", "module.")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable or does not match its config."""


def resolve_model_files(path_or_url: str | os.PathLike) -> tuple[Path, Path]:
    """Return local paths of (beeg_config.json, final_model.pt) for a folder, URL or store name."""
    text = str(path_or_url)
    if text.startswith(("http://", "https://")):
        from registry.store import Store

        store = Store(text.rstrip("/"))
        return store.local_path(CONFIG_FILE), store.local_path(WEIGHTS_FILE)

    folder = Path(text)
    if folder.is_dir():
        return _existing(folder / CONFIG_FILE), _existing(folder / WEIGHTS_FILE)
    if "/" in text or os.sep in text or text.startswith("."):
        raise FileNotFoundError(
            f"model folder {text} not found; pass a folder with {CONFIG_FILE} and "
            f"{WEIGHTS_FILE}, an http(s) URL of one, or a model name in the store"
        )

    from registry.catalogue import check_model
    from registry.store import default_store

    name = check_model(text)
    store = default_store()
    return store.local_path(f"models/{name}/{CONFIG_FILE}"), store.local_path(
        f"models/{name}/{WEIGHTS_FILE}"
    )


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; a model folder contains {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    return path


def read_config(path: str | os.PathLike) -> GPTConfig:
    """Parse a `beeg_config.json` file into a GPTConfig."""
    try:
        raw = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    return config_from_dict(raw, source=str(path))


def read_state_dict(path: str | os.PathLike, mmap: bool = True) -> dict[str, torch.Tensor]:
    """Read a state dict saved with torch.save, refusing empty, truncated and pickle-only files."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0 or not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} ({size} bytes) is not a complete torch checkpoint (empty, truncated or not a "
            "zip archive); delete it and download it again"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (RuntimeError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"{path} ({size} bytes) could not be read: {err}") from err
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} contains a {type(state).__name__}, expected a state dict")
    return strip_wrapper_prefixes(state, source=str(path))


def strip_wrapper_prefixes(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Remove `_orig_mod.` (torch.compile) and `module.` (DDP) key prefixes, logging each."""
    for prefix in WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            logger.info("%s: stripped the %r prefix from every state-dict key", source, prefix)
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def load_state_dict_strict(model: GPT, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, naming every missing, unexpected or mis-shaped key at once."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state) - OPTIONAL_KEYS)
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{key}: checkpoint {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if shapes:
        problems.append(f"shape mismatches {shapes}")
    if problems:
        raise CheckpointError(
            f"{source} does not match its config: " + "; ".join(problems) + ". Check that "
            f"{CONFIG_FILE} belongs to this checkpoint."
        )
    if "final_logits_bias" not in state:
        logger.info("%s: no final_logits_bias in the checkpoint; using zeros", source)
    model.load_state_dict(state, strict=False)


def pick_device(cuda: bool) -> torch.device:
    if not cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        logger.warning("cuda=True but no CUDA device is available; loading on the CPU")
        return torch.device("cpu")
    return torch.device("cuda")


def load_model(
    path_or_url: str | os.PathLike,
    cuda: bool = False,
    mmap: bool = True,
    sparse: bool | str = "auto",
) -> GPT:
    """Load a GPT in eval mode from a model folder, a store URL of one, or a store model name.

    `sparse="auto"` gives the CSR forward path of `inference.sparse` (used outside autograd only)
    to Linear layers of weight density <= 1/8 with at least 2**20 weights
    (`inference.sparse.DEFAULT_MIN_WEIGHTS`); True forces it on every Linear, False keeps the
    dense path.
    """
    if sparse not in (True, False, "auto"):
        raise ValueError(f"sparse={sparse!r} is invalid; use True, False or 'auto'")
    config_path, weights_path = resolve_model_files(path_or_url)
    config = read_config(config_path)
    state = read_state_dict(weights_path, mmap=mmap)

    model = GPT(config)
    load_state_dict_strict(model, state, source=str(weights_path))
    model.eval()
    model.requires_grad_(False)
    model = model.to(pick_device(cuda))
    if sparse:
        if sparse is True:
            enable_sparse_forward(model, max_density=1.0, min_weights=0)
        else:
            enable_sparse_forward(model, max_density=DEFAULT_MAX_DENSITY)
    return model


def load_tensor(path_or_url: str | os.PathLike, key: str) -> torch.Tensor:
    """Read one tensor (e.g. `transformer.wte.weight`) of a model's checkpoint without loading the rest.

    The checkpoint is memory-mapped, so only the pages of this tensor are read from disk.
    """
    _, weights_path = resolve_model_files(path_or_url)
    state = read_state_dict(weights_path, mmap=True)
    if key not in state:
        raise KeyError(f"{weights_path} has no tensor {key!r}; it has {sorted(state)[:8]} ...")
    return state[key].clone()
