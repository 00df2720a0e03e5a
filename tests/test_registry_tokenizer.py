"""Tests for registry.tokenizer and the tiktoken plugin, on a tiny data-gym tokenizer."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tiktoken

from registry.store import Store
from registry.tokenizer import (
    ENDOFTEXT,
    TokenizerFilesError,
    encoding_kwargs,
    get_encoding,
    token_label,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# Merges in byte form; b"\xe2\x82" is the first two bytes of "€" (e2 82 ac), so that token is
# not valid UTF-8 on its own.
MERGES = [(b"d", b"e"), (b"de", b"f"), (b" ", b"def"), (b"\xe2", b"\x82"), (b"\xe2\x82", b"\xac")]


def data_gym_alphabet() -> dict[int, str]:
    """Return GPT-2's byte -> printable character map used by data-gym files."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    alphabet = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in alphabet:
            alphabet[b] = chr(256 + n)
            n += 1
    return alphabet


def write_data_gym(folder: Path, merges=MERGES, endoftext_id: int | None = None) -> int:
    """Write encoder.json + vocab.bpe with 256 byte tokens plus `merges`; return the vocab size."""
    alphabet = data_gym_alphabet()

    def to_gym(token: bytes) -> str:
        return "".join(alphabet[b] for b in token)

    byte_order = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    byte_order += [b for b in range(256) if b not in byte_order]
    encoder = {to_gym(bytes([b])): i for i, b in enumerate(byte_order)}
    for first, second in merges:
        encoder[to_gym(first + second)] = len(encoder)
    encoder[ENDOFTEXT] = len(encoder) if endoftext_id is None else endoftext_id

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "encoder.json").write_text(json.dumps(encoder))
    merge_lines = "".join(f"{to_gym(a)} {to_gym(b)}\n" for a, b in merges)
    (folder / "vocab.bpe").write_text("#version: 0.2\n" + merge_lines)
    return 256 + len(merges) + 1


@pytest.fixture
def store(tmp_path: Path) -> Store:
    write_data_gym(tmp_path / "store" / "stdlib_2k")
    write_data_gym(tmp_path / "store" / "tinypython", merges=MERGES[:2])
    return Store(tmp_path / "store")


def test_encoding_sizes_and_endoftext(store):
    stdlib = get_encoding("stdlib_2k", store)
    assert stdlib.name == "stdlib_2k"
    assert stdlib.n_vocab == 256 + len(MERGES) + 1
    assert stdlib.eot_token == stdlib.n_vocab - 1
    assert stdlib.encode(ENDOFTEXT, allowed_special="all") == [stdlib.eot_token]

    tinypython = get_encoding("tinypython_2k", store)
    assert tinypython.n_vocab == 256 + 2 + 1
    assert get_encoding("stdlib_2k", store) is stdlib


def test_merges_applied(store):
    encoding = get_encoding("stdlib_2k", store)
    tokens = encoding.encode("x def")
    assert [encoding.decode_single_token_bytes(t) for t in tokens] == [b"x", b" def"]


@pytest.mark.parametrize(
    "text", ["", "def f(x):\n    return x\n", "price: 5€ or 6 €€", "日本 é\t\r\n"]
)
def test_round_trip(store, text):
    encoding = get_encoding("stdlib_2k", store)
    tokens = encoding.encode(text)
    assert encoding.decode(tokens) == text
    pieces = b"".join(encoding.decode_single_token_bytes(t) for t in tokens)
    assert pieces == text.encode("utf-8")


def test_partial_utf8_label(store):
    encoding = get_encoding("stdlib_2k", store)
    partial_id = encoding.encode_single_token(b"\xe2\x82")
    assert token_label(encoding, partial_id) == "\\xe2\\x82"
    assert token_label(encoding, encoding.encode_single_token(b"\xe2\x82\xac")) == "€"
    assert token_label(encoding, encoding.encode_single_token(b" def")) == " def"
    assert token_label(encoding, encoding.eot_token) == ENDOFTEXT


def test_labels_of_split_character(store):
    # "é" is not merged, so it encodes as two single-byte tokens.
    encoding = get_encoding("stdlib_2k", store)
    labels = [token_label(encoding, t) for t in encoding.encode("é")]
    assert labels == ["\\xc3", "\\xa9"]


@pytest.mark.parametrize("token_id", [-1, 263, 10**30])
def test_label_of_unknown_id_rejected(store, token_id):
    encoding = get_encoding("stdlib_2k", store)
    with pytest.raises(ValueError, match=f"token id {token_id} is outside encoding stdlib_2k"):
        token_label(encoding, token_id)


def test_unknown_name_rejected(store):
    with pytest.raises(ValueError, match="Unknown encoding nope"):
        get_encoding("nope", store)
    with pytest.raises(ValueError, match="Unknown encoding 'nope'. Available: tinypython_2k"):
        encoding_kwargs("nope", store)


def test_inconsistent_files_rejected(tmp_path):
    folder = tmp_path / "store" / "stdlib_2k"
    write_data_gym(folder)
    encoder = json.loads((folder / "encoder.json").read_text())
    first, second = list(encoder)[256:258]
    encoder[first], encoder[second] = encoder[second], encoder[first]
    (folder / "encoder.json").write_text(json.dumps(encoder))
    with pytest.raises(TokenizerFilesError, match="does not match"):
        get_encoding("stdlib_2k", Store(tmp_path / "store"))


def test_endoftext_must_be_last(tmp_path):
    write_data_gym(tmp_path / "store" / "stdlib_2k", endoftext_id=5000)
    with pytest.raises(TokenizerFilesError, match="maps <\\|endoftext\\|> to 5000"):
        get_encoding("stdlib_2k", Store(tmp_path / "store"))


def test_missing_files_raise_not_found(tmp_path):
    (tmp_path / "store").mkdir()
    with pytest.raises(FileNotFoundError, match="stdlib_2k/encoder.json not found"):
        get_encoding("stdlib_2k", Store(tmp_path / "store"))


def test_builtin_names_still_listed():
    names = tiktoken.list_encoding_names()
    assert "gpt2" in names
    assert "cl100k_base" in names
    assert "stdlib_2k" in names
    assert "tinypython_2k" in names


def test_tiktoken_plugin_uses_env_store(tmp_path):
    vocab_size = write_data_gym(tmp_path / "store" / "stdlib_2k")
    code = (
        "import tiktoken\n"
        "encoding = tiktoken.get_encoding('stdlib_2k')\n"
        "print(encoding.n_vocab, encoding.eot_token, encoding.encode(' def'))\n"
    )
    env = {
        **os.environ,
        "CIRCUIT_SPARSITY_STORE": str(tmp_path / "store"),
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken-cache"),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(vocab_size), str(vocab_size - 1), f"[{256 + 2}]"]


def test_tiktoken_plugin_serves_both_encodings(store, tmp_path):
    # The project's two encodings resolve in one process, and the built-in names stay listed.
    code = (
        "import tiktoken\n"
        "stdlib = tiktoken.get_encoding('stdlib_2k')\n"
        "tiny = tiktoken.get_encoding('tinypython_2k')\n"
        "print(stdlib.n_vocab, tiny.n_vocab, 'gpt2' in tiktoken.list_encoding_names())\n"
        "print(stdlib.encode(' def'), tiny.encode(' def'))\n"
    )
    env = {
        **os.environ,
        "CIRCUIT_SPARSITY_STORE": str(store.root),
        "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken-cache"),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr

    sizes, ids = result.stdout.splitlines()
    assert sizes.split() == [str(256 + len(MERGES) + 1), str(256 + 2 + 1), "True"]
    assert ids == f"[{256 + 2}] [220, {256 + 1}]"  # 220: the space byte in data-gym order


def test_changed_files_not_served_stale(tmp_path):
    folder = tmp_path / "store" / "stdlib_2k"
    write_data_gym(folder)
    store = Store(tmp_path / "store")
    assert len(encoding_kwargs("stdlib_2k", store)["mergeable_ranks"]) == 256 + len(MERGES)

    # Same paths, new content: tiktoken's path-keyed file cache must not return the old files.
    write_data_gym(folder, merges=MERGES[:1])
    assert len(encoding_kwargs("stdlib_2k", store)["mergeable_ranks"]) == 256 + 1


def test_embedded_stdlib_round_trip():
    embedded = REPO_ROOT / "store"
    if not (embedded / "stdlib_2k" / "vocab.bpe").is_file():
        pytest.skip("the embedded store has no stdlib_2k tokenizer files yet")
    encoding = get_encoding("stdlib_2k", Store(embedded))
    assert encoding.n_vocab == 2048
    assert encoding.eot_token == 2047

    text = "def f(x):\n    return {'a': x}  # café € 日\n"
    tokens = encoding.encode(text)
    assert encoding.decode(tokens) == text
    assert b"".join(encoding.decode_single_token_bytes(t) for t in tokens) == text.encode()
    labels = [token_label(encoding, t) for t in tokens]
    assert "".join(labels).startswith("def f(x):")
