"""Tests of the stdlib_2k tokenizer: data-gym export and the committed store files."""

import json
from pathlib import Path

import pytest

from registry import corpus
from training import bpe

STORE_TOKENIZER = Path(__file__).resolve().parents[1] / "store" / "stdlib_2k"

SAMPLE = 'def greet(name):\n    return f"hello {name}!"  # café\n\n\tx = [1, 22, 333]\n'


def test_gpt2_byte_order_is_a_permutation():
    order = bpe.gpt2_byte_order()
    assert sorted(order) == list(range(256))
    assert order[0] == ord("!")


def test_exported_tokenizer_round_trips(tmp_path):
    documents = [SAMPLE * 3, "class A:\n    pass\n", "import os\nprint(os.sep)\n"] * 5
    tokenizer = bpe.train_hf_bpe(documents, vocab_size=300)
    bpe.export_data_gym(tokenizer, tmp_path, vocab_size=290)
    encoding = bpe.load_data_gym_encoding(tmp_path, name="test_290")
    assert encoding.n_vocab == 290
    assert encoding.eot_token == 289
    tokens = encoding.encode_ordinary(SAMPLE)
    assert encoding.decode(tokens) == SAMPLE
    assert len(tokens) < len(SAMPLE.encode("utf-8"))


def test_export_rejects_too_few_merges(tmp_path):
    tokenizer = bpe.train_hf_bpe(["ab ab ab"], vocab_size=300)
    with pytest.raises(ValueError, match="fewer than the"):
        bpe.export_data_gym(tokenizer, tmp_path, vocab_size=2048)


def test_store_tokenizer_layout():
    encoder = json.loads((STORE_TOKENIZER / "encoder.json").read_text("utf-8"))
    assert len(encoder) == 2048
    assert encoder[corpus.EOT_TOKEN] == 2047
    merges = (STORE_TOKENIZER / "vocab.bpe").read_text("utf-8").splitlines()
    assert merges[0] == "#version: 0.2"
    assert len(merges) == 1 + 2048 - 256 - 1


@pytest.mark.slow  # lists the whole standard library, parsing every file
def test_store_tokenizer_round_trips_validation_files():
    encoding = bpe.load_data_gym_encoding(STORE_TOKENIZER)
    files = corpus.list_files("validation")[:10]
    assert files
    assert bpe.check_round_trip(encoding, files) > 0


def test_build_without_stdlib_reads_extra_dirs_only(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    extra = [str(repo / "inference"), str(repo / "registry")]
    encoding = bpe.build_tokenizer(tmp_path, extra, include_stdlib=False)

    text = (repo / "inference" / "gpt.py").read_text()
    assert encoding.decode(encoding.encode(text)) == text
    assert encoding.n_vocab == 2048
    with pytest.raises(ValueError, match="pass --extra-dir"):
        bpe.build_tokenizer(tmp_path / "empty", include_stdlib=False)
