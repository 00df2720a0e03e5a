"""The tasks else_elif, final_kwarg, fstring_brace, var_if and while_return_true.

Sizes, single-token answers and disjoint splits of every task are checked in
test_tasks.py. Here each of these five tasks is checked for class balance, for
the one span in which its two prompts differ, and for that span deciding the
answer. They are also built with a second encoding.
"""

from __future__ import annotations

import os
import re
from collections import Counter

import pytest
import tiktoken

from registry.tasks import _SPECS, DEFAULT_N_TEST, DEFAULT_N_TRAIN, build_task, get_task
from registry.tokenizer import ENDOFTEXT, encoding_kwargs, get_encoding

NEW_TASKS = ["else_elif", "final_kwarg", "fstring_brace", "var_if", "while_return_true"]
N_CHECKED = 200


@pytest.fixture(scope="module")
def encoding():
    return get_encoding("stdlib_2k")


@pytest.fixture(scope="module")
def encoding_1024():
    """stdlib_2k cut to its first 1024 tokens: a valid BPE that lacks many merged tokens."""
    kwargs = encoding_kwargs("stdlib_2k")
    ranks = {piece: rank for piece, rank in kwargs["mergeable_ranks"].items() if rank < 1024}
    return tiktoken.Encoding(
        name="stdlib_2k_first_1024",
        pat_str=kwargs["pat_str"],
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: len(ranks)},
    )


def decoded_pairs(encoding, name):
    """Yield (inputs, patch, target, alt) as text for the first N_CHECKED pairs of a task."""
    task = get_task(name)
    for datapoint in (task.xs + task.xs_test)[:N_CHECKED]:
        yield (
            encoding.decode(datapoint.inputs),
            encoding.decode(datapoint.patch_from_inputs),
            encoding.decode([datapoint.target_tokid]),
            encoding.decode([datapoint.target_alt_tokid]),
        )


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def differing_spans(first: str, second: str) -> tuple[str, str]:
    """Return the spans where two texts differ, widened so that no word is cut."""
    start = len(os.path.commonprefix([first, second]))
    tail = len(os.path.commonprefix([first[::-1], second[::-1]]))
    tail = min(tail, len(first) - start, len(second) - start)
    end_first, end_second = len(first) - tail, len(second) - tail

    # Widen left while the span starts inside a word.
    while start > 0 and _is_word(first[start - 1]):
        if not any(start < len(text) and _is_word(text[start]) for text in (first, second)):
            break
        start -= 1

    # Widen right while the span ends inside a word.
    while end_first < len(first) and _is_word(first[end_first]):
        if not (_is_word(first[end_first - 1]) or _is_word(second[end_second - 1])):
            break
        end_first += 1
        end_second += 1
    return first[start:end_first], second[start:end_second]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("    else", "    elif", ("else", "elif")),
        ("item = f(x)", "items = f(x)", ("item", "items")),
        ("count = 1", "offset = 1", ("count", "offset")),
        ('x = f"a {b}', 'x = "a {b}', ("f", "")),
        ("f(a=col)\n", "f(a=col, b=1)\n", ("", ", b=1")),
    ],
)
def test_differing_spans_helper(first, second, expected):
    assert differing_spans(first, second) == expected


@pytest.mark.parametrize("name", NEW_TASKS)
def test_sizes_are_the_defaults(name):
    spec = _SPECS[name]
    task = get_task(name)
    assert (spec.n_train, spec.n_test) == (DEFAULT_N_TRAIN, DEFAULT_N_TEST)
    assert len(task.xs) == spec.n_train
    assert len(task.xs_test) == spec.n_test


@pytest.mark.parametrize("name", NEW_TASKS)
def test_classes_balanced(name):
    datapoints = get_task(name).xs + get_task(name).xs_test
    targets = Counter(d.target_tokid for d in datapoints)
    alts = Counter(d.target_alt_tokid for d in datapoints)
    # Every pair contains one prompt of each class, so both classes have len(datapoints) prompts.
    assert sum(targets.values()) == len(datapoints)
    assert sum(alts.values()) == len(datapoints)
    if name != "var_if":
        assert len(targets) == 1
        assert len(alts) == 1
        assert not set(targets) & set(alts)
        return

    # var_if draws its two names symmetrically, so a name is the clean answer
    # about as often as the patched one.
    assert set(targets) == set(alts)
    lower_first = sum(d.target_tokid < d.target_alt_tokid for d in datapoints)
    assert 0.4 < lower_first / len(datapoints) < 0.6


def test_else_elif_differs_in_keyword(encoding):
    for inputs, patch, target, alt in decoded_pairs(encoding, "else_elif"):
        assert differing_spans(inputs, patch) == ("else", "elif")
        assert inputs.endswith("else")
        assert " isinstance(" in inputs.split("if", 1)[1]
        assert target == ":\n"
        assert alt == " isinstance"


def test_while_return_true_differs_in_keyword(encoding):
    for inputs, patch, target, alt in decoded_pairs(encoding, "while_return_true"):
        assert differing_spans(inputs, patch) == ("while", "return")
        assert inputs.endswith(" while True")
        assert patch.endswith(" return True")
        assert target == ":\n"
        assert alt == "\n"


def test_fstring_brace_differs_in_prefix(encoding):
    for inputs, patch, target, alt in decoded_pairs(encoding, "fstring_brace"):
        assert differing_spans(inputs, patch) == ("f", "")
        line = inputs.rsplit("\n", 1)[-1]
        string = line[line.index('f"') + 2 :]
        assert string.endswith("}")
        assert string.count("{") == string.count("}") >= 1
        assert '"' not in string
        assert target == '"\n'
        assert alt == '".'


def test_final_kwarg_differs_in_earlier_call(encoding):
    def keywords(line: str) -> list[str]:
        return re.findall(r"(\w+)=", line)

    for inputs, patch, target, alt in decoded_pairs(encoding, "final_kwarg"):
        old, new = differing_spans(inputs, patch)
        assert old == ""
        extra = re.fullmatch(r", (\w+)=\w+", new)
        assert extra is not None, new

        current = inputs.rsplit("\n", 1)[-1]
        function = re.search(r" = (\w+)\(", current).group(1)
        earlier = next(line for line in inputs.split("\n") if f" = {function}(" in line)
        patched_earlier = next(line for line in patch.split("\n") if f" = {function}(" in line)
        assert keywords(earlier) == keywords(current)
        assert keywords(patched_earlier) == keywords(current) + [extra.group(1)]
        assert target == ")\n"
        assert alt == ","


def test_var_if_differs_in_assigned_name(encoding):
    for inputs, patch, target, alt in decoded_pairs(encoding, "var_if"):
        assigned, other = target.strip(), alt.strip()
        assert differing_spans(inputs, patch) == (assigned, other)
        *_, assignment, test_line = inputs.split("\n")
        assert assignment.strip().startswith(f"{assigned} = ")
        assert test_line.strip() == "if"
        # Each prompt names its own answer once, on the assignment, and never the other.
        assert re.findall(rf"\b{assigned}\b", inputs) == [assigned]
        assert not re.search(rf"\b{other}\b", inputs)
        assert not re.search(rf"\b{assigned}\b", patch)


@pytest.mark.parametrize("name", NEW_TASKS)
def test_builds_with_fewer_merges(name, encoding_1024):
    task = build_task(_SPECS[name], encoding_1024)
    assert len(task.xs) == DEFAULT_N_TRAIN
    assert len(task.xs_test) == DEFAULT_N_TEST
    for datapoint in task.xs + task.xs_test:
        assert datapoint.target_tokid != datapoint.target_alt_tokid
        assert max(datapoint.target_tokid, datapoint.target_alt_tokid) < 1024


def test_fallback_answers_with_fewer_merges(encoding_1024):
    # This encoding has no ` isinstance` or `".` token, so the first pieces are used.
    else_elif = build_task(_SPECS["else_elif"], encoding_1024).xs[0]
    assert encoding_1024.decode([else_elif.target_alt_tokid]) == " is"
    fstring = build_task(_SPECS["fstring_brace"], encoding_1024).xs[0]
    assert encoding_1024.decode([fstring.target_alt_tokid]) == '"'


@pytest.mark.parametrize("name", NEW_TASKS)
def test_builds_with_tinypython(name):
    try:
        encoding = get_encoding("tinypython_2k")
    except FileNotFoundError as err:
        pytest.skip(f"tinypython_2k is not in the store: {err}")
    task = get_task(name, encoding)
    assert len(task.xs) == DEFAULT_N_TRAIN
    assert len(task.xs_test) == DEFAULT_N_TEST
