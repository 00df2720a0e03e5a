"""Live attention patterns of a q, k or v node: its head's pattern and its channel's share of it.

The model runs on the CPU on one token sequence (`inference.attention.record_head`). Results are
JSON-native and memoized in the shared cache, keyed by the model id, the weights file's identity,
the node and the token ids. Matrices are (query pos, key pos) lists, with None for the entries
above the diagonal that causal attention never reads.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from registry import catalogue
from webapp.cache import FileIdentity, cache
from webapp.data import _loaded_model, file_identity, get_store, model_summary
from webapp.live import check_channel, model_locations
from webapp.nodes import QKV_SUFFIXES, head_and_channel, parse_node_key

logger = logging.getLogger(__name__)


def node_attention(model: str, node: str, token_ids: list[int]) -> dict[str, Any]:
    """Compute the attention views of q/k/v node `node` on one token sequence.

    Returns a dict with `node`, `suffix` (`attn.q`, `attn.k` or `attn.v`), `head`, `channel`
    (within the head), `labels` (one token label per position), `sink` (whether the model has an
    attention sink), `head_pattern` (softmax probabilities) and `channel_pattern`. For q and k,
    `channel_pattern` is the channel's contribution to the attention scores
    (q[i, c] * k[j, c] / sqrt(d_head)). For v it is the attention-weighted value p[i, j] * v[j, c],
    and `values` (v[j, c] per token) and `outputs` (the head output y[i, c], the row sums) are added.

    Raises ValueError for a node that is not a q/k/v node of `model` or an empty sequence.
    """
    catalogue.check_model(model, get_store())
    key = parse_node_key(node)
    if key.suffix not in QKV_SUFFIXES:
        raise ValueError(f"node {node} is not a q, k or v node, so it has no attention pattern")
    if key.location not in model_locations(model):
        raise ValueError(f"{key.location} is not a location of {model}")
    check_channel(model, key.location, key.index)
    if not token_ids:
        raise ValueError("the task sample has no tokens")
    if len(token_ids) > model_summary(model)["block_size"]:
        raise ValueError(
            f"the task sample is {len(token_ids)} tokens long but {model} reads at most "
            f"{model_summary(model)['block_size']} (block_size)"
        )
    _, identity = file_identity(f"models/{model}/final_model.pt")
    return _node_attention(model, identity, str(key), tuple(int(t) for t in token_ids))


@cache.memoize()
def _node_attention(
    model: str, identity: FileIdentity, node: str, token_ids: tuple[int, ...]
) -> dict[str, Any]:
    import torch

    from inference.attention import (
        channel_score_contributions,
        head_output,
        record_head,
        weighted_value_contributions,
    )
    from registry.tokenizer import get_encoding, token_label

    key = parse_node_key(node)
    summary = model_summary(model)
    head, channel = head_and_channel(key, summary["d_head"])
    gpt = _loaded_model(model, identity)
    idx = torch.tensor([token_ids], dtype=torch.long)  # (1, pos)
    recorded = record_head(gpt, idx, key.layer, head)

    encoding = get_encoding(summary["tokenizer_name"], get_store())
    result = {
        "node": node,
        "suffix": key.suffix,
        "head": head,
        "channel": channel,
        "labels": [token_label(encoding, token_id) for token_id in token_ids],
        "sink": recorded.sink_logit is not None,
        "head_pattern": _matrix(recorded.probs),
    }
    if key.suffix == "attn.v":
        weighted = weighted_value_contributions(recorded.probs, recorded.v, channel)
        result["channel_pattern"] = _matrix(weighted)
        result["values"] = recorded.v[:, channel].tolist()
        result["outputs"] = head_output(recorded.probs, recorded.v)[:, channel].tolist()
    else:
        contributions = channel_score_contributions(recorded.q, recorded.k, channel)
        result["channel_pattern"] = _matrix(contributions)
    return result


def _matrix(tensor: Any) -> list[list[float | None]]:
    """Convert a (pos, pos) tensor to nested lists, with None for NaN (JSON has no NaN)."""
    return [[None if math.isnan(value) else value for value in row] for row in tensor.tolist()]
