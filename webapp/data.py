"""The web app's data layer: catalogue-checked, cached reads of models, training curves and circuits.

Every public function takes ids (model, task, sweep, k, node), checks them against the store
catalogue (`registry.catalogue`) and only then builds a store path. Results are memoized in the shared
Flask-Caching cache, keyed by those ids plus the `FileIdentity` (path, size, mtime) of the file read,
and are JSON-native so the cache needs no pickle. Objects too big for that cache (the loaded
viz_data.pt and models) are kept in small per-worker LRU caches.

Errors: `DataFileError` names the store file that is missing or malformed; pages show its message.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from pathlib import Path
from typing import Any

from registry import catalogue
from registry.store import Store, resolve_store_root
from webapp.cache import FileIdentity, cache

logger = logging.getLogger(__name__)

_store_lock = threading.Lock()
_store: Store | None = None


class DataFileError(RuntimeError):
    """A store file that is missing, empty or malformed; the message names the file.

    The message names files relative to the store root (see `store_relative`), because pages
    show it to users.
    """

    def __init__(self, message: str) -> None:
        super().__init__(store_relative(message))


def store_relative(text: str) -> str:
    """Rewrite the store root and the download cache in `text` to store-relative paths.

    Messages of the registry and torch name files by absolute path or file:// URL. Shown on a page,
    those would reveal the server's folder layout, and the relative path identifies the file.
    """
    if _store is None:
        return text
    if _store.is_remote:
        from registry.cache import cache_dir

        # A cached download lives at <cache>/<host>/<url path>; the host folder stays in the text.
        cache = str(_store.cache_root or cache_dir())
        return text.replace(cache + "/", "").replace(cache, "<download cache>")
    for prefix in (Path(_store.root).as_uri(), _store.root):
        text = text.replace(prefix + "/", "").replace(prefix, "<store>")
    return text


def configure_store(root: str | None = None) -> Store:
    """Open the store the app reads: `root`, else `CIRCUIT_SPARSITY_STORE`, else the embedded one."""
    global _store
    with _store_lock:
        _store = Store(resolve_store_root(root))
        logger.info("web app store: %s", _store.root)
        _loaded_viz.cache_clear()
        _loaded_model.cache_clear()
        return _store


def get_store() -> Store:
    """Return the configured store, opening the default one on first use."""
    if _store is None:
        return configure_store()
    return _store


def file_identity(relpath: str) -> tuple[Path, FileIdentity]:
    """Return the local path and identity of a store file.

    Raises DataFileError naming the file when it is missing or unreadable.
    """
    try:
        path = get_store().local_path(relpath)
    except FileNotFoundError as err:
        logger.info("missing store file %s in %s", relpath, get_store().root)
        raise DataFileError(f"Missing store file {relpath}") from err
    except (OSError, ValueError) as err:
        raise DataFileError(f"Could not read store file {relpath}: {err}") from err
    return path, FileIdentity.of(path)


# ---------------------------------------------------------------------------------------------
# Models and training curves


def list_models() -> list[str]:
    """List the models with a `beeg_config.json` in the store."""
    return catalogue.list_models(get_store())


def list_models_and_curves() -> list[str]:
    """List the models with a config or a training curve (a run still training has only curves)."""
    store = get_store()
    return sorted(set(catalogue.list_models(store)) | set(catalogue.list_curves(store)))


def check_listed_model(model: str) -> str:
    """Return `model` if the store lists it under `models/` or `train_curves/`.

    Raises CatalogueError naming the value and the listed models otherwise, before any path is built.
    """
    listed = list_models_and_curves()
    if model not in listed:
        shown = ", ".join(listed) if listed else "none in this store"
        raise catalogue.CatalogueError(f"Unknown model {model!r}. Available: {shown}.")
    return model


def model_summary(model: str) -> dict[str, Any]:
    """Summarise a catalogue model's config: sizes, afrac, tokenizer and the raw config fields."""
    check_listed_model(model)
    relpath = f"models/{model}/beeg_config.json"
    _, identity = file_identity(relpath)
    return _model_summary(relpath, identity)


@cache.memoize()
def _model_summary(relpath: str, identity: FileIdentity) -> dict[str, Any]:
    from inference.loading import CheckpointError, read_config

    try:
        config = read_config(identity.path)
    except (CheckpointError, ValueError, TypeError) as err:
        raise DataFileError(f"Malformed store file {relpath}: {err}") from err
    raw = json.loads(Path(identity.path).read_text())
    return {
        "n_layer": config.n_layer,
        "d_model": config.d_model,
        "n_head": config.n_head,
        "d_head": config.d_head,
        "d_mlp": config.d_mlp,
        "block_size": config.block_size,
        "vocab_size": config.vocab_size,
        "afrac": config.afrac,
        "afrac_loctypes": config.afrac_loctypes,
        "tokenizer_name": config.tokenizer_name,
        # NOTE: released configs carry `pfrac`, a training-only key that upstream does not
        # document; it looks like the target fraction of nonzero weights, so it is shown raw.
        "pfrac": raw.get("pfrac"),
        "raw": {key: value for key, value in raw.items() if _is_json_scalar(value)},
    }


def _is_json_scalar(value: Any) -> bool:
    return (
        value is None
        or isinstance(value, bool | int | str)
        or (isinstance(value, float) and math.isfinite(value))
    )


def weight_counts(model: str) -> dict[str, Any]:
    """Count the nonzero and total entries of a catalogue model's sparse tensors.

    Sparse tensors are the ones training keeps sparse (`training.sparsity.DENSE_NAME_PARTS` names
    the dense ones: norms, bigram table, sink logits). The `final_logits_bias` buffer is not
    trained, so it is left out too; the count then equals the L0 that training logs.
    """
    check_listed_model(model)
    relpath = f"models/{model}/final_model.pt"
    _, identity = file_identity(relpath)
    return _weight_counts(relpath, identity)


@cache.memoize()
def _weight_counts(relpath: str, identity: FileIdentity) -> dict[str, Any]:
    from inference.loading import CheckpointError, read_state_dict
    from training.sparsity import DENSE_NAME_PARTS

    try:
        state = read_state_dict(identity.path, mmap=True)
    except CheckpointError as err:
        raise DataFileError(f"Malformed store file {relpath}: {err}") from err
    dense_parts = (*DENSE_NAME_PARTS, "final_logits_bias")
    sparse = [t for name, t in state.items() if not any(part in name for part in dense_parts)]
    total = sum(tensor.numel() for tensor in sparse)
    nonzero = sum(int(tensor.count_nonzero()) for tensor in sparse)
    return {"nnz": nonzero, "total": total, "density": nonzero / total if total else 0.0}


def training_records(model: str) -> list[dict[str, Any]]:
    """Parse `train_curves/<model>/progress.json` of a catalogue model into one dict per line.

    Raises DataFileError naming the file when it is missing or malformed.
    """
    check_listed_model(model)
    relpath = f"train_curves/{model}/progress.json"
    _, identity = file_identity(relpath)
    return _training_records(relpath, identity)


def final_training_values(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Return each field's value in the last record that has it (the run's final metrics).

    Evaluation metrics such as test_xent are logged on fewer steps than train_xent, so the very
    last record may lack them.
    """
    final: dict[str, Any] = {}
    for record in records:
        final.update({key: value for key, value in record.items() if value is not None})
    return final


@cache.memoize()
def _training_records(relpath: str, identity: FileIdentity) -> list[dict[str, Any]]:
    lines = Path(identity.path).read_text(errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines) and records:
                # A run still writing its log can leave a partial last line. With no record
                # before it the line is reported, so a one-line invalid file is not shown as empty.
                logger.warning("%s: skipped unparsable last line %d: %s", relpath, number, err)
                continue
            raise DataFileError(f"Malformed store file {relpath}: line {number}: {err}") from err
        if not isinstance(record, dict):
            raise DataFileError(
                f"Malformed store file {relpath}: line {number} is not a JSON object"
            )
        records.append({k: v for k, v in record.items() if _is_json_scalar(v)})
    return records


# ---------------------------------------------------------------------------------------------
# Per-worker caches of big objects


@functools.lru_cache(maxsize=2)
def _loaded_viz(relpath: str, identity: FileIdentity) -> Any:
    from registry.viz import load_viz_data

    del identity  # part of the cache key only
    parts = relpath.split("/")
    return load_viz_data(parts[1], parts[2], parts[3], parts[4], store=get_store())


@functools.lru_cache(maxsize=2)
def _loaded_model(model: str, identity: FileIdentity) -> Any:
    from inference.gpt import load_model

    del identity  # part of the cache key only
    store = get_store()
    folder = (
        f"{store.root}/models/{model}" if store.is_remote else Path(store.root, "models", model)
    )
    logger.info("loading model %s for live activations", model)
    return load_model(folder)


def loaded_model(model: str) -> Any:
    """Load the catalogue model `model` once per worker and weights-file identity."""
    catalogue.check_model(model, get_store())
    _, identity = file_identity(f"models/{model}/final_model.pt")
    return _loaded_model(model, identity)
