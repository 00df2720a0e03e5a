"""Load a model folder (`beeg_config.json` + `final_model.pt`) strictly and safely.

`load_model` accepts a local folder, an http(s) URL of a model folder in a store (files are fetched
through the registry's on-disk cache), or the name of a model in the configured store. Checkpoints are
read with `torch.load(weights_only=True, mmap=True)` on the CPU, so no pickle code runs.
`load_model` first reads the whole checkpoint once to check its CRC-32 values, and `load_tensor`
skips that check, so it reads only the pages of its tensor. A checkpoint must be a flat dict of str names to tensors; the key prefixes
that DDP (`module.`) and torch.compile (`_orig_mod.`) add are removed. State-dict loading is strict:
every missing or unexpected key is reported at once; only `final_logits_bias` may be absent (it then
stays zero).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
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


def resolve_model_files(
    path_or_url: str | os.PathLike, *, verify_crc: bool = False
) -> tuple[Path, Path]:
    """Return local paths of (beeg_config.json, final_model.pt) for a folder, URL or store name.

    `verify_crc=True` reads the whole checkpoint once to check its CRC-32 values, so damaged
    bytes raise `registry.cache.CorruptFileError` (a damaged cached download is fetched again).
    """
    from registry.cache import check_file

    text = str(path_or_url)
    if text.startswith(("http://", "https://")):
        from registry.store import Store

        store = Store(text.rstrip("/"))
        return store.local_path(CONFIG_FILE), store.local_path(WEIGHTS_FILE, verify_crc=verify_crc)

    folder = Path(text)
    if folder.is_dir():
        weights = _existing(folder / WEIGHTS_FILE)
        check_file(weights, str(weights), verify_crc=verify_crc)
        return _existing(folder / CONFIG_FILE), weights
    if folder.is_file():
        raise NotADirectoryError(
            f"{text} is a file; pass the model folder that contains {CONFIG_FILE} and "
            f"{WEIGHTS_FILE}, such as {folder.parent}"
        )
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
        f"models/{name}/{WEIGHTS_FILE}", verify_crc=verify_crc
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
    """Read a state dict saved with torch.save, refusing empty, truncated and pickle-only files.

    Raises CheckpointError naming the file and its size when the file is not a zip archive, contains
    pickled objects other than tensors, or is not a flat dict of str names to tensors.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0 or not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} ({size} bytes) is not a complete torch checkpoint (empty, truncated or not a "
            "zip archive); delete it and download it again"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path} ({size} bytes) could not be read with weights_only=True: it contains a "
            f"pickled {_unsupported_global(err)}, and only tensors and plain containers load "
            "safely. Save a state dict of tensors instead: "
            "torch.save(model.state_dict(), 'final_model.pt')"
        ) from err
    except (RuntimeError, zipfile.BadZipFile, EOFError) as err:
        raise CheckpointError(f"{path} ({size} bytes) could not be read: {err}") from err
    check_state_dict(state, source=f"{path} ({size} bytes)")
    return strip_wrapper_prefixes(state, source=str(path))


def _unsupported_global(err: pickle.UnpicklingError) -> str:
    """Return the class that torch's weights-only unpickler rejected, as named in its message."""
    match = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
    return f"object of class {match.group(1)}" if match else "object that is not a tensor"


def check_state_dict(state: object, source: str) -> None:
    """Raise CheckpointError unless `state` is a dict of str names to tensors.

    A dict that wraps the state dict in one of its entries, as training checkpoints do with
    {"model": state_dict, "step": ...}, gets a message naming the entry to save on its own.
    """
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{source} contains a {type(state).__name__}, expected a state dict; "
            "save one with torch.save(model.state_dict(), 'final_model.pt')"
        )

    bad = [
        (key, value)
        for key, value in state.items()
        if not isinstance(key, str) or not isinstance(value, torch.Tensor)
    ]
    if not bad:
        return

    for key, value in bad:
        if (
            isinstance(value, dict)
            and value
            and all(isinstance(item, torch.Tensor) for item in value.values())
        ):
            raise CheckpointError(
                f"{source} wraps its state dict in the entry {key!r}, as training checkpoints do; "
                f"save that entry on its own: torch.save(checkpoint[{key!r}], 'final_model.pt')"
            )

    key, value = bad[0]
    if not isinstance(key, str):
        problem = f"has a key {key!r} of type {type(key).__name__}, expected str"
    else:
        problem = f"maps {key!r} to a {type(value).__name__}, expected a torch.Tensor"
    raise CheckpointError(
        f"{source} is not a state dict of tensors: it {problem}, and {len(bad)} of {len(state)} "
        "entries are invalid; save one with torch.save(model.state_dict(), 'final_model.pt')"
    )


def strip_wrapper_prefixes(state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Remove `_orig_mod.` (torch.compile) and `module.` (DDP) key prefixes, nested in any order.

    A prefix is removed only when every key starts with it. One log line names all removed prefixes.
    """
    stripped = []
    while state:
        prefix = next(
            (prefix for prefix in WRAPPER_PREFIXES if all(key.startswith(prefix) for key in state)),
            None,
        )
        if prefix is None:
            break
        stripped.append(prefix)
        state = {key[len(prefix) :]: value for key, value in state.items()}
    if stripped:
        logger.info(
            "%s: stripped the wrapper prefix %r from every state-dict key",
            source,
            "".join(stripped),
        )
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
    dense path. The checkpoint's CRC-32 values are checked first (one read of the file), so a
    damaged byte raises CheckpointError instead of loading wrong weights.
    """
    if not (isinstance(sparse, bool) or sparse == "auto"):  # 1 == True, so compare types
        raise ValueError(f"sparse={sparse!r} is invalid; use True, False or 'auto'")
    from registry.cache import CorruptFileError

    try:
        config_path, weights_path = resolve_model_files(path_or_url, verify_crc=True)
    except CorruptFileError as err:
        raise CheckpointError(str(err)) from err
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
