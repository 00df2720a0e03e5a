"""Node keys of a circuit: `<layer>.<block>.<name>:<index>`, e.g. `3.attn.q:17` or `0.mlp.post_act:5`.

A node is one channel at one hook location. q/k/v channels are numbered across all heads, so channel
`c` of head `h` is index `h * d_head + c`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Hook locations of one layer that carry circuit nodes, in the order the graph stacks them (bottom up).
ATTN_SUFFIXES = ("attn.act_in", "attn.q", "attn.k", "attn.v", "attn.resid_delta")
MLP_SUFFIXES = ("mlp.act_in", "mlp.post_act", "mlp.resid_delta")
LOCATION_SUFFIXES = ATTN_SUFFIXES + MLP_SUFFIXES
QKV_SUFFIXES = ("attn.q", "attn.k", "attn.v")

_LOCATION_RE = re.compile(
    r"(\d{1,3})\.(" + "|".join(re.escape(s) for s in LOCATION_SUFFIXES) + r")"
)
_NODE_RE = re.compile(_LOCATION_RE.pattern + r":(\d{1,7})")


@dataclass(frozen=True, order=True)
class NodeKey:
    """One channel (`index`) at one hook location (`location`, e.g. `3.attn.q`)."""

    location: str
    index: int

    def __str__(self) -> str:
        return f"{self.location}:{self.index}"

    @property
    def layer(self) -> int:
        return int(self.location.split(".", 1)[0])

    @property
    def suffix(self) -> str:
        """The location without its layer, e.g. `attn.q`."""
        return self.location.split(".", 1)[1]


def is_location(text: str) -> bool:
    """Return whether `text` is a node location such as `2.mlp.post_act` (layer not range-checked)."""
    return _LOCATION_RE.fullmatch(text) is not None


def parse_node_key(text: str) -> NodeKey:
    """Parse `3.attn.q:17` into a NodeKey; raise ValueError naming the text and the expected form."""
    if not isinstance(text, str):
        raise ValueError(f"invalid node {text!r}: expected a string such as '0.attn.q:3'")
    match = _NODE_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"invalid node {text!r}: expected <layer>.<location>:<index>, e.g. '0.attn.q:3', "
            f"with a location out of {', '.join(LOCATION_SUFFIXES)}"
        )
    layer, suffix, index = match.groups()
    return NodeKey(f"{int(layer)}.{suffix}", int(index))


def layer_locations(n_layer: int) -> list[str]:
    """List every node location of a model with `n_layer` layers, bottom layer first."""
    return [f"{layer}.{suffix}" for layer in range(n_layer) for suffix in LOCATION_SUFFIXES]


def head_and_channel(node: NodeKey, d_head: int) -> tuple[int, int] | None:
    """Return the (head, channel within head) of a q/k/v node, or None for other locations."""
    if node.suffix not in QKV_SUFFIXES:
        return None
    return divmod(node.index, d_head)


def describe_node(node: NodeKey, d_head: int) -> str:
    """Label a node: `3.attn.q:17 (head 1, channel 1)` for q/k/v, else the key itself."""
    head_channel = head_and_channel(node, d_head)
    if head_channel is None:
        return str(node)
    head, channel = head_channel
    return f"{node} (head {head}, channel {channel})"
