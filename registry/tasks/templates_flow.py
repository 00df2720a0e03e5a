"""Tasks decided by a control-flow keyword: what follows `else`/`elif` and `while True`/`return True`.

In both tasks the two prefixes differ in one keyword on the last line, and the
answer is the token that the keyword's grammar puts next. As in
`templates_syntax`, each answer comes from a list of candidate pairs, and the
first pair that the encoding emits as single tokens in context is used.
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
    preamble,
)

# Types tested in an `isinstance` chain. Each is a plain name, so it adds no quote
# or bracket that another task tests.
TYPE_NAMES = ("str", "bytes", "int", "float", "list", "tuple", "dict", "set", "bool", "type")


def else_elif(context: TemplateContext) -> TextPair:
    """After an `isinstance` if-block, `else` continues with the colon and `elif` with a test.

    The chain opens with `if isinstance(x, T):` and may hold earlier `elif
    isinstance(x, U):` branches, so the code above shows what an `elif` test looks
    like. The two prefixes differ only in the last keyword. The answers are `:\\n`
    (or a bare `:`) after `else` and ` isinstance` after `elif`. In an encoding
    without an ` isinstance` token the answer is the first piece that the encoding
    emits for it (such as ` is`).
    """
    rng = context.rng
    header = preamble(rng)
    indent = body_indent(header)
    subject = pick_name(rng)
    n_branches = rng.randint(1, 3)
    types = rng.sample(TYPE_NAMES, n_branches + 1)

    # The if/elif chain with one body line per branch.
    lines = []
    for position, type_name in enumerate(types[:-1]):
        keyword = "if" if position == 0 else "elif"
        lines.append(f"{indent}{keyword} isinstance({subject}, {type_name}):\n")
        lines.append(filler_statement(rng, indent + "    ", avoid=(subject,)))
    chain = header + "".join(lines)
    else_body = filler_statement(rng, indent + "    ", avoid=(subject,))

    def make(colon: str, test: str) -> TextPair:
        rest_of_test = " isinstance"[len(test) :]
        return TextPair(
            inputs=f"{chain}{indent}else",
            patch_from_inputs=f"{chain}{indent}elif",
            target=colon,
            alt=test,
            suffix=else_body if colon.endswith("\n") else f"\n{else_body}",
            alt_suffix=f"{rest_of_test}({subject}, {types[-1]}):\n{else_body}",
        )

    # ` isinstance` first, then ever shorter leading pieces of it.
    tests = [" isinstance"[:end] for end in range(len(" isinstance"), 1, -1)]
    pairs = [make(colon, test) for test in tests for colon in (":\n", ":")]
    return first_emitted_pair(context, pairs, task_name="else_elif")


def while_return_true(context: TemplateContext) -> TextPair:
    """`while True` continues with the colon, `return True` ends the line.

    The keyword sits in a block of a function body (an `if` or a `for`), so both
    lines are natural code: the loop's body follows `while True:` and the
    function's `return False` follows `return True`. The prefixes differ only in
    the keyword before ` True`. The answers are `:\\n` (or a bare `:`) and `\\n`.
    """
    rng = context.rng
    header = preamble(rng) or f"def {rng.choice(FUNCTION_NAMES)}(self):\n"
    indent = body_indent(header)
    item, items = pick_names(rng, 2)
    block = rng.choice(
        [
            f"{indent}if {item}:\n",
            f"{indent}if not {item}:\n",
            f"{indent}for {item} in {items}:\n",
        ]
    )
    before = header + (filler_statement(rng, indent) if rng.random() < 0.5 else "") + block
    inner = indent + "    "
    loop_body = filler_statement(rng, inner + "    ")
    after_return = f"{indent}return False\n"

    def make(colon: str, newline: str) -> TextPair:
        return TextPair(
            inputs=f"{before}{inner}while True",
            patch_from_inputs=f"{before}{inner}return True",
            target=colon,
            alt=newline,
            suffix=loop_body if colon.endswith("\n") else f"\n{loop_body}",
            alt_suffix=after_return,
        )

    pairs = [make(":\n", "\n"), make(":", "\n")]
    return first_emitted_pair(context, pairs, task_name="while_return_true")


SPECS = (
    TaskSpec(
        "else_elif",
        else_elif,
        "After an `isinstance` if-block, `else` expects `:` and `elif` expects ` isinstance`.",
    ),
    TaskSpec(
        "while_return_true",
        while_return_true,
        "`while True` expects `:`, `return True` expects the end of the line.",
    ),
)
