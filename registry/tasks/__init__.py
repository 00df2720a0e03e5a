"""Binary next-token tasks on Python code, used to find circuits by pruning.

`get_task(name)` returns a `Task` with train pairs `xs` and test pairs `xs_test`.
The 20 built-in tasks are those of Gao et al. 2025 ("Weight-sparse transformers
have interpretable circuits"). Each is generated from templates by a seeded RNG,
so it is identical on every run (512 train and 128 test pairs). The templates
are grouped by what decides the answer: `templates_syntax` (brackets, quotes,
operators), `templates_flow` (control-flow keywords), `templates_context` (an
earlier call or a string prefix) and `templates_names` (a name to copy, or a
type's method).

Add a task with a small module that calls `register_task(TaskSpec(...))`, or with
a `<name>.jsonl` file in a folder listed in `CIRCUIT_SPARSITY_TASKS` (see
`registry.tasks.jsonl` for the format).
"""

from __future__ import annotations

import functools
import logging

from . import templates_context, templates_flow, templates_names, templates_syntax
from .base import (
    DEFAULT_N_TEST,
    DEFAULT_N_TRAIN,
    Datapoint,
    Task,
    TaskSpec,
    TaskTokenError,
    TemplateContext,
    TextPair,
    build_task,
    encode_pair,
)
from .jsonl import find_jsonl_task, list_jsonl_task_names, load_jsonl_task

__all__ = [
    "DEFAULT_N_TEST",
    "DEFAULT_N_TRAIN",
    "DEFAULT_ENCODING",
    "Datapoint",
    "PAPER_TASKS",
    "Task",
    "TaskSpec",
    "TaskTokenError",
    "TemplateContext",
    "TextPair",
    "build_task",
    "encode_pair",
    "get_task",
    "list_task_names",
    "load_jsonl_task",
    "register_task",
]

logger = logging.getLogger(__name__)

DEFAULT_ENCODING = "stdlib_2k"

# The 20 tasks of Gao et al. (2025) in the order the paper lists them, its headline task first.
# The web app opens the first of these that has a k_optim circuit.
PAPER_TASKS = (
    "single_double_quote",
    "final_kwarg",
    "set_or_string",
    "set_or_string_fixedvarname",
    "class_init",
    "with_as",
    "bracket_brace",
    "with_open",
    "bracket_counting",
    "for_while",
    "else_elif",
    "fstring_brace",
    "if_ternary",
    "var_swap",
    "indent_for",
    "lambda_func",
    "if_equals",
    "enumerate_range",
    "var_if",
    "while_return_true",
)

_SPECS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec, *, replace: bool = False) -> None:
    """Make a template task available to `get_task` under `spec.name`."""
    if spec.name in _SPECS and not replace:
        raise ValueError(
            f"task {spec.name!r} is already registered; pass replace=True to override it"
        )
    _SPECS[spec.name] = spec
    _build_named.cache_clear()


def list_task_names() -> list[str]:
    """Return the names of the built-in, registered and JSONL tasks, sorted."""
    return sorted(set(_SPECS) | set(list_jsonl_task_names()))


def _resolve_encoding(encoding):
    if encoding is None:
        encoding = DEFAULT_ENCODING
    if isinstance(encoding, str):
        from registry.tokenizer import get_encoding

        return get_encoding(encoding)
    return encoding


def _build(name: str, encoding) -> Task:
    if name in _SPECS:
        return build_task(_SPECS[name], encoding)
    path = find_jsonl_task(name)
    if path is not None:
        return load_jsonl_task(path, encoding, name=name)
    raise KeyError(
        f"unknown task {name!r}; available tasks: {', '.join(list_task_names())}. "
        "Register a TaskSpec or add <name>.jsonl to a folder in CIRCUIT_SPARSITY_TASKS"
    )


@functools.lru_cache(maxsize=64)
def _build_named(name: str, encoding_name: str) -> Task:
    return _build(name, _resolve_encoding(encoding_name))


_TEMPLATE_MODULES = (templates_syntax, templates_flow, templates_context, templates_names)
for _spec in (spec for module in _TEMPLATE_MODULES for spec in module.SPECS):
    register_task(_spec)


def get_task(name: str, encoding=None) -> Task:
    """Build the task `name` for `encoding` (a tiktoken Encoding or its name).

    The default encoding is `stdlib_2k`. Tasks requested by encoding name are
    cached, so repeated calls return the same object; treat it as read-only.
    Raises KeyError for an unknown task and TaskTokenError when an answer is not a
    single token in the encoding.
    """
    if encoding is None or isinstance(encoding, str):
        return _build_named(name, encoding or DEFAULT_ENCODING)
    return _build(name, encoding)
