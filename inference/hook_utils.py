"""Named hook points inside the GPT: record activations and intervene on them.

The model calls `hook_save(name, tensor)` at every hook point inside nested `hook_namespace(...)`
blocks, which build full names such as `3.attn.q`. Outside a `hook_recorder` block a hook costs one
context-variable lookup. Inside one:

    with hook_recorder(regex="1.attn", interventions={"0.mlp.post_act": zero_fn}) as rec:
        logits, loss, _ = model(idx)
    rec["1.attn.q"]  # (B, T, n_head * d_head)

Name filter: `regex` is matched with `re.fullmatch` against the full hook name and against each of
its dotted prefixes. So `"1"` records every hook of layer 1 (and not layer 10), `"1.attn"` records
layer 1's attention hooks, `"0.attn.q"` records that hook only and `".*"` (the default) records all.

Interventions map a full hook name to `fn(tensor) -> tensor`. The returned tensor replaces the
activation for the rest of the forward pass, and it is what gets recorded. A name that matches no hook
raises `KeyError` when the block exits, so a typo cannot silently do nothing.

State lives in a `contextvars.ContextVar`, so each thread (and asyncio task) records only its own
activations; nested recorders are rejected.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

Intervention = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class _RecorderState:
    pattern: re.Pattern[str]
    interventions: Mapping[str, Intervention]
    save_grads: bool
    records: dict[str, torch.Tensor] = field(default_factory=dict)
    names_seen: set[str] = field(default_factory=set)


_state: contextvars.ContextVar[_RecorderState | None] = contextvars.ContextVar(
    "hook_recorder_state", default=None
)
_namespace: contextvars.ContextVar[str] = contextvars.ContextVar("hook_namespace", default="")


def name_matches(pattern: re.Pattern[str], name: str) -> bool:
    """Return whether `pattern` fully matches `name` or one of its dotted prefixes."""
    parts = name.split(".")
    return any(pattern.fullmatch(".".join(parts[:n])) for n in range(len(parts), 0, -1))


@contextmanager
def hook_recorder(
    regex: str = ".*",
    interventions: Mapping[str, Intervention] | None = None,
    save_grads: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record activations whose names match `regex`, applying `interventions`; yield the records.

    With `save_grads=True`, the gradient flowing back into each recorded activation is stored under
    `<name>.grad` when `backward()` runs inside this block.
    """
    if _state.get() is not None:
        raise RuntimeError("hook_recorder blocks cannot be nested; record everything in one block")
    try:
        pattern = re.compile(regex)
    except re.error as err:
        raise ValueError(f"hook name filter {regex!r} is not a valid regex: {err}") from err

    state = _RecorderState(pattern, dict(interventions or {}), save_grads)
    token = _state.set(state)
    try:
        yield state.records
    finally:
        _state.reset(token)

    # Only reached when the body did not raise: report interventions that never fired.
    unused = sorted(set(state.interventions) - state.names_seen)
    if unused and state.names_seen:
        raise KeyError(
            f"interventions name hooks that do not exist: {unused}; "
            f"valid names look like {sorted(state.names_seen)[:6]} ..."
        )


@contextmanager
def hook_namespace(name: str) -> Iterator[None]:
    """Prefix hook names saved inside this block with `name.`."""
    token = _namespace.set(_namespace.get() + name + ".")
    try:
        yield
    finally:
        _namespace.reset(token)


def hook_save(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Pass `tensor` through the hook point `name`: intervene, record, and return what flows on."""
    state = _state.get()
    if state is None:
        return tensor

    full_name = _namespace.get() + name
    state.names_seen.add(full_name)

    intervention = state.interventions.get(full_name)
    if intervention is not None:
        tensor = intervention(tensor)

    if name_matches(state.pattern, full_name):
        state.records[full_name] = tensor
        if state.save_grads and tensor.requires_grad:
            tensor = _record_grad(tensor, state.records, full_name + ".grad")
    return tensor


def _record_grad(tensor: torch.Tensor, records: dict, grad_name: str) -> torch.Tensor:
    # The name is bound now, at forward time: the namespace differs when backward runs.
    def store(grad: torch.Tensor) -> torch.Tensor:
        records[grad_name] = grad
        return grad

    tensor = tensor.view_as(tensor)
    tensor.register_hook(store)
    return tensor


def active_interventions() -> bool:
    """Whether a recorder with interventions is active in this context (fast paths must step aside)."""
    state = _state.get()
    return state is not None and bool(state.interventions)
