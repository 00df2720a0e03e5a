"""Data and figures of the embeddings page: one residual channel's token and position embeddings.

For a residual channel c, the token embedding `transformer.wte.weight[:, c]` measures how strongly each
token writes to c at the input. The page lists the 20 tokens with the largest and smallest weights,
draws a histogram of all of them, and shows the whole position embedding `transformer.wpe.weight` as
a heatmap on a symmetric log scale. Only these two tensors are read from the memory-mapped checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from registry import catalogue
from webapp.cache import FileIdentity, cache
from webapp.data import DataFileError, file_identity, get_store, model_summary

TOP_TOKENS = 20
WTE_KEY = "transformer.wte.weight"
WPE_KEY = "transformer.wpe.weight"


def embedding_view(model: str, channel: int) -> dict[str, Any]:
    """Return the channel's top/bottom tokens, all its token weights and the position embedding.

    Raises CatalogueError for a model the store does not list and ValueError for a channel outside
    [0, d_model), before any file is read.
    """
    catalogue.check_model(model, get_store())
    d_model = int(model_summary(model)["d_model"])
    if not 0 <= channel < d_model:
        raise ValueError(
            f"channel {channel} is out of range; {model} has channels 0 to {d_model - 1}"
        )
    relpath = f"models/{model}/final_model.pt"
    _, identity = file_identity(relpath)
    return _embedding_view(relpath, identity, model, channel)


@cache.memoize()
def _embedding_view(relpath: str, identity: FileIdentity, model: str, channel: int) -> dict:
    from inference.loading import CheckpointError, read_state_dict
    from registry.tokenizer import get_encoding, token_label

    try:
        state = read_state_dict(identity.path, mmap=True)
    except CheckpointError as err:
        raise DataFileError(f"Malformed store file {relpath}: {err}") from err
    if WTE_KEY not in state or WPE_KEY not in state:
        raise DataFileError(f"Store file {relpath} has no {WTE_KEY} or {WPE_KEY}")

    weights = state[WTE_KEY][:, channel].float()  # (vocab_size,)
    encoding = get_encoding(model_summary(model)["tokenizer_name"], get_store())
    order = weights.argsort(descending=True).tolist()

    def rows(ids: list[int]) -> list[dict]:
        return [
            {"token_id": i, "token": token_label(encoding, i), "weight": float(weights[i])}
            for i in ids
        ]

    return {
        "top": rows(order[:TOP_TOKENS]),
        "bottom": rows(order[::-1][:TOP_TOKENS]),
        "weights": weights.tolist(),
        "positions": state[WPE_KEY].float().tolist(),  # (block_size, d_model or d_pos_emb)
    }


def symlog(value: float, linear_width: float) -> float:
    """Symmetric log: sign(x) * log10(1 + |x| / linear_width), linear near zero, signed."""
    return math.copysign(math.log10(1.0 + abs(value) / linear_width), value)


def symlog_ticks(
    linear_width: float, limit: float, count: int = 6
) -> tuple[list[float], list[str]]:
    """Choose colour-bar ticks for a symlog scale: positions in symlog units, labels in weights.

    The labelled weights are 0 and 1, 2 or 5 times a power of 10, from half of `linear_width` up
    to the weight whose symlog is `limit`. Going down from the largest, a weight gets a tick when
    its symlog lies at least `limit / count` from the previous tick and from 0. So at most `count`
    ticks show on each side of 0.
    """
    largest = linear_width * (10.0**limit - 1.0)  # the inverse of symlog at `limit`
    candidates = [
        mantissa * 10.0**exponent
        for exponent in range(
            math.floor(math.log10(linear_width / 2)), math.ceil(math.log10(largest)) + 1
        )
        for mantissa in (1, 2, 5)
    ]
    gap = limit / count
    labelled: list[float] = []
    for weight in sorted((w for w in candidates if linear_width / 2 <= w <= largest), reverse=True):
        position = symlog(weight, linear_width)
        previous = symlog(labelled[-1], linear_width) if labelled else math.inf
        if previous - position >= gap and position >= gap:
            labelled.append(weight)
    weights = [-w for w in labelled] + [0.0] + labelled[::-1]
    tickvals = [symlog(w, linear_width) for w in weights]
    ticktext = [f"{w:.2g}".replace("-", "\u2212") for w in weights]
    return tickvals, ticktext


def weight_histogram(weights: list[float], channel: int) -> go.Figure:
    """Histogram of one channel's token-embedding weights over the whole vocabulary."""
    figure = go.Figure(go.Histogram(x=weights, nbinsx=80))
    figure.update_layout(
        title=f"token embedding weights of residual channel {channel}",
        xaxis_title="weight",
        yaxis_title="tokens",
        yaxis_type="log",
        margin=dict(l=50, r=20, t=50, b=40),
        height=320,
    )
    return figure


def position_heatmap(positions: list[list[float]], channel: int | None) -> go.Figure:
    """Heatmap of the position embedding (position x channel) on a symmetric log colour scale."""
    magnitudes = sorted(abs(v) for row in positions for v in row if v != 0)
    linear_width = magnitudes[len(magnitudes) // 2] if magnitudes else 1.0  # median |weight|
    z = [[symlog(v, linear_width) for v in row] for row in positions]
    limit = max((abs(v) for row in z for v in row), default=1.0) or 1.0
    tickvals, ticktext = symlog_ticks(linear_width, limit)
    figure = go.Figure(
        go.Heatmap(
            z=z,
            customdata=positions,
            colorscale="RdBu",
            zmid=0,
            zmin=-limit,
            zmax=limit,
            hovertemplate="position %{y}, channel %{x}<br>weight %{customdata:.4g}<extra></extra>",
            # The colours follow symlog(weight), but the ticks name the weights themselves.
            colorbar=dict(title="weight", tickvals=tickvals, ticktext=ticktext),
        )
    )
    if channel is not None and positions and channel < len(positions[0]):
        figure.add_vline(x=channel, line_width=1, line_dash="dot")
    figure.update_layout(
        title=f"position embedding (symmetric log, linear within {linear_width:.2g})",
        xaxis_title="channel",
        yaxis_title="position",
        margin=dict(l=50, r=20, t=50, b=40),
        height=420,
    )
    return figure
