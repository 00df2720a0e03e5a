"""Tasks decided by syntax: quotes, brackets, keywords and operators.

Each template returns a `TextPair` whose two prefixes differ only in the part of
the code that decides the answer. Answer strings come as a list of candidate
pairs; `answer_pair` keeps the first pair whose two strings are single tokens in
the encoding, because a byte-pair encoding may or may not merge a closing symbol
with the newline after it.
"""

from __future__ import annotations

from .base import TaskSpec, TaskTokenError, TemplateContext, TextPair
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


def answer_pair(context: TemplateContext, candidates, *, task_name: str) -> tuple[str, str]:
    """Return the first (target, alt) candidate whose strings are both single tokens."""
    for target, alt in candidates:
        if context.is_single_token(target) and context.is_single_token(alt):
            return target, alt
    raise TaskTokenError(
        f"task {task_name!r}: none of the answer pairs {list(candidates)} are single "
        "tokens in this encoding; add a pair that the BPE emits as single tokens"
    )


def first_emitted_pair(
    context: TemplateContext, pairs: list[TextPair], *, task_name: str
) -> TextPair:
    """Return the first pair whose two answers the encoding emits as one token in context."""
    for pair in pairs:
        alt_suffix = pair.suffix if pair.alt_suffix is None else pair.alt_suffix
        if context.emits_answer(pair.inputs, pair.target, pair.suffix) and context.emits_answer(
            pair.patch_from_inputs, pair.alt, alt_suffix
        ):
            return pair
    answers = [(pair.target, pair.alt) for pair in pairs]
    raise TaskTokenError(
        f"task {task_name!r}: the encoding emits none of the answer pairs {answers} as single "
        "tokens at the decision point; add a candidate pair that this BPE emits there"
    )


def _next_line(context: TemplateContext, indent: str) -> str:
    return filler_statement(context.rng, indent)


def single_double_quote(context: TemplateContext) -> TextPair:
    """Close a string literal with the quote that opened it."""
    rng = context.rng
    double, single = answer_pair(
        context, [('"\n', "'\n"), ('"', "'")], task_name="single_double_quote"
    )
    header = preamble(rng)
    indent = body_indent(header)
    name = pick_name(rng)
    leads = [f"{name} = ", f"self.{name} = ", f"{name} += "]
    if header:
        leads.append("return ")
    lead = indent + rng.choice(leads)
    words = pick_words(rng)
    before = header + (_next_line(context, indent) if rng.random() < 0.5 else "")
    suffix = _next_line(context, indent) if double.endswith("\n") else "\n"
    return TextPair(
        inputs=f'{before}{lead}"{words}',
        patch_from_inputs=f"{before}{lead}'{words}",
        target=double,
        alt=single,
        suffix=suffix,
    )


def _list_elements(context: TemplateContext, n: int) -> list[str]:
    rng = context.rng
    if rng.random() < 0.5:
        return [pick_number(rng) for _ in range(n)]
    return [pick_name(rng) for _ in range(n)]


def bracket_counting(context: TemplateContext) -> TextPair:
    """Close a nested list (`]]`) or a flat list (`]`).

    Where the BPE has no `]]` token, the nested list's first closing token is a
    bare `]` while the flat list's is `]` merged with the newline, so the
    candidates include that pair too. The first pair that the encoding emits in
    this context is used.
    """
    rng = context.rng
    header = preamble(rng)
    indent = body_indent(header)
    n_rows = rng.randint(1, 3)
    n_cols = rng.randint(1, 3)
    rows = [_list_elements(context, n_cols) for _ in range(n_rows)]
    closed_rows = ["[" + ", ".join(row) + "], " for row in rows[:-1]]
    nested = "".join(closed_rows) + "[" + ", ".join(rows[-1])
    flat = ", ".join(element for row in rows for element in row)
    lead = f"{header}{indent}{pick_name(rng)} = "
    next_line = _next_line(context, indent)

    candidates = [("]]\n", "]\n", ""), ("]]", "]", "\n"), ("]", "]\n", "]\n")]
    for nested_close, flat_close, nested_rest in candidates:
        flat_rest = "" if flat_close.endswith("\n") else "\n"
        pair = TextPair(
            inputs=f"{lead}[{nested}",
            patch_from_inputs=f"{lead}[{flat}",
            target=nested_close,
            alt=flat_close,
            suffix=nested_rest + next_line,
            alt_suffix=flat_rest + next_line,
        )
        if context.emits_answer(pair.inputs, pair.target, pair.suffix) and context.emits_answer(
            pair.patch_from_inputs, pair.alt, pair.alt_suffix
        ):
            return pair
    raise TaskTokenError(
        "task 'bracket_counting': the encoding emits none of the closing-token pairs "
        f"{[c[:2] for c in candidates]} after a list; add the pair this BPE uses"
    )


def bracket_brace(context: TemplateContext) -> TextPair:
    """After the first element, a dict literal continues with `:` and a list with `,`."""
    rng = context.rng
    colon, comma = answer_pair(context, [(":", ",")], task_name="bracket_brace")
    header = preamble(rng)
    indent = body_indent(header)
    first = pick_name(rng) if rng.random() < 0.5 else pick_number(rng)
    lead = f"{header}{indent}{pick_name(rng)} = "
    return TextPair(
        inputs=f"{lead}{{{first}",
        patch_from_inputs=f"{lead}[{first}",
        target=colon,
        alt=comma,
        suffix=f" {pick_number(rng)}}}\n",
        alt_suffix=f" {pick_number(rng)}]\n",
    )


def for_while(context: TemplateContext) -> TextPair:
    """`for x` continues with ` in`, `while x` with the colon."""
    rng = context.rng
    keyword_in, colon = answer_pair(context, [(" in", ":\n"), (" in", ":")], task_name="for_while")
    header = preamble(rng)
    indent = body_indent(header)
    name, other = pick_names(rng, 2)
    before = header + (_next_line(context, indent) if rng.random() < 0.5 else "")
    body = _next_line(context, indent + "    ")
    return TextPair(
        inputs=f"{before}{indent}for {name}",
        patch_from_inputs=f"{before}{indent}while {name}",
        target=keyword_in,
        alt=colon,
        suffix=f" {other}:\n{body}",
        alt_suffix=body if colon.endswith("\n") else f"\n{body}",
    )


def if_ternary(context: TemplateContext) -> TextPair:
    """A conditional expression continues with ` else`, an if statement with the colon."""
    rng = context.rng
    keyword_else, colon = answer_pair(
        context, [(" else", ":\n"), (" else", ":")], task_name="if_ternary"
    )
    header = preamble(rng)
    indent = body_indent(header)
    target_name, value, condition = pick_names(rng, 3)
    body = _next_line(context, indent + "    ")
    return TextPair(
        inputs=f"{header}{indent}{target_name} = {value} if {condition}",
        patch_from_inputs=f"{header}{indent}if {condition}",
        target=keyword_else,
        alt=colon,
        suffix=f" {pick_number(rng)}\n",
        alt_suffix=body if colon.endswith("\n") else f"\n{body}",
    )


def if_equals(context: TemplateContext) -> TextPair:
    """A name after `if` is compared with ` ==`, at the start of a statement assigned with ` =`."""
    rng = context.rng
    equals, assign = answer_pair(context, [(" ==", " =")], task_name="if_equals")
    header = preamble(rng)
    indent = body_indent(header)
    name = pick_name(rng)
    before = header + (_next_line(context, indent) if rng.random() < 0.5 else "")
    value = pick_number(rng)
    return TextPair(
        inputs=f"{before}{indent}if {name}",
        patch_from_inputs=f"{before}{indent}{name}",
        target=equals,
        alt=assign,
        suffix=f" {value}:\n{indent}    return {name}\n",
        alt_suffix=f" {value}\n",
    )


def lambda_func(context: TemplateContext) -> TextPair:
    """`lambda x` continues with the colon, `def f(x` with the closing parenthesis."""
    rng = context.rng
    colon, close = answer_pair(context, [(":", "):\n"), (":", ")")], task_name="lambda_func")
    header = preamble(rng)
    indent = body_indent(header)
    function_name, argument = pick_names(rng, 2)
    body = f"{indent}    return {argument}\n"
    return TextPair(
        inputs=f"{header}{indent}{function_name} = lambda {argument}",
        patch_from_inputs=f"{header}{indent}def {function_name}({argument}",
        target=colon,
        alt=close,
        suffix=f" {argument}\n",
        alt_suffix=body if close.endswith("\n") else f":\n{body}",
    )


def enumerate_range(context: TemplateContext) -> TextPair:
    """`for i, x in` iterates with enumerate, `for i in` with range.

    The target is the first token of ` enumerate` (` en` in stdlib_2k).
    """
    rng = context.rng
    enumerate_token, range_token = answer_pair(
        context,
        [(" enumerate", " range"), (" enum", " range"), (" en", " range")],
        task_name="enumerate_range",
    )
    header = preamble(rng)
    indent = body_indent(header)
    index = rng.choice(["i", "j", "n", "idx", "index", "pos"])
    item, items = pick_names(rng, 2)
    body = _next_line(context, indent + "    ")
    rest_enumerate = " enumerate"[len(enumerate_token) :]
    return TextPair(
        inputs=f"{header}{indent}for {index}, {item} in",
        patch_from_inputs=f"{header}{indent}for {index} in",
        target=enumerate_token,
        alt=range_token,
        suffix=f"{rest_enumerate}({items}):\n{body}",
        alt_suffix=f"(len({items})):\n{body}",
    )


def with_open(context: TemplateContext) -> TextPair:
    """The mode string of `open` is `r` for an input file name and `w` for an output one."""
    rng = context.rng
    read, write = answer_pair(context, [("r", "w")], task_name="with_open")
    header = preamble(rng)
    indent = body_indent(header)
    read_name, write_name = rng.choice(
        [
            ("src", "dst"),
            ("infile", "outfile"),
            ("input_path", "output_path"),
            ("in_path", "out_path"),
            ("source", "dest"),
            ("src_file", "dst_file"),
            ("input_file", "output_file"),
            ("read_path", "write_path"),
        ]
    )
    quote = rng.choice(['"', "'"])
    handle = rng.choice(["f", "fp", "fh", "stream"])
    return TextPair(
        inputs=f"{header}{indent}with open({read_name}, {quote}",
        patch_from_inputs=f"{header}{indent}with open({write_name}, {quote}",
        target=read,
        alt=write,
        suffix=f"{quote}) as {handle}:\n",
    )


def indent_for(context: TemplateContext) -> TextPair:
    """The line after a `for` header is indented one level deeper than the header.

    The loop sits in a function body (4 spaces), so its body is at 8 spaces. The
    BPE emits the indentation minus one space as a token and joins the last space
    to the next name, so the answers are 7 spaces after the header and 3 spaces
    after a plain statement.
    """
    rng = context.rng
    deeper, same = answer_pair(context, [(" " * 7, " " * 3)], task_name="indent_for")
    function_name = rng.choice(FUNCTION_NAMES)
    item, items, other = pick_names(rng, 3)
    header = f"def {function_name}({items}):\n"
    before = header + (
        filler_statement(rng, "    ", avoid=(item, items)) if rng.random() < 0.5 else ""
    )
    return TextPair(
        inputs=f"{before}    for {item} in {items}:\n",
        patch_from_inputs=f"{before}    {item} = {items}\n",
        target=deeper,
        alt=same,
        suffix=f" {other} = {item}\n",
    )


SPECS = (
    TaskSpec(
        "single_double_quote",
        single_double_quote,
        "Close a string literal with the same quote that opened it.",
    ),
    TaskSpec(
        "bracket_counting",
        bracket_counting,
        "Close a nested list with `]]` and a flat list with `]` (depth decides).",
    ),
    TaskSpec(
        "bracket_brace",
        bracket_brace,
        "After the first element, `{` (dict) expects `:` and `[` (list) expects `,`.",
    ),
    TaskSpec("for_while", for_while, "`for x` expects ` in`, `while x` expects `:`."),
    TaskSpec(
        "if_ternary",
        if_ternary,
        "`y = a if c` expects ` else`, the statement `if c` expects `:`.",
    ),
    TaskSpec("if_equals", if_equals, "`if x` expects ` ==`, the statement `x` expects ` =`."),
    TaskSpec("lambda_func", lambda_func, "`f = lambda x` expects `:`, `def f(x` expects `)`."),
    TaskSpec(
        "enumerate_range",
        enumerate_range,
        "`for i, x in` expects ` enumerate`, `for i in` expects ` range`.",
    ),
    TaskSpec(
        "indent_for",
        indent_for,
        "After a `for` header the next line is indented deeper (7-space token, not 3).",
    ),
    TaskSpec(
        "with_open",
        with_open,
        "The `open` mode is `r` for an input file name and `w` for an output file name.",
    ),
)
