"""Top and bottom activation examples of circuit nodes on the validation corpus.

For each kept node, every token position of the validation windows is ranked by
the node's activation (full model, nothing ablated). For each fraction f in
`FRACTIONS`, the "top" band is the highest f of all positions and the "bottom"
band the lowest f. Up to `EXAMPLES_PER_BAND` positions are drawn at evenly
spaced ranks within each band. An example is (tokens, activations, position):
the window cut to `CONTEXT_BEFORE` tokens before and `CONTEXT_AFTER` after the
position, and the position's index in that cut.

Examples are stored compactly, because a circuit file contains up to 40 of them
per node for up to `max_detailed_nodes` nodes. Every example's tokens are a view
of one flat copy of the windows (int16 when the vocabulary fits), and its
activations a view of one shared float16 buffer. torch.save writes each buffer
once, and the views load back with weights_only=True.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch

from inference.hook_utils import hook_recorder
from pruning.vizdata import token_storage_dtype, value_storage_dtype

FRACTIONS = (0.001, 0.01, 0.1, 0.5)
EXAMPLES_PER_BAND = 5
# The web app shows 24 tokens on each side of an example's position, so more context is not stored.
CONTEXT_BEFORE = 24
CONTEXT_AFTER = 8
WINDOWS_PER_FORWARD = 32


def _band_ranks(n_positions: int, fraction: float) -> list[int]:
    band = max(1, math.ceil(fraction * n_positions))
    count = min(EXAMPLES_PER_BAND, band)
    return sorted({round(i * (band - 1) / max(1, count - 1)) for i in range(count)})


def _record_kept(model, circuit, locations, windows) -> dict[str, torch.Tensor]:
    """Return location -> (n_windows * window_len, n_kept) activations of the kept nodes."""
    pattern = "|".join(re.escape(loc) for loc in locations)
    parts: dict[str, list[torch.Tensor]] = {loc: [] for loc in locations}
    for start in range(0, len(windows), WINDOWS_PER_FORWARD):
        batch = windows[start : start + WINDOWS_PER_FORWARD]
        with hook_recorder(regex=pattern) as records:
            # Only the activations matter, so unembed one position instead of all of them.
            model(batch, logit_positions=torch.zeros(len(batch), dtype=torch.long))
        for loc in locations:
            parts[loc].append(records[loc][:, :, circuit[loc]])  # (batch, T, n_kept)
    return {loc: torch.cat(parts[loc]).flatten(0, 1) for loc in locations}  # (N * T, n_kept)


def _picked_positions(activations: torch.Tensor) -> tuple[list[list[int]], list[list[int]]]:
    """Return, per node column, the flat positions at the top and the bottom band ranks.

    Ranks are concatenated in `FRACTIONS` order. One batched sort ranks every node at once;
    ties keep the lower position first.
    """
    n_positions = activations.shape[0]
    ranks = torch.tensor([r for f in FRACTIONS for r in _band_ranks(n_positions, f)])
    order = torch.sort(activations.T, dim=1, descending=True, stable=True).indices  # (n_kept, P)
    top = order[:, ranks]
    bottom = order[:, n_positions - 1 - ranks]
    return top.tolist(), bottom.tolist()


@torch.no_grad()
def activation_examples(model, circuit: Mapping[str, torch.Tensor], windows: torch.Tensor) -> dict:
    """Return location -> node id -> fraction -> [bottom, top] examples for every kept node."""
    locations = [loc for loc, ids in circuit.items() if len(ids)]
    if not locations:
        return {}
    recorded = _record_kept(model, circuit, locations, windows)
    window_len = windows.shape[1]
    token_buffer = windows.flatten().to(token_storage_dtype(model.config.vocab_size))
    band_sizes = [len(_band_ranks(token_buffer.numel(), f)) for f in FRACTIONS]

    # Bands list example numbers until _build_examples turns them into tuples.
    samples: dict = {}
    cuts: list[tuple[int, int, int]] = []  # (start, end, position) of each distinct example
    value_pieces: list[torch.Tensor] = []
    for loc in locations:
        activations = recorded[loc]
        top, bottom = _picked_positions(activations)
        samples[loc] = {}
        for column, node in enumerate(circuit[loc].tolist()):
            number_of_position: dict[int, int] = {}  # the top rank recurs in every band
            sides = [[], []]
            for side, flat_positions in zip(sides, (bottom[column], top[column]), strict=True):
                for flat in flat_positions:
                    if flat not in number_of_position:
                        number_of_position[flat] = len(cuts)
                        cut = _cut(flat, window_len)
                        cuts.append(cut)
                        value_pieces.append(activations[cut[0] : cut[1], column])
                    side.append(number_of_position[flat])
            samples[loc][node] = _split_bands(sides, band_sizes)
    _build_examples(samples, cuts, token_buffer, value_pieces)
    return samples


def _cut(flat: int, window_len: int) -> tuple[int, int, int]:
    """Return the flat [start, end) of an example's context and its position inside that cut."""
    row, position = divmod(flat, window_len)
    start = row * window_len + max(0, position - CONTEXT_BEFORE)
    end = row * window_len + min(window_len, position + CONTEXT_AFTER + 1)
    return start, end, flat - start


def _split_bands(sides: list[list], band_sizes: list[int]) -> dict:
    """Split the [bottom, top] example lists, concatenated over fractions, into fraction bands."""
    bands = {}
    offset = 0
    for fraction, size in zip(FRACTIONS, band_sizes, strict=True):
        bands[fraction] = [side[offset : offset + size] for side in sides]
        offset += size
    return bands


def _build_examples(samples: dict, cuts: list, token_buffer, value_pieces: list) -> None:
    """Replace every example number in `samples` by its (tokens, values, position), in place.

    An example that appears in several bands is one tuple object, and examples of several nodes
    at the same place share one tokens view. torch.save (through pickle's memo) writes each object
    once, which matters because a view costs about 64 bytes of pickle (torch 2.13), more than the
    data of a 33-token float16 example.
    """
    joined = torch.cat(value_pieces)
    value_buffer = joined.to(value_storage_dtype(joined))
    token_views: dict[tuple[int, int], torch.Tensor] = {}
    examples = []
    offset = 0
    for start, end, position in cuts:
        if (start, end) not in token_views:
            token_views[start, end] = token_buffer[start:end]
        values = value_buffer[offset : offset + end - start]
        examples.append((token_views[start, end], values, position))
        offset += end - start
    for per_node in samples.values():
        for bands in per_node.values():
            for fraction, pair in bands.items():
                bands[fraction] = [[examples[number] for number in side] for side in pair]
