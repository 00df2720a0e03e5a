"""Task datasets: sizes, single-token answers, determinism and where the pairs differ."""

from __future__ import annotations

import json

import pytest

from registry.tasks import (
    DEFAULT_N_TEST,
    DEFAULT_N_TRAIN,
    TaskSpec,
    TaskTokenError,
    TextPair,
    build_task,
    encode_pair,
    get_task,
    list_task_names,
)
from registry.tasks.jsonl import TASKS_PATH_ENV
from registry.tokenizer import get_encoding

# The 20 tasks of Gao et al. 2025, all built in.
BUILT_IN = [
    "bracket_brace",
    "bracket_counting",
    "class_init",
    "else_elif",
    "enumerate_range",
    "final_kwarg",
    "for_while",
    "fstring_brace",
    "if_equals",
    "if_ternary",
    "indent_for",
    "lambda_func",
    "set_or_string",
    "set_or_string_fixedvarname",
    "single_double_quote",
    "var_if",
    "var_swap",
    "while_return_true",
    "with_as",
    "with_open",
]
# Tasks whose answer is the same token pair in every datapoint.
FIXED_ANSWER = sorted(set(BUILT_IN) - {"class_init", "var_if", "var_swap", "with_as"})


@pytest.fixture(scope="module")
def encoding():
    return get_encoding("stdlib_2k")


def test_list_task_names_has_built_ins():
    names = list_task_names()
    assert len(BUILT_IN) == 20
    for name in BUILT_IN:
        assert name in names


@pytest.mark.parametrize("name", BUILT_IN)
def test_task_sizes_and_answers(name, encoding):
    task = get_task(name)
    assert task.name == name
    assert len(task.xs) == DEFAULT_N_TRAIN
    assert len(task.xs_test) == DEFAULT_N_TEST
    assert task.encoding_name == "stdlib_2k"
    for datapoint in task.xs + task.xs_test:
        assert datapoint.inputs != datapoint.patch_from_inputs
        assert datapoint.target_tokid != datapoint.target_alt_tokid
        for token_id in (datapoint.target_tokid, datapoint.target_alt_tokid):
            text = encoding.decode_single_token_bytes(token_id).decode("utf-8")
            assert encoding.encode_ordinary(text) == [token_id]


@pytest.mark.parametrize("name", FIXED_ANSWER)
def test_fixed_answer_tasks_use_one_pair(name):
    task = get_task(name)
    pairs = {(d.target_tokid, d.target_alt_tokid) for d in task.xs + task.xs_test}
    assert len(pairs) == 1


@pytest.mark.parametrize("name", BUILT_IN)
def test_train_and_test_disjoint(name):
    task = get_task(name)
    train_inputs = {tuple(d.inputs) for d in task.xs}
    test_inputs = {tuple(d.inputs) for d in task.xs_test}
    assert len(train_inputs) == len(task.xs)
    assert not train_inputs & test_inputs


def test_build_is_deterministic(encoding):
    from registry.tasks import _SPECS

    for name in ("single_double_quote", "bracket_counting", "class_init"):
        first = build_task(_SPECS[name], encoding)
        second = build_task(_SPECS[name], encoding)
        assert first.xs == second.xs
        assert first.xs_test == second.xs_test


def test_get_task_cached_by_encoding_name():
    assert get_task("for_while") is get_task("for_while", "stdlib_2k")


def test_single_double_quote_differs_only_in_quote(encoding):
    task = get_task("single_double_quote")
    double = encoding.decode_single_token_bytes(task.xs[0].target_tokid).decode()
    assert double.startswith('"')
    for datapoint in task.xs[:100]:
        inputs = encoding.decode(datapoint.inputs)
        patch = encoding.decode(datapoint.patch_from_inputs)
        position = inputs.rindex('"')
        assert patch == inputs[:position] + "'" + inputs[position + 1 :]


def test_bracket_counting_nested_vs_flat(encoding):
    task = get_task("bracket_counting")
    for datapoint in task.xs[:100]:
        inputs = encoding.decode(datapoint.inputs)
        patch = encoding.decode(datapoint.patch_from_inputs)
        line = inputs.rsplit("\n", 1)[-1]
        patch_line = patch.rsplit("\n", 1)[-1]
        assert "[[" in line
        assert line.count("[") - line.count("]") == 2
        assert patch_line.count("[") - patch_line.count("]") == 1
        assert line.replace("[", "").replace("]", "") == patch_line.replace("[", "").replace(
            "]", ""
        )


def test_class_init_answer_is_copied_name(encoding):
    task = get_task("class_init")
    for datapoint in task.xs[:50]:
        inputs = encoding.decode(datapoint.inputs)
        target = encoding.decode([datapoint.target_tokid])
        assert inputs.endswith(f"self.{target.strip()} =")
        patch = encoding.decode(datapoint.patch_from_inputs)
        alt = encoding.decode([datapoint.target_alt_tokid])
        assert patch.endswith(f"self.{alt.strip()} =")


def test_multi_token_answer_raises_naming_it(encoding):
    def make_pair(context):
        return TextPair(inputs="x =", patch_from_inputs="y =", target=" hello world", alt=" 1")

    spec = TaskSpec("multi_token", make_pair, "an answer of two tokens", n_train=2, n_test=1)
    with pytest.raises(TaskTokenError, match="hello world"):
        build_task(spec, encoding)


def test_unnatural_split_raises(encoding):
    # stdlib_2k merges a closing quote with the newline after it, so a bare quote
    # is never what the model sees at this point.
    pair = TextPair(inputs='x = "abc', patch_from_inputs="x = 'abc", target='"', alt="'")
    with pytest.raises(TaskTokenError, match="does not emit"):
        encode_pair(encoding, pair, task_name="bare_quote")


def test_unknown_task_lists_available():
    with pytest.raises(KeyError, match="single_double_quote"):
        get_task("no_such_task")


def test_jsonl_task_loads(tmp_path, monkeypatch, encoding):
    lines = []
    for index in range(10):
        lines.append(
            {
                "inputs": f'value{index} = "abc',
                "patch_from_inputs": f"value{index} = 'abc",
                "target": '"\n',
                "alt": "'\n",
                "suffix": "x = 1\n",
            }
        )
    lines[0]["split"] = "test"
    path = tmp_path / "my_quotes.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    monkeypatch.setenv(TASKS_PATH_ENV, str(tmp_path))

    assert "my_quotes" in list_task_names()
    task = get_task("my_quotes", encoding)
    assert len(task.xs) + len(task.xs_test) == 10
    assert encoding.decode(task.xs_test[0].inputs) == 'value0 = "abc'
    assert task.xs[0].target_tokid == encoding.encode_single_token('"\n')


def test_jsonl_bad_line_names_file_and_line(tmp_path, monkeypatch, encoding):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"inputs": "x", "patch_from_inputs": "y", "target": " 1"}\n')
    monkeypatch.setenv(TASKS_PATH_ENV, str(tmp_path))
    with pytest.raises(ValueError, match=r"broken.jsonl:1: missing or non-string keys \['alt'\]"):
        get_task("broken", encoding)


def test_jsonl_name_cannot_escape_folder(tmp_path, monkeypatch, encoding):
    inner = tmp_path / "tasks"
    inner.mkdir()
    (tmp_path / "secret.jsonl").write_text("{}\n")
    monkeypatch.setenv(TASKS_PATH_ENV, str(inner))
    with pytest.raises(KeyError, match="unknown task"):
        get_task("../secret", encoding)
