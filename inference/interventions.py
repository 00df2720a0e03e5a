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


def _channel_mask(channels: Channels, width: int, device: torch.device) -> torch.Tensor:
    """Return a boolean (width,) mask that is True at `channels`."""
    if channels is None:
        return torch.ones(width, dtype=torch.bool, device=device)
    index = torch.as_tensor(channels, dtype=torch.long, device=device).reshape(-1)
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= width):
        raise IndexError(f"channel ids {index.tolist()} out of range for a hook of width {width}")
    mask = torch.zeros(width, dtype=torch.bool, device=device)
    mask[index] = True
    return mask


def replace(value: torch.Tensor, channels: Channels = None) -> Intervention:
    """Set `channels` to `value` (broadcast against the activation, e.g. (B, T, C) or (C,))."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        mask = _channel_mask(channels, x.shape[-1], x.device)
        return torch.where(mask, value.to(device=x.device, dtype=x.dtype), x)

    return fn


def zero_ablate(channels: Channels = None) -> Intervention:
    """Set `channels` to zero."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(_channel_mask(channels, x.shape[-1], x.device), 0.0)

    return fn


def mean_ablate(means: torch.Tensor, channels: Channels = None) -> Intervention:
    """Set `channels` to their mean activation `means` (shape (C,))."""
    return replace(means, channels)


def patch(source: torch.Tensor, channels: Channels = None) -> Intervention:
    """Set `channels` to the activation `source` recorded on another input (same shape)."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        if source.shape != x.shape:
            raise ValueError(
                f"patch source has shape {tuple(source.shape)} but the activation has "
                f"{tuple(x.shape)}; record the source on an input of the same shape"
            )
        return replace(source, channels)(x)

    return fn
