"""Tasks decided by code away from the answer: an earlier call, or a string's `f` prefix.

`final_kwarg` needs the model to look back at an earlier call with the same
keywords; `fstring_brace` needs it to look back from the end of a replacement
field to the prefix of the string that holds it.
"""

from __future__ import annotations

from .base import TaskSpec, TemplateContext, TextPair
from .templates_syntax import first_emitted_pair
from .vocab import (
    FUNCTION_NAMES,
    body_indent,
    filler_statement,
    pick_name,
    pick_names,
    pick_number,
    pick_words,
    preamble,
)

KWARG_VALUES = ("None", "True", "False")


def _kwarg_value(context: TemplateContext) -> str:
    """Return a keyword argument value: a number, a name or a constant, never a string."""
    rng = context.rng
    kind = rng.random()
    if kind < 0.4:
        return pick_number(rng)
    if kind < 0.8:
        return pick_name(rng)
    return rng.choice(KWARG_VALUES)


def _keyword_call(context: TemplateContext, function: str, keywords: list[str]) -> str:
    values = ", ".join(f"{keyword}={_kwarg_value(context)}" for keyword in keywords)
    return f"{function}({values}"


def final_kwarg(context: TemplateContext) -> TextPair:
    """After a keyword argument, close the call with `)` or go on with `,`, as an earlier call did.

    The prefix contains two calls of one function. The second call stops right after
    the value of its last keyword argument. In the first prefix the earlier call
    passed exactly the same keywords, so the call closes (`)\\n`, or `)`). In the
    second prefix the earlier call passed one more keyword after those, so the
    call continues with `,`. The prefixes differ only in that extra keyword
    argument of the earlier call. Values are numbers, names or constants, never
    strings, because a closing quote would merge with the `)` token.
    """
    rng = context.rng
    header = preamble(rng)
    indent = body_indent(header)
    function = rng.choice(FUNCTION_NAMES)
    n_shared = rng.randint(1, 3)
    keywords = pick_names(rng, n_shared + 1)
    shared, extra = keywords[:n_shared], keywords[n_shared]
    first_result, second_result = pick_names(rng, 2)

    # The earlier call, with or without the extra keyword argument.
    earlier = f"{indent}{first_result} = {_keyword_call(context, function, shared)}"
    extra_argument = f", {extra}={_kwarg_value(context)}"
    between = filler_statement(rng, indent) if rng.random() < 0.5 else ""
    current = f"{indent}{second_result} = {_keyword_call(context, function, shared)}"
    next_line = filler_statement(rng, indent)

    def make(close: str) -> TextPair:
        rest_of_close = ")\n"[len(close) :]
        return TextPair(
            inputs=f"{header}{earlier})\n{between}{current}",
            patch_from_inputs=f"{header}{earlier}{extra_argument})\n{between}{current}",
            target=close,
            alt=",",
            suffix=rest_of_close + next_line,
            alt_suffix=f" {extra}={_kwarg_value(context)})\n{next_line}",
        )

    return first_emitted_pair(context, [make(")\n"), make(")")], task_name="final_kwarg")


def fstring_brace(context: TemplateContext) -> TextPair:
    """After a `{name}` field, an f-string ends and a plain string goes on to `.format`.

    The string contains text and one or two `{name}` replacement fields and stops
    right after the closing brace of the last one. With the `f` prefix the braces
    are evaluated in place, so the string and the line end (`"\\n`). Without it the
    braces are only placeholders, which a `.format(...)` call right after the
    string fills (the token `".`). The prefixes differ only in the `f` before the
    opening quote. In an encoding without a `".` token the alternative is the bare
    closing quote, and where double quotes give no pair of distinct tokens, single
    quotes are tried.

    NOTE: a plain string with placeholders can also end its line, as a template
    formatted later does, so `".` is the likely token after it rather than the
    only one.
    """
    rng = context.rng
    header = preamble(rng)
    indent = body_indent(header)
    fields = pick_names(rng, rng.randint(1, 2))
    result = pick_name(rng, exclude=tuple(fields))
    leads = [f"{result} = ", f"{result} += "]
    if header:
        leads.append("return ")
    lead = indent + rng.choice(leads)
    body = " ".join(f"{pick_words(rng, 1, 3)} {{{field}}}" for field in fields)
    before = header + (filler_statement(rng, indent) if rng.random() < 0.5 else "")
    format_arguments = ", ".join(f"{field}={field}" for field in fields)
    next_line = filler_statement(rng, indent)

    def make(quote: str, close_and_dot: str) -> TextPair:
        rest_of_dot = f"{quote}."[len(close_and_dot) :]
        return TextPair(
            inputs=f"{before}{lead}f{quote}{body}",
            patch_from_inputs=f"{before}{lead}{quote}{body}",
            target=f"{quote}\n",
            alt=close_and_dot,
            suffix=next_line,
            alt_suffix=f"{rest_of_dot}format({format_arguments})\n{next_line}",
        )

    pairs = [make(quote, alt) for quote in ('"', "'") for alt in (f"{quote}.", quote)]
    return first_emitted_pair(context, pairs, task_name="fstring_brace")


SPECS = (
    TaskSpec(
        "final_kwarg",
        final_kwarg,
        "After a keyword argument, `)` when an earlier call with the same keywords ended "
        "there, `,` when it passed one more.",
    ),
    TaskSpec(
        "fstring_brace",
        fstring_brace,
        'After a `{name}` field, an f-string ends with `"` and a plain string continues '
        'with `".format`.',
    ),
)
