"""Top and bottom activation examples of circuit nodes on the validation corpus.

For each kept node, every token position of the validation windows is ranked by
the node's activation (full model, nothing ablated). For each fraction f in
`FRACTIONS`, the "top" band is the highest f of all positions and the "bottom"
band the lowest f. Up to `EXAMPLES_PER_BAND` positions are drawn at evenly
spaced ranks within each band. An example is (tokens, activations, position):
the window cut to `CONTEXT_BEFORE` tokens before and `CONTEXT_AFTER` after the
position, and the position's index in that cut.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from inference.hook_utils import hook_recorder

FRACTIONS = (0.001, 0.01, 0.1, 0.5)
EXAMPLES_PER_BAND = 5
CONTEXT_BEFORE = 32
CONTEXT_AFTER = 8
WINDOWS_PER_FORWARD = 32


def _band_ranks(n_positions: int, fraction: float) -> list[int]:
    band = max(1, math.ceil(fraction * n_positions))
    count = min(EXAMPLES_PER_BAND, band)
    return sorted({round(i * (band - 1) / max(1, count - 1)) for i in range(count)})


def _example(windows, activations, flat_index: int) -> tuple:
    window_len = windows.shape[1]
    row, position = divmod(flat_index, window_len)
    start = max(0, position - CONTEXT_BEFORE)
    end = min(window_len, position + CONTEXT_AFTER + 1)
    tokens = windows[row, start:end].to(torch.int32)
    values = activations[row, start:end].float()
    return (tokens, values, position - start)


def _node_examples(windows: torch.Tensor, activations: torch.Tensor) -> dict:
    """Return fraction -> [bottom examples, top examples] for one node's (N, T) activations."""
    order = torch.argsort(activations.flatten(), descending=True, stable=True)
    n_positions = order.numel()
    bands = {}
    for fraction in FRACTIONS:
        ranks = _band_ranks(n_positions, fraction)
        top = [_example(windows, activations, int(order[r])) for r in ranks]
        bottom = [_example(windows, activations, int(order[n_positions - 1 - r])) for r in ranks]
        bands[fraction] = [bottom, top]
    return bands


@torch.no_grad()
def activation_examples(model, circuit: Mapping[str, torch.Tensor], windows: torch.Tensor) -> dict:
    """Return location -> node id -> fraction -> [bottom, top] examples for every kept node."""
    locations = [loc for loc, ids in circuit.items() if len(ids)]
    if not locations:
        return {}
    pattern = "|".join(re.escape(loc) for loc in locations)
    kept: dict[str, list[torch.Tensor]] = {loc: [] for loc in locations}
    for start in range(0, len(windows), WINDOWS_PER_FORWARD):
        with hook_recorder(regex=pattern) as records:
            model(windows[start : start + WINDOWS_PER_FORWARD])
        for loc in locations:
            kept[loc].append(records[loc][:, :, circuit[loc]])  # (batch, T, n_kept)

    samples = {}
    for loc in locations:
        activations = torch.cat(kept[loc])  # (N, T, n_kept)
        samples[loc] = {
            int(node): _node_examples(windows, activations[:, :, column])
            for column, node in enumerate(circuit[loc])
        }
    _share_storage(samples)
    return samples


def _share_storage(samples: dict) -> None:
    """Make every example's tensors views of two shared buffers, in place.

    torch.save writes each distinct storage as its own archive entry, so tens of
    thousands of small tensors cost more in overhead than in data. Views of one
    buffer are saved as one entry and load back as views with weights_only=True.
    """
    sides = [
        side
        for per_node in samples.values()
        for bands in per_node.values()
        for pair in bands.values()
        for side in pair
    ]
    examples = [example for side in sides for example in side]
    if not examples:
        return
    token_buffer = torch.cat([tokens for tokens, _, _ in examples])
    value_buffer = torch.cat([values for _, values, _ in examples])
    offset = 0
    for side in sides:
        for index, (tokens, _, position) in enumerate(side):
            end = offset + tokens.numel()
            side[index] = (token_buffer[offset:end], value_buffer[offset:end], position)
            offset = end
