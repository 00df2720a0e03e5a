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
`regex=None`, or the regex `"(?!)"`, records nothing. Any other filter that matches no hook of the
model raises `ValueError` when the block exits, so a typo such as `"0.atn.q"` cannot silently record
nothing. `"attn"` matches nothing either, because no hook name or prefix is `attn`.

Interventions map a full hook name to `fn(tensor) -> tensor`. The returned tensor replaces the
activation for the rest of the forward pass, and it is what gets recorded. It must be a tensor of
the input's shape, dtype and device: anything else raises at that hook, naming it. An intervention
name that matches no hook raises `KeyError` when the block exits.

Both name checks raise only when the block exits without an exception and a forward pass ran inside
it, because the hook names are known only once the model has called its hooks. When the block
raises, a filter that matched no hook becomes a note on that exception instead.

State lives in a `contextvars.ContextVar`, so each thread (and asyncio task) records only its own
activations, and nested recorders are rejected. This is by design, and it has two consequences:

- A forward pass in a thread started inside a `hook_recorder` block records nothing and gets no
  interventions, because `threading.Thread` (and so a `ThreadPoolExecutor` worker) starts with an
  empty context (tested on Python 3.11; newer versions may let threads inherit the context).
  An asyncio task or an `asyncio.to_thread` call copies the context, so one started inside the
  block does record into it.
- Records are keyed by hook name, so a second forward pass in the same block overwrites the
  records of the first. Copy what you need between passes, or use one block per pass.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

Intervention = Callable[[torch.Tensor], torch.Tensor]

# A regex that matches no string. As a name filter it records nothing, like `regex=None`.
RECORD_NOTHING = "(?!)"


@dataclass
class _RecorderState:
    regex: str | None
    pattern: re.Pattern[str]
    interventions: Mapping[str, Intervention]
    save_grads: bool
    records: dict[str, torch.Tensor] = field(default_factory=dict)
    # Every hook name the model called, mapped to whether the filter matches it (computed once).
    matches: dict[str, bool] = field(default_factory=dict)
    # Whether any matched activation required grad.
    grad_recorded: bool = False

    @property
    def filter_matched(self) -> bool:
        """Whether the filter matched any hook the model called."""
        return any(self.matches.values())


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
    regex: str | None = ".*",
    interventions: Mapping[str, Intervention] | None = None,
    save_grads: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """Record activations whose names match `regex`, applying `interventions`; yield the records.

    With `save_grads=True`, the gradient flowing back into each recorded activation is stored under
    `<name>.grad` when `backward()` runs inside this block. That needs activations that require
    grad: run outside `torch.no_grad()`, and call `model.requires_grad_(True)` on a model from
    `load_model`, which turns gradients off. Otherwise the block raises `RuntimeError` on exit, and
    an error raised inside it (such as the one from `backward()`) gets a note saying so.

    Raises `ValueError` on exit for a filter that matched no hook and `KeyError` for an intervention
    name that matched no hook, both only after a forward pass ran in the block (see the module doc).

    The records are those of the block's last forward pass, because each pass replaces the entries.
    A forward pass in a thread started inside the block is not recorded (see the module doc).
    """
    if _state.get() is not None:
        raise RuntimeError("hook_recorder blocks cannot be nested; record everything in one block")
    try:
        pattern = re.compile(RECORD_NOTHING if regex is None else regex)
    except re.error as err:
        raise ValueError(f"hook name filter {regex!r} is not a valid regex: {err}") from err

    state = _RecorderState(regex, pattern, dict(interventions or {}), save_grads)
    token = _state.set(state)
    try:
        yield state.records
    except Exception as err:
        # The exit checks below would hide this error, so their findings become notes on it.
        # The forward pass may have stopped early, so they only cover the hooks it reached.
        for problem in _filter_and_grad_problems(state, stopped_early=True):
            err.add_note(problem.args[0])
        raise
    finally:
        _state.reset(token)

    # Only reached when the body did not raise.
    if not state.matches:
        return
    unused = sorted(set(state.interventions) - set(state.matches))
    if unused:
        raise KeyError(
            f"interventions name hooks that do not exist: {unused}; valid names are "
            f"{_hook_name_summary(state.matches)}"
        )
    problems = _filter_and_grad_problems(state)
    if problems:
        raise problems[0]  # at most one: the grad check needs a filter that matched


def _filter_and_grad_problems(
    state: _RecorderState, stopped_early: bool = False
) -> list[Exception]:
    """Return the errors for a filter that matched no hook and for save_grads that cannot work.

    With `stopped_early`, the messages state that they cover only the hooks called before an error.
    """
    if not state.matches:
        return []
    called = "called before this error" if stopped_early else "the model called"
    problems: list[Exception] = []
    if not state.filter_matched and state.regex not in (None, RECORD_NOTHING):
        problems.append(
            ValueError(
                f"hook name filter {state.regex!r} matched none of the {len(state.matches)} "
                f"hooks {called}: {_hook_name_summary(state.matches)}. "
                "The filter must fully match a hook name or one of its dotted prefixes, "
                "e.g. '0.attn.q', '0.attn' or '0'; pass regex=None to record nothing."
            )
        )
    if state.save_grads and state.filter_matched and not state.grad_recorded:
        problems.append(
            RuntimeError(
                "save_grads=True, but no recorded activation requires grad, so no gradient can be "
                "recorded. Run the forward pass outside torch.no_grad() and call "
                "model.requires_grad_(True) first (load_model turns gradients off)."
            )
        )
    return problems


def _hook_name_summary(names: Iterable[str]) -> str:
    """List hook names with each layer index written as `<i>`, e.g. `<i>.attn.q, final_resid`."""
    generic = {re.sub(r"^\d+\.", "<i>.", name) for name in names}
    return ", ".join(sorted(generic))


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
    matched = state.matches.get(full_name)
    if matched is None:
        matched = state.matches[full_name] = name_matches(state.pattern, full_name)

    intervention = state.interventions.get(full_name)
    if intervention is not None:
        tensor = _run_intervention(intervention, tensor, full_name)

    if matched:
        state.records[full_name] = tensor
        if state.save_grads and tensor.requires_grad:
            state.grad_recorded = True
            tensor = _record_grad(tensor, state.records, full_name + ".grad")
    return tensor


def _run_intervention(
    intervention: Intervention, tensor: torch.Tensor, full_name: str
) -> torch.Tensor:
    """Apply `intervention` at hook `full_name` and check that it returned a tensor like its input.

    Only shape, dtype and device are compared, so the check costs the same for any activation size.
    """
    try:
        result = intervention(tensor)
    except Exception as err:
        err.add_note(f"raised by the intervention on hook {full_name!r}")
        raise
    if not isinstance(result, torch.Tensor):
        raise TypeError(
            f"the intervention on hook {full_name!r} returned {type(result).__name__}, expected a "
            f"tensor of shape {tuple(tensor.shape)}; return the modified activation"
        )
    if result.shape != tensor.shape:
        raise ValueError(
            f"the intervention on hook {full_name!r} returned a tensor of shape "
            f"{tuple(result.shape)}, expected the activation's shape {tuple(tensor.shape)}"
        )
    if result.dtype != tensor.dtype:
        raise TypeError(
            f"the intervention on hook {full_name!r} returned a {result.dtype} tensor, expected "
            f"the activation's dtype {tensor.dtype}; convert the result with .to(x.dtype)"
        )
    if result.device != tensor.device:
        raise ValueError(
            f"the intervention on hook {full_name!r} returned a tensor on {result.device}, "
            f"expected the activation's device {tensor.device}; move the result with .to(x.device)"
        )
    return result


def _record_grad(tensor: torch.Tensor, records: dict, grad_name: str) -> torch.Tensor:
    # The name is bound now, at forward time: the namespace differs when backward runs.
    def store(grad: torch.Tensor) -> torch.Tensor:
        records[grad_name] = grad
        return grad

    tensor = tensor.view_as(tensor)
    tensor.register_hook(store)
    return tensor
