"""The catalogue of a store: models, training curves and circuits, listed from the store itself.

Every name that comes from outside (a URL parameter, a CLI flag) goes through a `check_*`
function here before any file path is built from it. A name is rejected if it contains `/`,
a backslash or `..`, starts with `.`, or is not in the store's listing. The error names the
value and the allowed ones. No model, task or sweep name is hard-coded.

Folders read (see docs/architecture.md for the full layout):
`models/<model>/beeg_config.json`, `train_curves/<model>/progress.json`,
`viz/<model>/<task>/<sweep>/<k>/viz_data.pt` where `<k>` is an integer or `k_optim`.
"""

import logging
from collections.abc import Iterable

from registry.store import Store, default_store

logger = logging.getLogger(__name__)

K_OPTIM = "k_optim"


class CatalogueError(KeyError, ValueError):
    """A name that is not in the store's catalogue, or that is not a plain folder name.

    It subclasses both KeyError (a failed lookup) and ValueError (an invalid argument), so
    callers may catch either.
    """

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument, which would quote the whole message.
        return str(self.args[0]) if self.args else ""


def _is_plain_name(name: str) -> bool:
    unsafe = "/" in name or "\\" in name or ".." in name or "\0" in name
    return bool(name) and not unsafe and not name.startswith(".")


def _check_plain_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise CatalogueError(f"Invalid {kind} {value!r}: expected a non-empty folder name.")
    if not _is_plain_name(value):
        raise CatalogueError(
            f"Invalid {kind} {value!r}: a {kind} is a plain folder name without '/', "
            "backslash, '..' or a leading '.'."
        )
    return value


def _check_listed(kind: str, value: object, allowed: Iterable[str]) -> str:
    name = _check_plain_name(kind, value)
    allowed = list(allowed)
    if name not in allowed:
        allowed_text = ", ".join(map(str, allowed)) if allowed else "none in this store"
        raise CatalogueError(f"Unknown {kind} {name!r}. Available: {allowed_text}.")
    return name


def _list_names(store: Store, relpath: str) -> list[str]:
    """Return the plain names in folder `relpath` (none if it is missing).

    Hidden entries and names that `_check_plain_name` would reject are left out, so every
    listed name can be passed back to a `check_*` function.
    """
    try:
        names = store.list_dir(relpath)
    except FileNotFoundError:
        return []
    return [name for name in names if _is_plain_name(name)]


def _subfolders_with(store: Store, relpath: str, required_file: str) -> list[str]:
    """Return entries of `relpath` that hold `required_file` (remote stores: every entry)."""
    names = _list_names(store, relpath)
    if store.is_remote:
        # Checking each entry remotely costs one request per entry, so trust the listing.
        return names
    return [n for n in names if store.exists(f"{relpath}/{n}/{required_file}")]


def list_models(store: Store | None = None) -> list[str]:
    """Return the models under `models/` (locally: those with a `beeg_config.json`)."""
    return _subfolders_with(store or default_store(), "models", "beeg_config.json")


def list_curves(store: Store | None = None) -> list[str]:
    """Return the models with a training curve under `train_curves/`."""
    return _subfolders_with(store or default_store(), "train_curves", "progress.json")


def list_viz_models(store: Store | None = None) -> list[str]:
    """Return the models with at least a folder under `viz/`."""
    store = store or default_store()
    return _list_names(store, "viz")


def list_tasks(model: str, store: Store | None = None) -> list[str]:
    """Return the task folders under `viz/<model>/`."""
    store = store or default_store()
    model = _check_listed("model", model, list_viz_models(store))
    return _list_names(store, f"viz/{model}")


def list_sweeps(model: str, task: str, store: Store | None = None) -> list[str]:
    """Return the sweep folders under `viz/<model>/<task>/`."""
    store = store or default_store()
    task = _check_listed("task", task, list_tasks(model, store))
    return _list_names(store, f"viz/{model}/{task}")


def list_ks(model: str, task: str, sweep: str, store: Store | None = None) -> list[int | str]:
    """Return the k folders of a sweep: integers in numeric order, then "k_optim" if present.

    Entries that are neither a non-negative integer without leading zeros nor "k_optim" are
    skipped with a debug log line.
    """
    store = store or default_store()
    sweep = _check_listed("sweep", sweep, list_sweeps(model, task, store))
    names = _list_names(store, f"viz/{model}/{task}/{sweep}")

    integer_names = [n for n in names if n.isdigit() and str(int(n)) == n]
    ks: list[int | str] = sorted(int(n) for n in integer_names)
    if K_OPTIM in names:
        ks.append(K_OPTIM)
    skipped = [n for n in names if n not in integer_names and n != K_OPTIM]
    if skipped:
        logger.debug("Skipping non-k entries in viz/%s/%s/%s: %s", model, task, sweep, skipped)
    return ks


def check_model(model: str, store: Store | None = None) -> str:
    """Return `model` if `models/<model>` is in the catalogue, else raise CatalogueError."""
    return _check_listed("model", model, list_models(store))


def check_curve(model: str, store: Store | None = None) -> str:
    """Return the relative path of the model's `progress.json`, or raise CatalogueError."""
    model = _check_listed("training curve", model, list_curves(store))
    return f"train_curves/{model}/progress.json"


def check_viz_key(
    model: str, task: str, sweep: str, k: int | str, store: Store | None = None
) -> str:
    """Return the relative path of the circuit's `viz_data.pt`, or raise CatalogueError.

    `k` may be an int or its string form (as in a URL), or "k_optim".
    """
    store = store or default_store()
    if isinstance(k, bool) or not isinstance(k, int | str):
        raise CatalogueError(f"Invalid k {k!r}: expected an integer or {K_OPTIM!r}.")
    k_name = str(k)

    allowed_ks = [str(allowed) for allowed in list_ks(model, task, sweep, store)]
    _check_listed("k", k_name, allowed_ks)
    return f"viz/{model}/{task}/{sweep}/{k_name}/viz_data.pt"
