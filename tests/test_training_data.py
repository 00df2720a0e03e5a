"""The token cache of training.data: a second load reads no corpus file, an edit re-encodes."""

import os

from registry import corpus
from registry.tokenizer import get_encoding
from training.data import load_split_tokens


def _write_corpus(folder, n_files=12):
    folder.mkdir()
    for index in range(n_files):
        (folder / f"module_{index}.py").write_text(f"def f{index}(x):\n    return x + {index}\n")


def test_cached_split_skips_listing(tmp_path, monkeypatch):
    _write_corpus(tmp_path / "code")
    encoding = get_encoding("stdlib_2k")
    arguments = (encoding, "train", [str(tmp_path / "code")], tmp_path / "cache")
    first = load_split_tokens(*arguments, include_stdlib=False)

    def fail(*args, **kwargs):
        raise AssertionError("list_files ran although the split is cached")

    monkeypatch.setattr(corpus, "list_files", fail)
    second = load_split_tokens(*arguments, include_stdlib=False)
    assert second.tolist() == first.tolist()


def test_edited_file_is_encoded_again(tmp_path):
    _write_corpus(tmp_path / "code")
    encoding = get_encoding("stdlib_2k")
    arguments = (encoding, "all", [str(tmp_path / "code")], tmp_path / "cache")
    before = load_split_tokens(*arguments, include_stdlib=False)

    edited = tmp_path / "code" / "module_0.py"
    edited.write_text("def renamed(value):\n    return value * 2\n")
    stat = edited.stat()
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    after = load_split_tokens(*arguments, include_stdlib=False)

    assert after.tolist() != before.tolist()
    assert len(list((tmp_path / "cache").glob("all-*.npy"))) == 2


def test_validation_fraction_changes_key(tmp_path):
    _write_corpus(tmp_path / "code", n_files=30)
    encoding = get_encoding("stdlib_2k")
    extra_dirs = [str(tmp_path / "code")]
    lengths = []
    for fraction in (0.2, 0.5):
        tokens = load_split_tokens(
            encoding,
            "validation",
            extra_dirs,
            tmp_path / "cache",  # one cache for both fractions
            include_stdlib=False,
            validation_fraction=fraction,
        )
        files = corpus.list_files("validation", extra_dirs, fraction, False)
        assert tokens.tolist() == corpus.token_array(encoding, files).tolist(), fraction
        lengths.append(len(tokens))
    assert lengths[0] < lengths[1]
