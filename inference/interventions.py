"""Intervention functions for `hook_recorder(interventions=...)`: replace, ablate or patch channels.

Each builder returns `fn(tensor) -> tensor` acting on the last dimension (the channels) of a hook's
activation. `channels` is a list, tuple or 1-D tensor of integer channel ids, a single id, or None
for every channel. Floats (3.0 included), bools and 2-D input are rejected, as
`inference.checks.channel_ids` describes. The functions never modify their input in place, so
recorded activations stay intact.

Each builder checks the types of its arguments when called. Shapes are checked against the
activation at each forward pass. The channel ids are checked against the activation's width on
the first pass with that width, raising `OutOfRangeError` (an IndexError and a ValueError).

    with hook_recorder(interventions={"1.attn.v": zero_ablate([3, 7])}):
        logits = model(idx)[0]
"""

from __future__ import annotations

import numbers
import reprlib
from collections.abc import Callable, Sequence

import torch

from inference.checks import channel_ids, check_channel_range
from inference.hook_utils import Intervention

Channels = Sequence[int] | torch.Tensor | None
Value = torch.Tensor | float | Sequence[float]


def _channel_index(channels: Channels) -> torch.Tensor | None:
    """Return `channels` as a 1-D LongTensor on the CPU, or None for every channel."""
    if channels is None:
        return None
    return channel_ids(channels, "channels")


def _channel_masks(index: torch.Tensor | None) -> Callable[[int, torch.device], torch.Tensor]:
    """Return `mask_for(width, device)`: a boolean (width,) mask, True at the ids `index`.

    Each mask is built, and the ids checked against `width`, on the first forward pass that needs
    that (width, device) pair. Later passes reuse it, so they copy nothing to the device.
    Raises `OutOfRangeError` (an IndexError and a ValueError) for an id outside 0..width-1.
    """
    masks: dict[tuple[int, torch.device], torch.Tensor] = {}

    def mask_for(width: int, device: torch.device) -> torch.Tensor:
        mask = masks.get((width, device))
        if mask is not None:
            return mask
        if index is None:
            mask = torch.ones(width, dtype=torch.bool, device=device)
        else:
            check_channel_range(index, width, "channels", "the hook")
            mask = torch.zeros(width, dtype=torch.bool)
            mask[index] = True
            mask = mask.to(device)
        masks[(width, device)] = mask
        return mask

    return mask_for


def _value_tensor(value: Value, name: str) -> torch.Tensor:
    """Return `value` as a tensor, converting a number or a list of numbers with torch.as_tensor.

    Raises TypeError naming the argument `name` for anything else (a dict, a string, a set).
    """
    if isinstance(value, torch.Tensor):
        return value
    expected = "a tensor, a number or a list of numbers"
    if isinstance(value, bool) or not isinstance(value, numbers.Real | list | tuple):
        raise TypeError(f"{name} must be {expected}; got {type(value).__name__}")
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} {reprlib.repr(value)} cannot be converted to a tensor ({err}); pass {expected}"
        ) from err
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must hold real numbers; got {reprlib.repr(value)}")
    return tensor


def replace(value: Value, channels: Channels = None) -> Intervention:
    """Set `channels` to `value` (broadcast against the activation, e.g. (B, T, C) or (C,)).

    `value` is a tensor, a number or a (nested) list of numbers. Numbers and lists are converted
    with `torch.as_tensor`. The value is cast to the activation's dtype and device on the first
    forward pass that needs that pair, and the copy is reused. So changing a tensor `value` in
    place afterwards reaches only activations of the tensor's own dtype and device.
    """
    value = _value_tensor(value, "replacement value")
    mask_for = _channel_masks(_channel_index(channels))
    values: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def fn(x: torch.Tensor) -> torch.Tensor:
        _check_broadcasts(value, x)
        key = (x.device, x.dtype)
        if key not in values:
            values[key] = value.to(device=x.device, dtype=x.dtype)
        return torch.where(mask_for(x.shape[-1], x.device), values[key], x)

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
    mask_for = _channel_masks(_channel_index(channels))

    def fn(x: torch.Tensor) -> torch.Tensor:
        return x.masked_fill(mask_for(x.shape[-1], x.device), 0.0)

    return fn


def mean_ablate(means: Value, channels: Channels = None) -> Intervention:
    """Set `channels` to their mean activation `means` (shape (C,)).

    Like `replace`, it accepts a tensor, a number or a list of numbers.
    """
    return replace(_value_tensor(means, "means"), channels)


def patch(source: torch.Tensor, channels: Channels = None) -> Intervention:
    """Set `channels` to the activation `source` recorded on another input (same shape)."""
    if not isinstance(source, torch.Tensor):
        raise TypeError(
            f"patch source must be a tensor, an activation recorded with hook_recorder on "
            f"another input; got {type(source).__name__}"
        )
    replace_channels = replace(source, channels)

    def fn(x: torch.Tensor) -> torch.Tensor:
        if source.shape != x.shape:
            raise ValueError(
                f"patch source has shape {tuple(source.shape)} but the activation has "
                f"{tuple(x.shape)}; record the source on an input of the same shape"
            )
        return replace_channels(x)

    return fn
