"""Argument checks shared by the public API of `inference`.

The rules, the same in every module:

- An integer is an int or anything with `__index__` (a NumPy integer, a 0-d integer tensor), but
  never a bool and never a float, even an integer-valued one such as 2.0. A wrong type raises
  TypeError.
- Channel ids are a list, tuple, int or 1-D tensor of integers (a 0-d tensor is one id).
  Floats (3.0 included), bools, strings, bytes, sets, mappings and 2-D input are rejected,
  because circuits from the pruner and from released viz files are LongTensors, and a float or
  a mask usually means the caller passed the wrong tensor. An empty input has no ids, so its
  dtype is not checked.
- An index outside its valid range (a layer, head, position, token id or channel id) raises
  `OutOfRangeError`, which callers can catch as either IndexError or ValueError.
"""

from __future__ import annotations

import operator
import reprlib
from collections.abc import Mapping

import torch

# The embedding lookup and position indexing accept only these integer dtypes. The loss accepts
# only int64, so GPT.forward converts int32 targets.
TOKEN_ID_DTYPES = (torch.int64, torch.int32)

_CHANNEL_IDS_FIX = "pass a list or LongTensor of channel ids"


class OutOfRangeError(IndexError, ValueError):
    """An index (layer, head, position, token id or channel id) outside its valid range.

    It subclasses both IndexError and ValueError, so callers that catch either keep working.
    """


def is_integer(value: object) -> bool:
    """Return whether `value` counts as an integer under the rule in the module docstring."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dim() != 0):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def as_integer(value: object, name: str) -> int:
    """Return `value` as an int, raising TypeError naming `name` unless `is_integer(value)`."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer; got the bool {value}")
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer; got {value!r} ({type(value).__name__})")
    return operator.index(value)


def check_index(value: object, name: str, count: int, owner: str) -> int:
    """Return `value` as an int in [0, count).

    Raises TypeError for a non-integer, and OutOfRangeError naming `name` and `owner` (such as
    "the model") for an integer outside the range.
    """
    index = as_integer(value, name)
    if not 0 <= index < count:
        raise OutOfRangeError(
            f"{name} {index} is out of range: {owner} has {name}s 0 to {count - 1}"
        )
    return index


def check_single_sequence(idx: object) -> None:
    """Raise TypeError unless `idx` is a tensor, and ValueError unless its shape is (1, pos)."""
    if not isinstance(idx, torch.Tensor):
        raise TypeError(
            f"idx must be a torch.Tensor of token ids, shape (1, pos); got {type(idx).__name__}"
        )
    if idx.dim() != 2 or idx.size(0) != 1:
        raise ValueError(f"idx must hold one sequence, shape (1, pos); got {tuple(idx.shape)}")


def check_integer_tensor(name: str, value: object, contents: str, shape: str) -> None:
    """Raise TypeError unless `value` is an int64 or int32 tensor.

    `contents` (such as "token ids") and `shape` (such as "(batch, pos)") describe the expected
    tensor in the message.
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of {contents} (a LongTensor of shape {shape}); "
            f"got {type(value).__name__}; convert it with torch.tensor(..., dtype=torch.long)"
        )
    if value.dtype not in TOKEN_ID_DTYPES:
        raise TypeError(
            f"{name} must be an int64 or int32 tensor of {contents}; got dtype {value.dtype}; "
            f"convert it with {name}.long()"
        )


def channel_ids(value: object, name: str) -> torch.Tensor:
    """Return the channel ids `value` as a 1-D int64 tensor on the CPU, not yet range-checked.

    `name` (such as "channels" or "circuit['0.attn.q']") starts every message. Raises TypeError
    for a bool, string, bytes, set or mapping, for anything torch cannot convert and for ids that
    are not integers, and ValueError for input with more than one dimension.
    """
    if isinstance(value, bool | str | bytes | set | frozenset | Mapping):
        raise TypeError(
            f"{name} is a {type(value).__name__} {reprlib.repr(value)}; {_CHANNEL_IDS_FIX}"
        )
    if isinstance(value, list | tuple) and any(isinstance(item, bool) for item in value):
        raise TypeError(
            f"channel ids must be integers, but {name} {reprlib.repr(value)} contains bools; "
            f"{_CHANNEL_IDS_FIX}"
        )
    try:
        ids = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} {reprlib.repr(value)} ({type(value).__name__}) cannot be read as "
            f"channel ids ({err}); {_CHANNEL_IDS_FIX}"
        ) from err

    if ids.dim() > 1:
        raise ValueError(
            f"{name} has shape {tuple(ids.shape)}; pass a 1-D list or tensor of channel ids"
        )
    if ids.numel() == 0:
        # An empty input has no ids to check, and `torch.as_tensor([])` is float32.
        return torch.zeros(0, dtype=torch.long)
    if ids.dtype == torch.bool or ids.is_floating_point() or ids.is_complex():
        preview = reprlib.repr(ids.reshape(-1)[:10].tolist())
        raise TypeError(
            f"channel ids must be integers, but {name} has dtype {ids.dtype} ({preview}); "
            f"{_CHANNEL_IDS_FIX} (for a boolean mask, mask.nonzero().flatten(), and for "
            "integer-valued floats, ids.long())"
        )
    return ids.reshape(-1).to(device="cpu", dtype=torch.long)


def check_channel_range(ids: torch.Tensor, width: int, name: str, owner: str) -> None:
    """Raise OutOfRangeError unless every id in the 1-D tensor `ids` lies in [0, width).

    `owner` (such as "the hook") names what has `width` channels in the message.
    """
    out_of_range = ids[(ids < 0) | (ids >= width)]
    if out_of_range.numel():
        raise OutOfRangeError(
            f"{name} has channel ids {out_of_range[:10].tolist()} outside the valid range "
            f"0..{width - 1}; {owner} has {width} channels"
        )
