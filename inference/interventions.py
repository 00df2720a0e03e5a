"""Intervention functions for `hook_recorder(interventions=...)`: replace, ablate or patch channels.

Each builder returns `fn(tensor) -> tensor` acting on the last dimension (the channels) of a hook's
activation. `channels=None` means every channel. The functions never modify their input in place, so
recorded activations stay intact.

    with hook_recorder(interventions={"1.attn.v": zero_ablate([3, 7])}):
        logits = model(idx)[0]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from inference.hook_utils import Intervention

Channels = Sequence[int] | torch.Tensor | None


def _channel_index(channels: Channels) -> torch.Tensor | None:
    """Return `channels` as a 1-D LongTensor (None for every channel), raising for non-integers."""
    if channels is None:
        return None
    index = torch.as_tensor(channels)
    if index.numel() == 0:
        return index.long().reshape(-1)  # `torch.as_tensor([])` is float32 but contains no ids
    if index.dtype == torch.bool or index.is_floating_point() or index.is_complex():
        raise TypeError(
            f"channel ids must be integers, got a {index.dtype} tensor {index.tolist()}; "
            "pass a list or LongTensor of channel ids "
            "(for a boolean mask, mask.nonzero().flatten())"
        )
    return index.long().reshape(-1)


def _channel_mask(index: torch.Tensor | None, width: int, device: torch.device) -> torch.Tensor:
    """Return a boolean (width,) mask that is True at the channel ids `index` (None: everywhere)."""
    if index is None:
        return torch.ones(width, dtype=torch.bool, device=device)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= width):
        raise IndexError(
            f"channel ids {index.tolist()} out of range for a hook of width {width}; "
            f"valid ids are 0..{width - 1}"
        )
    mask = torch.zeros(width, dtype=torch.bool, device=device)
    mask[index.to(device)] = True
    return mask


def replace(value: torch.Tensor, channels: Channels = None) -> Intervention:
    """Set `channels` to `value` (broadcast against the activation, e.g. (B, T, C) or (C,))."""
    index = _channel_index(channels)

    def fn(x: torch.Tensor) -> torch.Tensor:
        _check_broadcasts(value, x)
        mask = _channel_mask(index, x.shape[-1], x.device)
        return torch.where(mask, value.to(device=x.device, dtype=x.dtype), x)

    return fn


def _check_broadcasts(value: torch.Tensor, x: torch.Tensor) -> None:
    """Raise unless `value` broadcasts to the shape of the activation `x` without enlarging it."""
    try:
        broadcast = torch.broadcast_shapes(value.shape, x.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != x.shape:
        raise ValueError(
            f"replacement value of shape {tuple(value.shape)} does not broadcast to the "
            f"activation's shape {tuple(x.shape)}; pass one value per channel, shape "
            f"({x.shape[-1]},), or a tensor of the activation's shape"
        )


def zero_ablate(channels: Channels = None) -> Intervention:
    """Set `channels` to zero."""
    index = _channel_index(channels)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(_channel_mask(index, x.shape[-1], x.device), 0.0)

    return fn


def mean_ablate(means: torch.Tensor, channels: Channels = None) -> Intervention:
    """Set `channels` to their mean activation `means` (shape (C,))."""
    return replace(means, channels)


def patch(source: torch.Tensor, channels: Channels = None) -> Intervention:
    """Set `channels` to the activation `source` recorded on another input (same shape)."""
    replace_channels = replace(source, channels)

    def fn(x: torch.Tensor) -> torch.Tensor:
        if source.shape != x.shape:
            raise ValueError(
                f"patch source has shape {tuple(source.shape)} but the activation has "
                f"{tuple(x.shape)}; record the source on an input of the same shape"
            )
        return replace_channels(x)

    return fn
