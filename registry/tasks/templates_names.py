"""Tasks decided by names and types: copy a bound name, or pick the method for a type.

In the copying tasks the answer is a name that appears earlier in the prefix, so
the two answers change from pair to pair. Only names that the encoding emits as
one token (with their leading space) are drawn.
"""

from __future__ import annotations

import re

from .base import TaskSpec, TaskTokenError, TemplateContext, TextPair
from .templates_syntax import answer_pair
from .vocab import (
    CLASS_NAMES,
    FUNCTION_NAMES,
    NAMES,
    body_indent,
    filler_statement,
    pick_name,
    pick_number,
    preamble,
)

FILE_HANDLE_NAMES = ("f", "fp", "fh", "fd", "stream", "handle", "file", "src", "out", "infile")


def _single_token_names(context: TemplateContext, names, *, task_name: str) -> list[str]:
    """Return the names that are one token after a space, in a fixed order."""
    usable = [name for name in names if context.is_single_token(" " + name)]
    if len(usable) < 2:
        raise TaskTokenError(
            f"task {task_name!r}: fewer than two of the names {list(names)} are single "
            "tokens with a leading space in this encoding; extend the name list"
        )
    return usable


def class_init(context: TemplateContext) -> TextPair:
    """In `__init__`, `self.x = ` copies the parameter called `x`."""
    rng = context.rng
    names = _single_token_names(context, NAMES, task_name="class_init")
    first, copied, other = rng.sample(names, 3)
    class_name = rng.choice(CLASS_NAMES)

    def prefix(name: str) -> str:
        return (
            f"class {class_name}:\n"
            f"    def __init__(self, {first}, {name}):\n"
            f"        self.{first} = {first}\n"
            f"        self.{name} ="
        )

    return TextPair(
        inputs=prefix(copied),
        patch_from_inputs=prefix(other),
        target=" " + copied,
        alt=" " + other,
        suffix="\n",
    )


def with_as(context: TemplateContext) -> TextPair:
    """Inside `with ... as f:`, the file handle is the name bound by `as`."""
    rng = context.rng
    handles = _single_token_names(context, FILE_HANDLE_NAMES, task_name="with_as")
    handle, other = rng.sample(handles, 2)
    header = preamble(rng)
    indent = body_indent(header)
    path_name = pick_name(rng, exclude=(handle, other))
    result_name = pick_name(rng, exclude=(handle, other, path_name))

    def prefix(name: str) -> str:
        return f"{header}{indent}with open({path_name}) as {name}:\n{indent}    {result_name} ="

    return TextPair(
        inputs=prefix(handle),
        patch_from_inputs=prefix(other),
        target=" " + handle,
        alt=" " + other,
        suffix=".read()\n",
    )


def var_swap(context: TemplateContext) -> TextPair:
    """`a, b = b,` completes the swap with `a`."""
    rng = context.rng
    names = _single_token_names(context, NAMES, task_name="var_swap")
    first, second, other = rng.sample(names, 3)
    header = preamble(rng)
    indent = body_indent(header)

    def prefix(name: str) -> str:
        return f"{header}{indent}{name}, {second} = {second},"

    return TextPair(
        inputs=prefix(first),
        patch_from_inputs=prefix(other),
        target=" " + first,
        alt=" " + other,
        suffix="\n",
    )


def _set_or_string(context: TemplateContext, name: str, *, task_name: str) -> TextPair:
    rng = context.rng
    add, plus_equals = answer_pair(context, [(".add", " +="), (".", " +=")], task_name=task_name)
    header = preamble(rng)
    indent = body_indent(header)
    item = pick_name(rng, exclude=(name,))
    items = pick_name(rng, exclude=(name, item))
    filler = filler_statement(rng, indent + "    ", avoid=(name, item, items))
    loop = f"{indent}for {item} in {items}:\n{filler if rng.random() < 0.5 else ''}"

    def prefix(initial: str) -> str:
        return f"{header}{indent}{name} = {initial}\n{loop}{indent}    {name}"

    rest_add = ".add"[len(add) :]
    return TextPair(
        inputs=prefix("set()"),
        patch_from_inputs=prefix(rng.choice(['""', "''"])),
        target=add,
        alt=plus_equals,
        suffix=f"{rest_add}({item})\n",
        alt_suffix=f" {item}\n",
    )


def set_or_string(context: TemplateContext) -> TextPair:
    """A variable that started as `set()` grows with `.add`, one that started as `""` with `+=`."""
    name = pick_name(context.rng)
    return _set_or_string(context, name, task_name="set_or_string")


def set_or_string_fixedvarname(context: TemplateContext) -> TextPair:
    """As `set_or_string`, with the variable always called `x` so its name gives no hint."""
    return _set_or_string(context, "x", task_name="set_or_string_fixedvarname")


def var_if(context: TemplateContext) -> TextPair:
    """The `if` right after an assignment tests the name just assigned.

    The last two lines are `x = f(y)` and `if`, and the answer is ` x`. The call
    argument `y` is a second name on the same line that the model must not copy,
    and the lines above use neither name. The prefixes differ only in the name on
    the left of the assignment.
    """
    rng = context.rng
    names = _single_token_names(context, NAMES, task_name="var_if")
    assigned, other = rng.sample(names, 2)
    header = preamble(rng)
    if {assigned, other} & set(re.findall(r"\w+", header)):
        # A parameter of the same name would give the `if` a second likely subject.
        header = ""
    indent = body_indent(header)
    argument = pick_name(rng, exclude=(assigned, other))
    avoid = (assigned, other, argument)
    before = header + (filler_statement(rng, indent, avoid=avoid) if rng.random() < 0.5 else "")
    call = f"{rng.choice(FUNCTION_NAMES)}({argument})"
    body = filler_statement(rng, indent + "    ", avoid=avoid)
    test = rng.choice([":\n", " is None:\n", " is not None:\n", f" == {pick_number(rng)}:\n"])

    def prefix(name: str) -> str:
        return f"{before}{indent}{name} = {call}\n{indent}if"

    return TextPair(
        inputs=prefix(assigned),
        patch_from_inputs=prefix(other),
        target=" " + assigned,
        alt=" " + other,
        suffix=test + body,
    )


SPECS = (
    TaskSpec("class_init", class_init, "In `__init__`, `self.x =` copies the parameter `x`."),
    TaskSpec("with_as", with_as, "Inside `with open(p) as f:`, read from the handle `f`."),
    TaskSpec("var_swap", var_swap, "`a, b = b,` completes the swap with ` a`."),
    TaskSpec(
        "set_or_string",
        set_or_string,
        'A variable initialised with `set()` grows with `.add`, one initialised with `""` '
        "with ` +=`.",
    ),
    TaskSpec(
        "set_or_string_fixedvarname",
        set_or_string_fixedvarname,
        "`set_or_string` with the variable always named `x`.",
    ),
    TaskSpec("var_if", var_if, "After `x = f(y)`, the next `if` tests ` x`."),
)
