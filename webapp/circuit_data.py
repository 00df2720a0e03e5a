"""Circuit data for the circuit page: the graph payload, a node's task heatmap and its examples.

All functions take catalogue ids, check them with `registry.catalogue.check_viz_key` before the
viz_data.pt path is used, and return JSON-native values memoized in the shared cache (keyed by the
ids and the file identity). The viz data is read through `registry.viz.load_viz_data`, which
validates the file and has already halved upstream's doubled task losses, so every loss here is
per sequence.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from registry import catalogue
from webapp.cache import FileIdentity, cache
from webapp.data import DataFileError, _loaded_viz, file_identity, get_store
from webapp.heatmap import aligned_difference, heatmap_row, window
from webapp.nodes import NodeKey, is_location, parse_node_key

logger = logging.getLogger(__name__)

MAX_TASK_PAIRS = 24  # task pairs shown in a node's heatmap, three rows each
EXAMPLES_SHOWN = 5  # top and bottom pretraining examples shown per node
EXAMPLE_RADIUS = 24  # tokens shown on each side of an example's marked position
EXAMPLE_TOKEN_NOTE = (
    "the token each example was chosen for: its activation lies in the top (or bottom) "
    "quantile chosen above"
)


def viz_relpath(model: str, task: str, sweep: str, k: str) -> tuple[str, FileIdentity]:
    """Check the ids against the catalogue, then return the viz_data.pt path and its identity."""
    relpath = catalogue.check_viz_key(model, task, sweep, k, get_store())
    _, identity = file_identity(relpath)
    return relpath, identity


def _viz(relpath: str, identity: FileIdentity) -> Any:
    try:
        return _loaded_viz(relpath, identity)
    except (ValueError, KeyError, TypeError, RuntimeError, OSError) as err:
        raise DataFileError(f"Malformed store file {relpath}: {err}") from err


def _as_list(values: Any) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


def load_circuit(model: str, task: str, sweep: str, k: str) -> dict[str, Any]:
    """Load the circuit as the JSON-native dict that `webapp.graph` draws (see that module)."""
    relpath, identity = viz_relpath(model, task, sweep, k)
    return _circuit_payload(relpath, identity)


@cache.memoize()
def _circuit_payload(relpath: str, identity: FileIdentity) -> dict[str, Any]:
    viz = _viz(relpath, identity)
    importances = viz.importances
    if importances is None:
        raise DataFileError(
            f"Store file {relpath} has no importances (losses, edges, task samples) to draw."
        )
    config = importances["beeg_model_config"]
    n_head = int(config["n_head"])
    d_head = int(config.get("d_head") or int(config["d_model"]) // n_head)
    interv_loss = float(importances["interv_loss"])
    # Node and block losses may come from fewer pairs than interv_loss; files written by
    # `pruning` store the circuit loss on those pairs. Files without it use interv_loss.
    base_loss = float(importances.get("node_ablation_base_loss", interv_loss))
    nodes = _nodes(viz.circuit_data, importances["ch_interv_losses"], base_loss)
    return {
        "n_layer": int(config["n_layer"]),
        "n_head": n_head,
        "d_head": d_head,
        "tokenizer_name": config.get("tokenizer_name"),
        "loss": float(importances["loss"]),
        "interv_loss": interv_loss,
        "search_losses": [[float(step), float(loss)] for step, loss in viz.all_loss],
        "block_deltas": {
            name: float(value) - base_loss
            for name, value in importances["layer_interv_losses"].items()
        },
        "num_total_nodes": int(viz.num_total_nodes),
        "nodes": nodes,
        "edges": _edges(importances["pair_data"], {node["id"] for node in nodes}),
    }


def _nodes(circuit_data: dict, ch_interv_losses: dict, base_loss: float) -> list[dict]:
    """Build one dict per kept node, with importance = loss rise when it is ablated too, or None."""
    nodes = []
    for location, kept in circuit_data.items():
        if not is_location(location):
            continue
        losses = ch_interv_losses.get(location)
        losses = _as_list(losses) if losses is not None else []
        for position, index in enumerate(_as_list(kept)):
            importance = None
            if position < len(losses):
                importance = float(losses[position]) - base_loss
            nodes.append(
                {
                    "id": f"{location}:{int(index)}",
                    "location": location,
                    "index": int(index),
                    "importance": importance,
                }
            )
    return nodes


def _edges(pair_data: list, node_ids: set[str]) -> list[dict[str, Any]]:
    """Nonzero weights between kept nodes; bias rows and columns are not nodes and are skipped."""
    edges = []
    for weights, source_ids, target_ids, (source_location, target_location) in pair_data:
        source_ids = _as_list(source_ids)
        target_ids = _as_list(target_ids)
        rows = _as_list(weights)
        for i, row in enumerate(rows):
            if i >= len(source_ids) or source_ids[i] == "bias":
                continue
            source = f"{source_location}:{int(source_ids[i])}"
            for j, weight in enumerate(row):
                if weight == 0 or j >= len(target_ids) or target_ids[j] == "bias":
                    continue
                target = f"{target_location}:{int(target_ids[j])}"
                if source in node_ids and target in node_ids:
                    edges.append({"source": source, "target": target, "weight": float(weight)})
    return edges


SWEEP_FILE = "sweep.json"


def load_sweep(model: str, task: str, sweep: str) -> dict[str, Any] | None:
    """Read the sweep's `sweep.json` (loss against k, written by this project's pruner).

    Returns None when the sweep has none, as upstream sweeps do not. Raises DataFileError naming
    the file when it is malformed.
    """
    store = get_store()
    catalogue.list_ks(model, task, sweep, store)  # checks model, task and sweep
    relpath = f"viz/{model}/{task}/{sweep}/{SWEEP_FILE}"
    if not store.exists(relpath):
        return None
    _, identity = file_identity(relpath)
    return _sweep(relpath, identity)


def choose_default_k(model: str, task: str, sweep: str, ks: Sequence[str]) -> str | None:
    """Choose the k to open for a sweep without a k_optim circuit, from sweep.json's losses.

    Returns the smallest listed k whose loss reaches the target loss, else the listed k with the
    lowest loss. Returns None when the sweep has no readable sweep.json or its points include none of
    `ks`, so the page opens the first k.
    """
    try:
        curve = load_sweep(model, task, sweep)
    except (DataFileError, catalogue.CatalogueError, OSError) as err:
        logger.warning("no default k from sweep.json of %s/%s/%s: %s", model, task, sweep, err)
        return None
    if curve is None:
        return None
    losses = {str(point["k"]): point["loss_per_sequence"] for point in curve["points"]}
    listed = sorted((int(k), losses[k]) for k in ks if k in losses)
    if not listed:
        return None
    target = curve["target_loss"]
    if target is not None:
        reaching = [k for k, loss in listed if loss <= target]
        if reaching:
            return str(reaching[0])
    return str(min(listed, key=lambda pair: pair[1])[0])


@cache.memoize()
def _sweep(relpath: str, identity: FileIdentity) -> dict[str, Any]:
    try:
        sweep = json.loads(Path(identity.path).read_text())
    except ValueError as err:
        raise DataFileError(f"Malformed store file {relpath}: {err}") from err
    try:
        return _parse_sweep(sweep)
    except ValueError as err:
        raise DataFileError(f"Malformed store file {relpath}: {err}") from err


def _parse_sweep(sweep: Any) -> dict[str, Any]:
    """Check the fields of a parsed sweep.json; raise ValueError naming the first bad field."""
    if not isinstance(sweep, dict):
        raise ValueError(f"expected a JSON object, got {type(sweep).__name__}")
    points = sweep.get("points")
    if not isinstance(points, list):
        raise ValueError(f"field 'points' must be a list, got {points!r}")
    parsed_points = []
    for number, point in enumerate(points):
        if not isinstance(point, dict):
            raise ValueError(f"field 'points[{number}]' must be an object, got {point!r}")
        parsed_points.append(
            {
                "k": _int_field(f"points[{number}].k", point.get("k")),
                "loss_per_sequence": _float_field(
                    f"points[{number}].loss_per_sequence", point.get("loss_per_sequence")
                ),
            }
        )
    k_optim = sweep.get("k_optim")
    full_model_loss = sweep.get("full_model_loss_per_sequence")
    target_loss = sweep.get("target_loss_per_sequence")
    return {
        "points": parsed_points,
        "k_optim": None if k_optim is None else _int_field("k_optim", k_optim),
        "full_model_loss": None
        if full_model_loss is None
        else _float_field("full_model_loss_per_sequence", full_model_loss),
        "target_loss": None
        if target_loss is None
        else _float_field("target_loss_per_sequence", target_loss),
    }


def _int_field(name: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"field {name!r} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"field {name!r} must be an integer, got {value!r}") from err


def _float_field(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"field {name!r} must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError as err:
        raise ValueError(f"field {name!r} must be a number, got {value!r}") from err


def check_node(circuit: dict[str, Any], node: str) -> NodeKey:
    """Parse `node` and check that the circuit keeps it; raise ValueError naming it otherwise."""
    key = parse_node_key(node)
    if not any(n["id"] == str(key) for n in circuit["nodes"]):
        raise ValueError(f"node {node!r} is not in this circuit; pick one from the graph")
    return key


def _encoding(viz: Any) -> Any:
    from registry.tokenizer import get_encoding

    name = viz["importances"]["beeg_model_config"].get("tokenizer_name") or "tinypython_2k"
    return get_encoding(name, get_store())


def _labels(encoding: Any, token_ids: list[int]) -> list[str]:
    from registry.tokenizer import token_label

    return [token_label(encoding, int(token_id)) for token_id in token_ids]


def _node_values(table: dict, index: int) -> Any:
    """Look up a node in a node-keyed dict whose keys may be ints or 0-d tensors."""
    if index in table:
        return table[index]
    for key, values in table.items():
        if int(key) == index:
            return values
    return None


def node_task_heatmap(model: str, task: str, sweep: str, k: str, node: str) -> list[dict]:
    """Build heatmap rows of a node's activations on the task samples, three rows per pair.

    Per pair: the `inputs` sequence, the `patch_from_inputs` sequence, and their per-token
    difference where the two align (see `webapp.heatmap.aligned_difference`). Each sequence is
    labelled with the answer token that follows it in the task, when the task registry builds the
    same pairs as the file stores.
    """
    relpath, identity = viz_relpath(model, task, sweep, k)
    return _node_task_heatmap(relpath, identity, str(parse_node_key(node)), task)


@cache.memoize()
def _node_task_heatmap(relpath: str, identity: FileIdentity, node: str, task: str) -> list[dict]:
    viz = _viz(relpath, identity)
    key = parse_node_key(node)
    if viz.importances is None:
        raise DataFileError(f"Store file {relpath} has no importances, so no task samples.")
    tokens, activations = viz.importances["task_samples"]
    values = _node_values(activations.get(key.location, {}), key.index)
    if values is None:
        raise ValueError(f"{relpath} stores no task activations for node {node}")

    encoding = _encoding(viz)
    lengths = task_sample_lengths(viz)
    padded_note = ""
    if lengths is None:
        logger.info("%s stores no task sample lengths; showing padded rows", relpath)
        lengths = [tokens.shape[1]] * tokens.shape[0]
        padded_note = " (padded: the file stores no sample lengths)"
    sequences = [_as_list(tokens[row][:length]) for row, length in enumerate(lengths)]
    answers = _pair_answers(relpath, identity, task)

    rows = []
    pairs = len(lengths) // 2
    for pair in range(min(pairs, MAX_TASK_PAIRS)):
        first, second = pair, pair + pairs
        ids = (sequences[first], sequences[second])
        pair_values = [_as_list(values[row][: lengths[row]]) for row in (first, second)]
        names = _pair_names(answers[pair] if pair < len(answers) else None)
        for sequence, name in enumerate(names):
            rows.append(
                heatmap_row(
                    _labels(encoding, ids[sequence]),
                    pair_values[sequence],
                    f"pair {pair}, {name}{padded_note}",
                )
            )
        difference = aligned_difference(ids[0], pair_values[0], ids[1], pair_values[1])
        rows.append(
            heatmap_row(
                _labels(encoding, ids[0]),
                difference,
                f"pair {pair}, difference inputs - patch_from_inputs "
                "(on the inputs tokens; blank where the two do not align)",
            )
        )
    return rows


def _pair_names(answer: list[str] | None) -> tuple[str, str]:
    if answer is None:
        return "inputs", "patch_from_inputs"
    target, alt = answer
    return f"inputs, answer {target!r}", f"patch_from_inputs, answer {alt!r}"


@cache.memoize()
def _pair_answers(relpath: str, identity: FileIdentity, task: str) -> list[list[str] | None]:
    """Label each stored pair with its answer tokens [target, alt] from the task registry.

    A pair gets None when the registry cannot build the task or builds other token ids than
    the file stores (for example a file written by another pruner or tokenizer).
    """
    viz = _viz(relpath, identity)
    encoding = _encoding(viz)
    try:
        from registry.tasks import get_task

        pairs = get_task(task, encoding).xs_test
    except (KeyError, ValueError, OSError) as err:
        logger.info("building task %r failed, so its samples are not labelled: %s", task, err)
        return []
    tokens = viz.importances["task_samples"][0]
    lengths = task_sample_lengths(viz)
    if lengths is None:
        logger.info("%s stores no sample lengths, so its samples are not labelled", relpath)
        return []
    half = len(lengths) // 2
    sequences = [_as_list(tokens[row][:length]) for row, length in enumerate(lengths)]
    return match_pair_answers(
        sequences[:half], sequences[half:], pairs, lambda token: _labels(encoding, [token])[0]
    )


def match_pair_answers(
    inputs: Sequence[Sequence[int]],
    patched: Sequence[Sequence[int]],
    pairs: Sequence[Any],
    label: Any,
) -> list[list[str] | None]:
    """Return [target, alt] token labels of each stored pair that equals the task pair at its index."""
    answers: list[list[str] | None] = []
    for number, (first, second) in enumerate(zip(inputs, patched, strict=True)):
        pair = pairs[number] if number < len(pairs) else None
        if (
            pair is None
            or list(first) != list(pair.inputs)
            or list(second) != list(pair.patch_from_inputs)
        ):
            answers.append(None)
            continue
        answers.append([label(pair.target_tokid), label(pair.target_alt_tokid)])
    return answers


def node_examples(
    model: str, task: str, sweep: str, k: str, node: str, fraction: str
) -> dict[str, list[dict]]:
    """Build heatmap rows of a node's top and bottom pretraining examples at quantile `fraction`."""
    relpath, identity = viz_relpath(model, task, sweep, k)
    return _node_examples(relpath, identity, str(parse_node_key(node)), fraction)


@cache.memoize()
def _node_examples(
    relpath: str, identity: FileIdentity, node: str, fraction: str
) -> dict[str, list[dict]]:
    viz = _viz(relpath, identity)
    key = parse_node_key(node)
    per_node = _node_values(viz.get("samples", {}).get(key.location, {}), key.index)
    if per_node is None:
        return {"top": [], "bottom": []}
    by_fraction = next((v for f, v in per_node.items() if f"{float(f):g}" == fraction), None)
    if by_fraction is None:
        return {"top": [], "bottom": []}

    encoding = _encoding(viz)
    result = {}
    for name, examples in (("bottom", by_fraction[0]), ("top", by_fraction[1])):
        rows = []
        for number, (tokens, values, position) in enumerate(examples[:EXAMPLES_SHOWN]):
            start, stop = window(len(tokens), int(position), EXAMPLE_RADIUS)
            rows.append(
                heatmap_row(
                    _labels(encoding, _as_list(tokens[start:stop])),
                    _as_list(values[start:stop]),
                    f"{name} example {number}, position {int(position)}",
                    highlight=int(position) - start,
                    highlight_note=EXAMPLE_TOKEN_NOTE,
                )
            )
        result[name] = rows
    return result


def task_samples(model: str, task: str, sweep: str, k: str) -> list[dict[str, Any]]:
    """List the circuit's stored task samples as `{"title", "token_ids", "padded"}` dicts.

    The order is the file's: the `inputs` sequence of every pair, then every `patch_from_inputs`. `padded` is True when the file
    stores no sample lengths, so `token_ids` keeps the padding.
    """
    relpath, identity = viz_relpath(model, task, sweep, k)
    return _task_samples(relpath, identity)


@cache.memoize()
def _task_samples(relpath: str, identity: FileIdentity) -> list[dict[str, Any]]:
    viz = _viz(relpath, identity)
    if viz.importances is None:
        raise DataFileError(f"Store file {relpath} has no importances, so no task samples.")
    tokens = viz.importances["task_samples"][0]  # (samples, pos), right-padded with token 0
    lengths = task_sample_lengths(viz)
    padded = lengths is None
    if padded:
        lengths = [tokens.shape[1]] * tokens.shape[0]
    half = len(lengths) // 2
    samples = []
    for sample, length in enumerate(lengths):
        label = "inputs" if sample < half else "patch_from_inputs"
        pair = sample if sample < half else sample - half
        samples.append(
            {
                "title": f"pair {pair}, {label}",
                "token_ids": [int(token) for token in _as_list(tokens[sample][:length])],
                "padded": padded,
            }
        )
    return samples


def task_sample_lengths(viz: Any) -> list[int] | None:
    """Return the real length of each task sample, or None when the file stores no lengths.

    Samples are right-padded with token 0, and 0 is also a real token id, so lengths are never
    guessed from trailing zeros.
    """
    lengths = viz.task_sample_lengths
    return None if lengths is None else [int(length) for length in lengths.tolist()]
