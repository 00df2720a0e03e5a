"""Train the ``stdlib_2k`` byte-level BPE tokenizer and export it in GPT-2 data-gym format.

Steps:

1. train a byte-level BPE with the ``tokenizers`` library on the corpus train split: the
   tinypython split regex as a ``Split`` pre-tokenizer, then ``ByteLevel`` without its own regex;
2. renumber it the way tiktoken expects: the 256 single bytes in GPT-2's byte order, then one id per
   merge in merge order, then ``<|endoftext|>`` as the last id (2047 for 2048 tokens);
3. write ``encoder.json`` and ``vocab.bpe``, which ``tiktoken.load.data_gym_to_mergeable_bpe_ranks``
   reads;
4. check with tiktoken that encoding then decoding reproduces every validation file exactly.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from registry import corpus

logger = logging.getLogger(__name__)

# The tinypython_2k split pattern (same for this project's tokenizer).
SPLIT_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
ENCODING_NAME = "stdlib_2k"
VOCAB_SIZE = 2048
N_BYTE_TOKENS = 256


def gpt2_byte_order() -> list[int]:
    """Return the 256 byte values in the order GPT-2's data-gym files give them ids 0..255."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    return printable + [b for b in range(256) if b not in printable]


def bytes_to_unicode() -> dict[int, str]:
    """Map each byte to the printable character that stands for it in data-gym files."""
    order = gpt2_byte_order()
    mapping = {}
    n_shifted = 0
    for b in order:
        if chr(b).isprintable() and chr(b) != " ":
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + n_shifted)
            n_shifted += 1
    return mapping


def train_hf_bpe(documents: Sequence[str], vocab_size: int = VOCAB_SIZE) -> Tokenizer:
    """Train a byte-level BPE with ``vocab_size`` tokens, one of them ``<|endoftext|>``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[corpus.EOT_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(documents, trainer=trainer)
    return tokenizer


def _merges_of(tokenizer: Tokenizer) -> list[tuple[str, str]]:
    model = json.loads(tokenizer.to_str())["model"]
    merges = model["merges"]
    # tokenizers >= 0.20 stores merges as pairs, older versions as "a b" strings.
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]


def export_data_gym(tokenizer: Tokenizer, out_dir: Path, vocab_size: int = VOCAB_SIZE) -> None:
    """Write ``encoder.json`` and ``vocab.bpe``, with ids renumbered for tiktoken."""
    merges = _merges_of(tokenizer)
    n_merges = vocab_size - N_BYTE_TOKENS - 1
    if len(merges) < n_merges:
        raise ValueError(
            f"BPE training produced {len(merges)} merges, fewer than the {n_merges} needed for "
            f"{vocab_size} tokens; train on more text"
        )
    merges = merges[:n_merges]

    byte_chars = bytes_to_unicode()
    encoder = {byte_chars[b]: i for i, b in enumerate(gpt2_byte_order())}
    for first, second in merges:
        merged = first + second
        if merged in encoder:
            raise ValueError(f"merge {first!r} + {second!r} repeats token {merged!r}")
        encoder[merged] = len(encoder)
    encoder[corpus.EOT_TOKEN] = len(encoder)
    assert len(encoder) == vocab_size

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "encoder.json").write_text(json.dumps(encoder, ensure_ascii=False), "utf-8")
    merge_lines = "".join(f"{first} {second}\n" for first, second in merges)
    (out_dir / "vocab.bpe").write_text("#version: 0.2\n" + merge_lines, "utf-8")


def load_data_gym_encoding(folder: Path, name: str = ENCODING_NAME) -> tiktoken.Encoding:
    """Build a tiktoken encoding from a data-gym folder (to check files before the registry loads them)."""
    ranks = data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(folder / "vocab.bpe"), encoder_json_file=str(folder / "encoder.json")
    )
    return tiktoken.Encoding(
        name=name,
        pat_str=SPLIT_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={corpus.EOT_TOKEN: len(ranks)},
    )


def check_round_trip(encoding: tiktoken.Encoding, files: Sequence[corpus.CorpusFile]) -> int:
    """Encode and decode each file; raise ValueError naming the first that changes. Return tokens."""
    n_tokens = 0
    for corpus_file, text in zip(files, corpus.iter_documents(files), strict=True):
        tokens = encoding.encode_ordinary(text)
        n_tokens += len(tokens)
        if encoding.decode(tokens) != text:
            raise ValueError(f"tokenizer round trip changed {corpus_file.relpath}")
    return n_tokens


def build_tokenizer(
    out_dir: Path,
    extra_dirs: Sequence[str] = (),
    overwrite: bool = False,
    include_stdlib: bool = True,
) -> tiktoken.Encoding:
    """Train, export and check the tokenizer; return it as a tiktoken encoding.

    Raises FileExistsError when ``out_dir`` already has tokenizer files, unless ``overwrite``:
    models trained on the old ones would read wrong token ids from new ones.
    """
    existing = [
        out_dir / name for name in ("encoder.json", "vocab.bpe") if (out_dir / name).exists()
    ]
    if existing and not overwrite:
        raise FileExistsError(
            f"{', '.join(str(path) for path in existing)} exist; models trained with them need "
            "them unchanged. Pass another --out, or --overwrite to replace them"
        )
    started = time.perf_counter()
    if not include_stdlib and not extra_dirs:
        raise ValueError("without the standard library the corpus is empty; pass --extra-dir")
    train_files = corpus.list_files("train", extra_dirs, include_stdlib=include_stdlib)
    tokenizer = train_hf_bpe(list(corpus.iter_documents(train_files)))
    logger.info(
        "trained BPE on %d files in %.1f s", len(train_files), time.perf_counter() - started
    )

    export_data_gym(tokenizer, out_dir)
    encoding = load_data_gym_encoding(out_dir)
    validation_files = corpus.list_files("validation", extra_dirs, include_stdlib=include_stdlib)
    if not validation_files:
        logger.warning("the validation split has no files, so the round trip was not checked")
        return encoding
    n_tokens = check_round_trip(encoding, validation_files)
    n_bytes = sum(f.path.stat().st_size for f in validation_files)
    logger.info(
        "validation round trip exact on %d files: %d tokens, %.2f bytes/token",
        len(validation_files),
        n_tokens,
        n_bytes / max(n_tokens, 1),
    )
    return encoding
