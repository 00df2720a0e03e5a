"""Reading and validating circuit files (`viz/<model>/<task>/<sweep>/<k>/viz_data.pt`).

A viz_data.pt contains one pruned circuit and what the viewer shows about it. Top level:
`circuit_data` (node location -> 1-D LongTensor of kept node ids), `samples` (top and bottom
pretraining examples per node), `importances` (losses, edges and task activations; missing in
some files, then `VizData.importances` is None), `all_loss` (search iteration, loss) pairs,
`num_total_nodes`, `prune_config`, and optionally `ablation_means` (node location -> 1-D mean
activation, written by this project's pruner) and `task_sample_lengths`.

Two corrections of the stored data happen here, once, so that nothing downstream repeats them:
- Task losses are stored as the sum of the losses of the two sequences of a datapoint pair, so
  they are 2x the per-sequence loss. `per_sequence_loss` halves `importances.loss`,
  `interv_loss`, `node_ablation_base_loss` (when present), `ch_interv_losses`,
  `layer_interv_losses` and `all_loss`. Every viz_data.pt
  uses the doubled convention, including the ones this project's pruner writes.
- Some released files store `pair_data` as one list per worker process instead of one flat
  list; `flatten_pair_data` joins them.

Files are read with `torch.load(weights_only=True)`, so they can hold only tensors, dicts, lists,
tuples and plain numbers.
"""

import logging
import pickle  # only for its exception type: files are read with weights_only=True
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from registry.catalogue import check_viz_key
from registry.store import Store, default_store

logger = logging.getLogger(__name__)

REQUIRED_KEYS = ("circuit_data", "samples", "all_loss", "num_total_nodes", "prune_config")
REQUIRED_IMPORTANCE_KEYS = (
    "beeg_model_config",
    "loss",
    "interv_loss",
    "ch_interv_losses",
    "layer_interv_losses",
    "pair_data",
    "task_samples",
)

# Stored task losses sum the losses of both sequences of a datapoint pair.
STORED_LOSS_SEQUENCES = 2

# Keys that may hold task-sample lengths. `task_lengths` is an older name for the same thing.
LENGTH_KEYS = ("task_sample_lengths", "task_lengths")


class VizDataError(ValueError):
    """A viz_data.pt file that cannot be loaded or does not follow the schema."""


@dataclass(frozen=True)
class VizData:
    """One validated circuit file, with task losses already per sequence.

    Top-level schema keys are also readable as `viz[key]` and `viz.get(key)`, because much
    code written for upstream files indexes them like a dict.
    """

    source: str
    circuit_data: dict[str, torch.Tensor]
    samples: dict
    all_loss: list[tuple[int, float]]
    num_total_nodes: int
    prune_config: dict
    importances: dict | None  # None when the file has none
    # Real token count of each row of importances["task_samples"][0], whose rows are
    # right-padded with token 0. None when neither the file nor the caller gives them.
    task_sample_lengths: torch.Tensor | None = None
    ablation_means: dict[str, torch.Tensor] | None = None  # location -> (width,) means

    @property
    def has_importances(self) -> bool:
        """Whether the file has `importances` (losses, edges and task activations)."""
        return self.importances is not None

    def __getitem__(self, key: str) -> Any:
        if key == "source" or key not in _FIELD_NAMES:
            raise KeyError(f"{key!r} is not a viz_data key; known keys: {sorted(_FIELD_NAMES)}")
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of top-level `key`, or `default` if unknown or absent (None)."""
        try:
            value = self[key]
        except KeyError:
            return default
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None


_FIELD_NAMES = frozenset(f.name for f in fields(VizData)) - {"source"}


def per_sequence_loss(stored: Any) -> Any:
    """Convert a stored task loss (summed over the 2 sequences of a pair) to a per-sequence loss.

    A number or a 0-d tensor gives a float, and a tensor a float tensor of the same shape.
    A list or tuple of numbers gives a list of floats. Raises TypeError for anything else.
    """
    if isinstance(stored, torch.Tensor):
        if stored.dim() == 0:
            return float(stored) / STORED_LOSS_SEQUENCES
        return stored.float() / STORED_LOSS_SEQUENCES
    if isinstance(stored, int | float) and not isinstance(stored, bool):
        return float(stored) / STORED_LOSS_SEQUENCES
    if isinstance(stored, list | tuple):
        return [per_sequence_loss(value) for value in stored]
    raise TypeError(f"Expected a loss (number, tensor or list of numbers), got {stored!r}.")


def flatten_pair_data(pair_data: list) -> list:
    """Return `pair_data` as one flat list of [weights, src ids, tgt ids, (src loc, tgt loc)].

    Some released files nest it one level deeper, with one list per worker process. Those
    lists are joined, in order, with a log line. Raises ValueError for any other structure.
    """
    if not isinstance(pair_data, list | tuple):
        raise ValueError(f"pair_data must be a list, got {type(pair_data).__name__}")
    if all(_is_edge_block(entry) for entry in pair_data):
        return list(pair_data)

    nested = all(
        isinstance(part, list | tuple) and all(_is_edge_block(entry) for entry in part)
        for part in pair_data
    )
    if not nested:
        raise ValueError(
            "pair_data entries must be [weights tensor, src ids, tgt ids, (src, tgt)] blocks"
        )
    logger.info("Joining pair_data stored as %d per-process lists", len(pair_data))
    return [entry for part in pair_data for entry in part]


def _is_edge_block(entry: Any) -> bool:
    return isinstance(entry, list | tuple) and len(entry) == 4 and torch.is_tensor(entry[0])


def load_viz_data(
    model: str,
    task: str,
    sweep: str,
    k: int | str,
    store: Store | None = None,
    *,
    datapoint_lengths: Sequence[int] | None = None,
) -> VizData:
    """Load `viz/<model>/<task>/<sweep>/<k>/viz_data.pt` after checking the key in the catalogue.

    `datapoint_lengths` (real token counts of the task samples, in stored row order) is used
    only when the file stores no lengths. Raises `registry.catalogue.CatalogueError` for an
    unknown key, FileNotFoundError, `registry.cache.CorruptFileError`, or VizDataError.
    """
    store = store or default_store()
    relpath = check_viz_key(model, task, sweep, k, store)
    path = store.local_path(relpath)
    return read_viz_file(path, store.url(relpath), datapoint_lengths=datapoint_lengths)


def read_viz_file(
    path: Path, source: str | None = None, *, datapoint_lengths: Sequence[int] | None = None
) -> VizData:
    """Load and validate one viz_data.pt file; `source` names it in errors (default: path)."""
    source = source or str(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as err:
        # torch raises RuntimeError for bad archives and UnpicklingError for disallowed types.
        raise VizDataError(f"Cannot load {source} with weights_only=True: {err}") from err
    return parse_viz_dict(raw, source, datapoint_lengths=datapoint_lengths)


def parse_viz_dict(
    raw: Any, source: str, *, datapoint_lengths: Sequence[int] | None = None
) -> VizData:
    """Validate the loaded contents of a viz_data.pt and return it as VizData."""
    if not isinstance(raw, dict):
        raise VizDataError(f"{source}: expected a dict at the top level, got {type(raw).__name__}.")
    _require_keys(raw, REQUIRED_KEYS, source, "top-level")

    importances = raw.get("importances")
    if importances is None:
        logger.info("%s has no importances; losses, edges and task samples are unavailable", source)
    else:
        importances = _normalise_importances(importances, source)

    return VizData(
        source=source,
        circuit_data=_check_circuit(raw["circuit_data"], source),
        samples=_check_dict(raw["samples"], source, "samples"),
        all_loss=_normalise_all_loss(raw["all_loss"], source),
        num_total_nodes=_check_int(raw["num_total_nodes"], source, "num_total_nodes"),
        prune_config=_check_dict(raw["prune_config"], source, "prune_config"),
        importances=importances,
        task_sample_lengths=_task_sample_lengths(raw, importances, datapoint_lengths, source),
        ablation_means=_check_ablation_means(raw.get("ablation_means"), source),
    )


def _require_keys(mapping: dict, keys: Sequence[str], source: str, where: str) -> None:
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise VizDataError(
            f"{source}: missing required {where} key(s) {missing}; present: {sorted(map(str, mapping))}. "
            "Regenerate the file with the pruner."
        )


def _check_dict(value: Any, source: str, key: str) -> dict:
    if not isinstance(value, dict):
        raise VizDataError(f"{source}: {key} must be a dict, got {type(value).__name__}.")
    return value


def _check_int(value: Any, source: str, key: str) -> int:
    if isinstance(value, torch.Tensor) and value.dim() == 0:
        value = value.item()
    if not isinstance(value, int) or isinstance(value, bool):
        raise VizDataError(f"{source}: {key} must be an integer, got {value!r}.")
    return value


def _check_circuit(circuit: Any, source: str) -> dict[str, torch.Tensor]:
    circuit = _check_dict(circuit, source, "circuit_data")
    checked = {}
    for location, kept in circuit.items():
        if isinstance(kept, list | tuple) and all(
            isinstance(i, int) and not isinstance(i, bool) for i in kept
        ):
            kept = torch.tensor(
                kept, dtype=torch.long
            )  # a float such as 2.5 stays a list: rejected
        if (
            not isinstance(kept, torch.Tensor)
            or kept.dim() != 1
            or kept.is_floating_point()
            or kept.dtype == torch.bool
        ):
            raise VizDataError(
                f"{source}: circuit_data[{location!r}] must be a 1-D integer tensor of kept "
                f"node ids, got {kept!r:.200}."
            )
        checked[location] = kept.long()
    return checked


def _check_ablation_means(means: Any, source: str) -> dict[str, torch.Tensor] | None:
    if means is None:
        return None
    means = _check_dict(means, source, "ablation_means")
    for location, mean in means.items():
        if not isinstance(mean, torch.Tensor) or mean.dim() != 1:
            raise VizDataError(
                f"{source}: ablation_means[{location!r}] must be a 1-D tensor (one mean per "
                f"channel), got {mean!r:.200}."
            )
    return means


def _normalise_all_loss(all_loss: Any, source: str) -> list[tuple[int, float]]:
    if not isinstance(all_loss, list | tuple):
        raise VizDataError(f"{source}: all_loss must be a list of (iteration, loss) pairs.")
    normalised = []
    for entry in all_loss:
        if not isinstance(entry, list | tuple) or len(entry) != 2:
            raise VizDataError(
                f"{source}: all_loss entry {entry!r} is not an (iteration, loss) pair."
            )
        iteration, loss = entry
        normalised.append((int(iteration), per_sequence_loss(loss)))
    return normalised


def _normalise_importances(importances: Any, source: str) -> dict:
    """Return a copy of `importances` with every task loss per sequence and pair_data flat."""
    importances = dict(_check_dict(importances, source, "importances"))
    _require_keys(importances, REQUIRED_IMPORTANCE_KEYS, source, "importances")

    try:
        importances["loss"] = per_sequence_loss(importances["loss"])
        importances["interv_loss"] = per_sequence_loss(importances["interv_loss"])
        if "node_ablation_base_loss" in importances:  # written by this project's pruner
            importances["node_ablation_base_loss"] = per_sequence_loss(
                importances["node_ablation_base_loss"]
            )
        for key in ("ch_interv_losses", "layer_interv_losses"):
            losses = _check_dict(importances[key], source, f"importances.{key}")
            importances[key] = {name: per_sequence_loss(loss) for name, loss in losses.items()}
    except TypeError as err:
        raise VizDataError(f"{source}: invalid loss in importances: {err}") from err

    try:
        importances["pair_data"] = flatten_pair_data(importances["pair_data"])
    except ValueError as err:
        raise VizDataError(f"{source}: invalid importances.pair_data: {err}.") from err

    task_samples = importances["task_samples"]
    if (
        not isinstance(task_samples, list | tuple)
        or len(task_samples) != 2
        or not isinstance(task_samples[0], torch.Tensor)
        or task_samples[0].dim() != 2
    ):
        raise VizDataError(
            f"{source}: importances.task_samples must be (tokens [N, T], activations by location)."
        )
    return importances


def _task_sample_lengths(
    raw: dict, importances: dict | None, datapoint_lengths: Sequence[int] | None, source: str
) -> torch.Tensor | None:
    """Return the real length of each task sample row (rows are right-padded with token 0).

    Lengths come from the file (top level or importances, under a name in LENGTH_KEYS), else
    from `datapoint_lengths`, else None. They are never guessed from trailing zeros, because 0
    is also a real token id.
    """
    if importances is None:
        return None
    tokens = importances["task_samples"][0]

    for where, mapping in (("top-level", raw), ("importances", importances)):
        for key in LENGTH_KEYS:
            if mapping.get(key) is not None:
                return _check_lengths(mapping[key], tokens, f"{source}: {where} {key}")

    if datapoint_lengths is not None:
        return _check_lengths(datapoint_lengths, tokens, f"datapoint_lengths for {source}")
    return None


def _check_lengths(lengths: Any, tokens: torch.Tensor, description: str) -> torch.Tensor:
    lengths = torch.as_tensor(lengths)
    n_rows, width = tokens.shape
    if lengths.shape != (n_rows,) or lengths.is_floating_point():
        raise VizDataError(
            f"{description} must be {n_rows} integers (one per task sample), got shape "
            f"{tuple(lengths.shape)} and dtype {lengths.dtype}."
        )
    if n_rows and (lengths.min() < 1 or lengths.max() > width):
        raise VizDataError(
            f"{description} must lie in [1, {width}] (the padded width), got {lengths}."
        )
    return lengths.long()
