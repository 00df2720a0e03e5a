"""Tasks written as JSON Lines files, so a user can add one without writing Python.

One JSON object per line, with text (not token ids):

    {"inputs": "x = \\"abc", "patch_from_inputs": "x = 'abc",
     "target": "\\"", "alt": "'", "suffix": "\\n", "split": "train"}

`suffix` (optional, default "\\n") is the code after the answer, used only to
check the tokenization; `alt_suffix` (optional) overrides it for the patched
sequence. `split` is "train" or "test"; lines without it are split 80/20 in file
order. Files named `<task>.jsonl` are found in the folders listed in the
environment variable `CIRCUIT_SPARSITY_TASKS` (separated by `os.pathsep`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from .base import Task, TextPair, encode_pair

logger = logging.getLogger(__name__)

TASKS_PATH_ENV = "CIRCUIT_SPARSITY_TASKS"
TASK_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
REQUIRED_KEYS = ("inputs", "patch_from_inputs", "target", "alt")
TRAIN_FRACTION_WITHOUT_SPLIT = 0.8


def task_dirs() -> list[Path]:
    """Return the folders named in `CIRCUIT_SPARSITY_TASKS`, in order."""
    value = os.environ.get(TASKS_PATH_ENV, "")
    return [Path(part) for part in value.split(os.pathsep) if part]


def list_jsonl_task_names() -> list[str]:
    names = []
    for folder in task_dirs():
        if folder.is_dir():
            names.extend(path.stem for path in folder.glob("*.jsonl"))
    return sorted(set(names))


def find_jsonl_task(name: str) -> Path | None:
    """Return the first `<name>.jsonl` in the task folders, or None.

    The name is checked against a strict pattern before any path is built, and the
    file must be one of the folder's own `*.jsonl` entries.
    """
    if not TASK_NAME_PATTERN.match(name):
        return None
    for folder in task_dirs():
        candidate = folder / f"{name}.jsonl"
        if candidate.is_file() and candidate.parent == folder:
            return candidate
    return None


def _parse_line(path: Path, line_number: int, line: str) -> tuple[TextPair, str | None]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{line_number}: invalid JSON ({err.msg})") from err
    if not isinstance(record, dict):
        raise ValueError(
            f"{path}:{line_number}: expected a JSON object, got {type(record).__name__}"
        )
    missing = [key for key in REQUIRED_KEYS if not isinstance(record.get(key), str)]
    if missing:
        raise ValueError(f"{path}:{line_number}: missing or non-string keys {missing}")
    split = record.get("split")
    if split not in (None, "train", "test"):
        raise ValueError(f"{path}:{line_number}: invalid split {split!r}; use 'train' or 'test'")
    pair = TextPair(
        inputs=record["inputs"],
        patch_from_inputs=record["patch_from_inputs"],
        target=record["target"],
        alt=record["alt"],
        suffix=record.get("suffix", "\n"),
        alt_suffix=record.get("alt_suffix"),
    )
    return pair, split


def load_jsonl_task(path: str | Path, encoding, *, name: str | None = None) -> Task:
    """Read a JSONL task file and tokenize every pair with `encoding`."""
    path = Path(path)
    name = name or path.stem
    train, test, unsplit = [], [], []
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            pair, split = _parse_line(path, line_number, line)
            datapoint = encode_pair(encoding, pair, task_name=name)
            {"train": train, "test": test, None: unsplit}[split].append(datapoint)

    n_unsplit_train = round(len(unsplit) * TRAIN_FRACTION_WITHOUT_SPLIT)
    train += unsplit[:n_unsplit_train]
    test += unsplit[n_unsplit_train:]
    if not train or not test:
        raise ValueError(
            f"{path}: task {name!r} needs at least one train and one test pair, got "
            f"{len(train)} train and {len(test)} test"
        )
    logger.info("loaded task %s from %s: %d train, %d test", name, path, len(train), len(test))
    return Task(
        name=name,
        xs=train,
        xs_test=test,
        description=f"loaded from {path.name}",
        encoding_name=encoding.name,
    )
