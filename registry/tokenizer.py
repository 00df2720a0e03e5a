"""The project's tiktoken encodings and token labels.

Two byte-level BPE encodings are read from the store in GPT-2 data-gym format (`encoder.json`
plus `vocab.bpe`): `tinypython_2k` (folder `tinypython/`, OpenAI's release) and `stdlib_2k`
(folder `stdlib_2k/`, trained by this project on Python standard-library code). Both use the
split pattern below, and `<|endoftext|>` is the id after the last mergeable token
(2047 for a 2048-token vocabulary).

`tiktoken.get_encoding("stdlib_2k")` works too, through the plugin module
`tiktoken_ext/circuit_sparsity.py`, whenever this repository is importable.
"""

import hashlib
import json
import logging
import threading
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from registry.store import Store, default_store

logger = logging.getLogger(__name__)

# Store folder of each encoding's data-gym files.
ENCODING_FOLDERS = {"tinypython_2k": "tinypython", "stdlib_2k": "stdlib_2k"}

ENDOFTEXT = "<|endoftext|>"

# Pre-tokenization split pattern of tinypython_2k, also used for stdlib_2k.
SPLIT_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_encodings: dict[tuple[str, str], tiktoken.Encoding] = {}
_encodings_lock = threading.Lock()


class TokenizerFilesError(ValueError):
    """Data-gym tokenizer files that are inconsistent with each other."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_data_gym_ranks(vocab_bpe: Path, encoder_json: Path) -> dict[bytes, int]:
    """Return the mergeable ranks (token bytes -> id) of a data-gym `vocab.bpe` + `encoder.json`.

    Raises TokenizerFilesError if the ids in `encoder.json` do not follow the merge order.
    """
    # tiktoken copies these files into its own cache keyed by path only. Passing the content
    # hashes makes it replace a stale copy when a file at the same path has changed.
    try:
        return data_gym_to_mergeable_bpe_ranks(
            str(vocab_bpe),
            str(encoder_json),
            vocab_bpe_hash=_sha256(vocab_bpe),
            encoder_json_hash=_sha256(encoder_json),
        )
    except AssertionError as err:
        # tiktoken reports an encoder.json that disagrees with the merges by a bare assert.
        raise TokenizerFilesError(
            f"{encoder_json} does not match {vocab_bpe}: every token id must equal its merge rank "
            "(256 byte tokens, then one id per merge line). vocab.bpe must start with a "
            "'#version' line and end with a newline."
        ) from err


def encoding_kwargs(name: str, store: Store | None = None) -> dict:
    """Return the keyword arguments of `tiktoken.Encoding` for encoding `name`.

    Raises ValueError for a name other than those in ENCODING_FOLDERS, FileNotFoundError if the
    store lacks the files, and TokenizerFilesError if they are inconsistent.
    """
    if name not in ENCODING_FOLDERS:
        raise ValueError(f"Unknown encoding {name!r}. Available: {', '.join(ENCODING_FOLDERS)}.")
    store = store or default_store()
    folder = ENCODING_FOLDERS[name]
    encoder_json = store.local_path(f"{folder}/encoder.json")
    vocab_bpe = store.local_path(f"{folder}/vocab.bpe")

    ranks = load_data_gym_ranks(vocab_bpe, encoder_json)
    endoftext_id = len(ranks)
    stored_id = json.loads(encoder_json.read_bytes()).get(ENDOFTEXT)
    if stored_id is not None and stored_id != endoftext_id:
        raise TokenizerFilesError(
            f"{encoder_json} maps {ENDOFTEXT} to {stored_id}, but it must be the last id, "
            f"{endoftext_id}, right after the {len(ranks)} mergeable tokens."
        )

    logger.info("Loaded encoding %s from %s (%d tokens)", name, store.url(folder), len(ranks) + 1)
    return {
        "name": name,
        "pat_str": SPLIT_PATTERN,
        "mergeable_ranks": ranks,
        "special_tokens": {ENDOFTEXT: endoftext_id},
    }


def get_encoding(name: str, store: Store | None = None) -> tiktoken.Encoding:
    """Return the encoding `name`, built once per (name, store root).

    `tinypython_2k` and `stdlib_2k` come from `store` (default: MODEL_BASE_DIR). Any other
    name, such as "gpt2", goes to `tiktoken.get_encoding`, which ignores `store` and raises
    ValueError for an unknown name.
    """
    if name not in ENCODING_FOLDERS:
        return tiktoken.get_encoding(name)

    store = store or default_store()
    key = (name, store.root)
    with _encodings_lock:
        encoding = _encodings.get(key)
        if encoding is None:
            encoding = tiktoken.Encoding(**encoding_kwargs(name, store))
            _encodings[key] = encoding
    return encoding


def token_label(encoding: tiktoken.Encoding, token_id: int) -> str:
    """Return the text of one token, with bytes that are not valid UTF-8 alone as `\\xNN`.

    A token can hold part of a multi-byte character (b" \\xe2\\x80" is shown as
    ` \\xe2\\x80`). NOTE: a token whose text itself contains a backslash followed by `x` and
    two hex digits looks the same as an escaped byte. Raises ValueError for an id outside
    the vocabulary.
    """
    if not 0 <= token_id < encoding.n_vocab:
        raise ValueError(
            f"token id {token_id} is outside encoding {encoding.name}, whose ids are 0 to "
            f"{encoding.n_vocab - 1}"
        )
    token_bytes = encoding.decode_single_token_bytes(token_id)
    return token_bytes.decode("utf-8", errors="backslashreplace")
