"""Live next-token predictions for the per-token page: the full model and a circuit alone.

For the circuit, every node outside it is set to its mean activation
(`inference.next_token.top_next_tokens`, which runs `inference.circuit.apply_circuit`). The means
are the circuit file's `ablation_means` when it stores them, as this project's pruner writes them.
Upstream files have none, so the means are then computed as the pruner computes them
(`pruning.means`): the average over MEAN_WINDOWS windows of WINDOW_LEN tokens from the validation
split of the standard-library corpus, cached on disk and once per worker.

Results are JSON-native lists of `{"token_id", "label", "probability", "logit"}`, memoized in the
shared cache by model, circuit and file identities, token ids and position.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from registry import catalogue
from webapp.cache import FileIdentity, cache
from webapp.circuit_data import _viz, viz_relpath
from webapp.data import _loaded_model, file_identity, get_store, model_summary
from webapp.nodes import is_location

logger = logging.getLogger(__name__)

TOP_COUNT = 5
# A quarter of the pruner's default windows (`python -m pruning --mean-windows 256`), because a
# page request waits for this forward pass once per model file. Upstream's means came from its
# own pretraining data, so the circuit-alone predictions of its files are an approximation anyway.
MEAN_WINDOWS = 64
WINDOW_LEN = 128
MEANS_STORED = "stored"
MEANS_COMPUTED = "computed"


def top_tokens(
    model: str, token_ids: list[int], position: int, also: tuple[int, ...] = ()
) -> list[dict[str, Any]]:
    """Return the full model's TOP_COUNT most likely tokens after `position` of `token_ids`.

    Then one entry for each token id in `also` (`inference.next_token.top_next_tokens`).
    """
    identity = _model_identity(model, token_ids)
    return _top_tokens(model, identity, tuple(token_ids), position, None, None, tuple(also))


def circuit_top_tokens(
    model: str,
    circuit: tuple[str, str, str],
    token_ids: list[int],
    position: int,
    also: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Return the top tokens of the circuit `(task, sweep, k)` of `model` alone, with the means' source.

    Returns `{"predictions": [...], "means": MEANS_STORED or MEANS_COMPUTED}`. Raises
    CatalogueError for a circuit the store does not list and DataFileError for a malformed file.
    """
    identity = _model_identity(model, token_ids)
    relpath, viz_identity = viz_relpath(model, *circuit)
    source = MEANS_STORED if _viz(relpath, viz_identity).ablation_means is not None else None
    predictions = _top_tokens(
        model, identity, tuple(token_ids), position, relpath, viz_identity, tuple(also)
    )
    return {"predictions": predictions, "means": source or MEANS_COMPUTED}


def _model_identity(model: str, token_ids: list[int]) -> FileIdentity:
    """Check the model and the token ids; return the weights file's identity."""
    catalogue.check_model(model, get_store())
    block_size = model_summary(model)["block_size"]
    if not token_ids:
        raise ValueError("the sequence has no tokens")
    if len(token_ids) > block_size:
        raise ValueError(
            f"the sequence is {len(token_ids)} tokens long but {model} reads at most "
            f"{block_size} (block_size)"
        )
    _, identity = file_identity(f"models/{model}/final_model.pt")
    return identity


@cache.memoize()
def _top_tokens(
    model: str,
    identity: FileIdentity,
    token_ids: tuple[int, ...],
    position: int,
    viz_path: str | None,
    viz_identity: FileIdentity | None,
    also: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    import torch

    from inference.next_token import top_next_tokens
    from registry.tokenizer import get_encoding, token_label

    gpt = _loaded_model(model, identity)
    idx = torch.tensor([token_ids], dtype=torch.long)  # (1, pos)
    if viz_path is None:
        predictions = top_next_tokens(gpt, idx, position, TOP_COUNT, also=also)
    else:
        circuit, means = _circuit_and_means(model, identity, viz_path, viz_identity)
        predictions = top_next_tokens(
            gpt, idx, position, TOP_COUNT, circuit=circuit, means=means, also=also
        )

    encoding = get_encoding(model_summary(model)["tokenizer_name"], get_store())
    return [
        {
            "token_id": prediction.token_id,
            "label": token_label(encoding, prediction.token_id),
            "probability": prediction.probability,
            "logit": prediction.logit,
        }
        for prediction in predictions
    ]


def _circuit_and_means(
    model: str, identity: FileIdentity, viz_path: str, viz_identity: FileIdentity
) -> tuple[dict, dict]:
    """Return the circuit's kept nodes (node locations only) and the means for the rest."""
    viz = _viz(viz_path, viz_identity)
    circuit = {
        location: kept for location, kept in viz.circuit_data.items() if is_location(location)
    }
    if viz.ablation_means is not None:
        return circuit, viz.ablation_means
    logger.info("%s stores no ablation means; using means computed for %s", viz_path, model)
    return circuit, _computed_means(model, identity)


@functools.lru_cache(maxsize=2)
def _computed_means(model: str, identity: FileIdentity) -> dict:
    """Compute (or read from the disk cache of `pruning.means`) the mean activation of every node.

    NOTE: this runs inside a page request, and each worker first lists and encodes the corpus's
    validation split, because the disk cache key includes the windows' tokens. On a 2-core machine
    shared with a training run, that listing took 825 s, then encoding and the forward pass on the
    embedded model 21 s. A first request can thus exceed gunicorn's 120 s timeout. Circuit files
    that store ablation_means, as this project's pruner writes them, never get here.
    """
    from pruning.means import cached_means, model_file_identity, validation_windows
    from registry.tokenizer import get_encoding

    summary = model_summary(model)
    file_identity(f"models/{model}/beeg_config.json")  # a remote store downloads it beside weights
    gpt = _loaded_model(model, identity)
    encoding = get_encoding(summary["tokenizer_name"], get_store())
    windows = validation_windows(encoding, MEAN_WINDOWS, min(WINDOW_LEN, summary["block_size"]))
    logger.info("computing ablation means of %s over %d windows", model, len(windows))
    return cached_means(gpt, windows, identity=model_file_identity(Path(identity.path).parent))
