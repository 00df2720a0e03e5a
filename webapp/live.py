"""Live activations for the per-token page: run a store model on a task sample or typed text.

The model is loaded lazily, once per worker and weights file (`webapp.data.loaded_model`), and runs
on the CPU under `inference.hook_utils.hook_recorder`, recording only the requested location.
Inputs are bounded: text must encode to at most `block_size` tokens.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import Any

from registry import catalogue
from webapp.cache import FileIdentity, cache
from webapp.data import _loaded_model, file_identity, get_store, model_summary
from webapp.heatmap import heatmap_row
from webapp.nodes import QKV_SUFFIXES, layer_locations, parse_node_key

logger = logging.getLogger(__name__)


def model_locations(model: str) -> list[str]:
    """List every node location of a catalogue model, bottom layer first."""
    return layer_locations(model_summary(model)["n_layer"])


def location_width(model: str, location: str) -> int:
    """Return the number of channels at `location` (e.g. `0.attn.q`) of a catalogue model."""
    if location not in model_locations(model):
        raise ValueError(f"{location} is not a location of {model}")
    summary = model_summary(model)
    suffix = location.split(".", 1)[1]
    if suffix in QKV_SUFFIXES:
        return summary["n_head"] * summary["d_head"]
    if suffix == "mlp.post_act":
        return summary["d_mlp"]
    return summary["d_model"]


def check_channel(model: str, location: str, channel: int) -> int:
    """Return `channel`; raise ValueError giving the allowed range when it is out of range."""
    width = location_width(model, location)
    if not 0 <= channel < width:
        raise ValueError(
            f"channel {channel} is out of range: {location} of {model} has channels "
            f"0 to {width - 1}"
        )
    return channel


def _encoding(model: str) -> Any:
    from registry.tokenizer import get_encoding

    return get_encoding(model_summary(model)["tokenizer_name"], get_store())


def token_labels(model: str, token_ids: list[int]) -> list[str]:
    """Return the label of each token id in `model`'s tokenizer (escaped bytes for partial UTF-8)."""
    from registry.tokenizer import token_label

    encoding = _encoding(model)
    return [token_label(encoding, token_id) for token_id in token_ids]


def list_task_names() -> list[str]:
    """List the tasks whose samples the per-token page can show."""
    from registry.tasks import list_task_names as registry_task_names

    return registry_task_names()


@functools.lru_cache(maxsize=16)
def _task(name: str, encoding_name: str) -> Any:
    # Encodings are built once per store, so the (task, encoding name) pair identifies the task.
    from registry.tasks import get_task
    from registry.tokenizer import get_encoding

    return get_task(name, get_encoding(encoding_name, get_store()))


def _test_pair(model: str, task: str, sample: int) -> Any:
    """Return test pair `sample` of `task` (a Datapoint), tokenized for `model`.

    Raises ValueError naming the task or the sample index when either is out of range.
    """
    if task not in list_task_names():
        raise ValueError(
            f"unknown task {task!r}: there are no samples of it; pick another task or type text"
        )
    encoding_name = model_summary(model)["tokenizer_name"]
    try:
        pairs = _task(task, encoding_name).xs_test
    except KeyError as err:
        raise ValueError(f"task {task!r} cannot be built: {err}") from err
    if not 0 <= sample < len(pairs):
        raise ValueError(f"sample {sample} is out of range: task {task!r} has {len(pairs)} pairs")
    return pairs[sample]


def task_sample(model: str, task: str, sample: int) -> list[tuple[str, list[int]]]:
    """Return the two sequences of test pair `sample` of `task`, tokenized for `model`.

    Raises ValueError naming the task or the sample index when either is out of range.
    """
    pair = _test_pair(model, task, sample)
    return [
        ("first sequence", list(pair.inputs)),
        ("second sequence", list(pair.patch_from_inputs)),
    ]


def task_answers(model: str, task: str, sample: int) -> tuple[int, int]:
    """Return the answer token ids of test pair `sample` of `task`: (first sequence's, second's).

    Raises ValueError like `task_sample`.
    """
    pair = _test_pair(model, task, sample)
    return pair.target_tokid, pair.target_alt_tokid


def encode_text(model: str, text: str) -> list[int]:
    """Tokenize `text` for `model`; raise ValueError when it is empty or exceeds block_size."""
    if not isinstance(text, str):
        raise ValueError(f"invalid text {text!r}: expected a string")
    block_size = model_summary(model)["block_size"]
    token_ids = _encoding(model).encode(text, disallowed_special=())
    if not token_ids:
        raise ValueError("the text is empty; type some code to run the model on")
    if len(token_ids) > block_size:
        raise ValueError(
            f"the text is {len(token_ids)} tokens long but {model} reads at most "
            f"{block_size} (block_size); shorten it"
        )
    return token_ids


def input_sequences(
    model: str, source: str, task: str | None, sample: Any, text: Any
) -> list[tuple[str, list[int]]]:
    """Return the (title, token ids) sequences the per-token page runs on.

    With `source` "text" that is the encoded `text`; otherwise the two sequences of test pair
    `sample` of `task`. Raises ValueError naming a missing task or an invalid text or sample.
    """
    if source == "text":
        return [("text", encode_text(model, text or ""))]
    if not task:
        raise ValueError("pick a task")
    return task_sample(model, task, int(sample or 0))


def node_activation_rows(model: str, node: str, sequences: list[tuple[str, list[int]]]) -> list:
    """Build heatmap rows of the node's activation at every token of each (title, ids) sequence."""
    catalogue.check_model(model, get_store())
    key = parse_node_key(node)
    if key.location not in model_locations(model):
        raise ValueError(f"{key.location} is not a location of {model}")
    _, identity = file_identity(f"models/{model}/final_model.pt")
    encoding = _encoding(model)

    from registry.tokenizer import token_label

    rows = []
    for title, token_ids in sequences:
        values = _activations(model, identity, key.location, key.index, tuple(token_ids))
        labels = [token_label(encoding, token_id) for token_id in token_ids]
        rows.append(heatmap_row(labels, values, title))
    return rows


@cache.memoize()
def _activations(
    model: str, identity: FileIdentity, location: str, index: int, token_ids: tuple[int, ...]
) -> list[float]:
    import torch

    from inference.hook_utils import hook_recorder

    gpt = _loaded_model(model, identity)
    idx = torch.tensor([token_ids], dtype=torch.long)  # (1, T)
    with torch.no_grad(), hook_recorder(regex=re.escape(location)) as records:
        gpt(idx)
    recorded = records[location]  # (1, T, width)
    width = recorded.shape[-1]
    if index >= width:
        raise ValueError(f"channel {index} is out of range: {location} has {width} channels")
    return recorded[0, :, index].float().tolist()
