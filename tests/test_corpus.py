"""Tests of the standard-library corpus: file list, split, deduplication and token arrays."""

import numpy as np
import pytest

from registry import corpus
from registry.tokenizer import get_encoding


def write_package(root, files):
    for relpath, text in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return root


def test_split_of_is_stable_and_roughly_five_percent():
    relpaths = [f"pkg/module_{i}.py" for i in range(4000)]
    first = [corpus.split_of(relpath) for relpath in relpaths]
    assert first == [corpus.split_of(relpath) for relpath in relpaths]
    fraction = first.count("validation") / len(first)
    assert 0.03 < fraction < 0.07


def test_extra_dir_filters_and_deduplicates(tmp_path):
    root = write_package(
        tmp_path / "code",
        {
            "a.py": "x = 1\n",
            "copy_of_a.py": "x = 1\n",
            "broken.py": "def f(:\n",
            "latin1.py": b"s = '\xe9'\n",
            "notes.txt": "not python\n",
            "__pycache__/a.py": "y = 2\n",
            "sub/b.py": "y = 'b'\n",
        },
    )
    files = corpus.list_files("all", [root], include_stdlib=False)
    assert [f.relpath for f in files] == ["extra/code/a.py", "extra/code/sub/b.py"]
    assert all(f.split in ("train", "validation") for f in files)


def test_splits_partition_the_corpus(tmp_path):
    root = write_package(tmp_path / "code", {f"m{i}.py": f"value = {i}\n" for i in range(40)})
    train = corpus.list_files("train", [root], validation_fraction=0.3, include_stdlib=False)
    validation = corpus.list_files(
        "validation", [root], validation_fraction=0.3, include_stdlib=False
    )
    assert validation
    assert not {f.relpath for f in train} & {f.relpath for f in validation}
    assert len(train) + len(validation) == 40


def test_token_array_separates_files_with_eot(tmp_path):
    root = write_package(tmp_path / "code", {"a.py": "x = 1\n", "b.py": "y = 2\n"})
    encoding = get_encoding("stdlib_2k")
    files = corpus.list_files("all", [root], include_stdlib=False)
    tokens = corpus.token_array(encoding, files)
    assert tokens.dtype == np.uint16
    eot = encoding.eot_token
    assert int((tokens == eot).sum()) == 2
    assert tokens[-1] == eot
    assert encoding.decode(tokens.tolist()) == "x = 1\n<|endoftext|>y = 2\n<|endoftext|>"


def test_list_files_rejects_unknown_split():
    with pytest.raises(ValueError, match="invalid split 'test'"):
        corpus.list_files("test", include_stdlib=False)


def test_missing_extra_dir_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        corpus.list_files("all", [tmp_path / "absent"], include_stdlib=False)
