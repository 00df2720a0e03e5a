"""The training tests' corpus: a copy, made once per test session, of two source folders.

Tests compare runs with each other (a resumed run against an uninterrupted one, two ranks against
one process). Reading the repository's own folders, they failed when a file was edited between
two runs of one test. The copy keeps every run of a session on the same text.
"""

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("inference", "registry")


@functools.cache
def corpus_dirs() -> list[str]:
    """Return the folders of the copy (deleted when the test session ends)."""
    root = Path(tempfile.mkdtemp(prefix="training-corpus-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    for name in FOLDERS:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return [str(root / name) for name in FOLDERS]


def extra_dirs_value() -> str:
    """Return the corpus folders as the JSON list that `--set train.extra_dirs=...` takes."""
    return json.dumps(corpus_dirs())
