"""Intervention functions for `hook_recorder(interventions=...)`: replace, ablate or patch channels.

Each builder returns `fn(tensor) -> tensor` acting on the last dimension (the channels) of a hook's
activation. `channels` is a list, tuple or 1-D LongTensor of channel ids, a single id, or None for
every channel. The functions never modify their input in place, so recorded activations stay intact.
Each builder checks the types of its arguments when called. Shapes are checked against the
activation at each forward pass.

    with hook_recorder(interventions={"1.attn.v": zero_ablate([3, 7])}):
        logits = model(idx)[0]
"""

from __future__ import annotations

import numbers
import reprlib
from collections.abc import Mapping, Sequence

import torch

from inference.hook_utils import Intervention

Channels = Sequence[int] | torch.Tensor | None
Value = torch.Tensor | float | Sequence[float]


def channel_id_tensor(channel_ids: object, name: str) -> torch.Tensor:
    """Convert channel ids (a list, tuple, int or tensor) with `torch.as_tensor`.

    Raises TypeError, naming the argument `name`, for a string, set or mapping (a set has no
    order, and a string such as "12" is not a list of ids) and for anything torch cannot convert.
    The caller checks the dtype and the range of the ids.
    """
    fix = "pass a list or LongTensor of channel ids"
    if isinstance(channel_ids, str | bytes | set | frozenset | Mapping):
        raise TypeError(
            f"{name} is a {type(channel_ids).__name__} {reprlib.repr(channel_ids)}; {fix}"
        )
    try:
        return torch.as_tensor(channel_ids)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} {reprlib.repr(channel_ids)} ({type(channel_ids).__name__}) cannot be read as "
            f"channel ids ({err}); {fix}"
        ) from err


def _channel_index(channels: Channels) -> torch.Tensor | None:
    """Return `channels` as a 1-D LongTensor (None for every channel), raising for non-integers."""
    if channels is None:
        return None
    index = channel_id_tensor(channels, "channels")
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
    with `torch.as_tensor`. The value is cast to the activation's dtype and device at each forward
    pass.
    """
    value = _value_tensor(value, "replacement value")
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
