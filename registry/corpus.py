"""The Python standard-library corpus: pretraining text for the embedded store's models.

The corpus is the running interpreter's standard-library ``.py`` files (the ``stdlib`` path of
``sysconfig``), plus optional extra folders of ``.py`` files. The file list is deterministic:

1. walk the folders, skipping ``site-packages``, ``__pycache__`` and the machine-specific
   ``_sysconfigdata_*`` / ``config-*`` files;
2. keep files that decode as UTF-8 and parse with ``ast.parse`` (this drops the deliberately broken
   files that ``test/`` ships, e.g. bad-syntax and bad-encoding fixtures);
3. deduplicate by SHA-256 of the content, keeping the first relative path in sorted order;
4. split into train and validation by file, with a stable hash of the relative path
   (``VALIDATION_FRACTION`` of files go to validation).

The ``test/`` packages are included on purpose: they are half of the standard library's code and
full of string literals, brackets and small functions, which is what the tasks probe.
The list depends on the Python version, so results are reproducible only on the same interpreter.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import logging
import os
import sysconfig
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    import tiktoken

logger = logging.getLogger(__name__)

Split = Literal["train", "validation", "all"]
SPLITS: tuple[str, ...] = ("train", "validation", "all")
VALIDATION_FRACTION = 0.05
# Files larger than this are skipped: the only one in CPython 3.11 is pydoc_data/topics.py
# (757 kB of documentation prose in one string), which is not code.
MAX_FILE_BYTES = 500_000
EOT_TOKEN = "<|endoftext|>"

_SKIPPED_DIR_NAMES = {"site-packages", "__pycache__"}


@dataclass(frozen=True)
class CorpusFile:
    """One deduplicated source file of the corpus."""

    relpath: str  # "/"-separated, relative to its root; extra roots are prefixed "extra/<name>/"
    path: Path
    sha256: str
    split: Literal["train", "validation"]


def stdlib_root() -> Path:
    """Return the standard-library folder of the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relpath: str, validation_fraction: float = VALIDATION_FRACTION) -> str:
    """Return "validation" or "train" for a relative path, stable across runs and machines."""
    digest = hashlib.sha256(relpath.encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    return "validation" if bucket < validation_fraction else "train"


def _is_skipped(relpath: str) -> bool:
    parts = relpath.split("/")
    if any(part in _SKIPPED_DIR_NAMES or part.startswith("config-") for part in parts[:-1]):
        return True
    return parts[-1].startswith("_sysconfigdata_")


def _walk_py_files(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIR_NAMES)
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            path = Path(dirpath) / filename
            relpath = path.relative_to(root).as_posix()
            if not _is_skipped(relpath):
                yield relpath, path


def _read_source(path: Path) -> str | None:
    """Return the file's text, or None when it is too large, not UTF-8 or not valid Python."""
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old test files
            ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    return text


@functools.cache
def _accepted_source_sha256(path: str, mtime_ns: int, size: int) -> str | None:
    """Return the SHA-256 of an accepted source file, None for a rejected one.

    Cached per process because ``ast.parse`` of the whole standard library takes several seconds.
    The modification time and size are part of the key, so an edited file is checked again.
    """
    text = _read_source(Path(path))
    if text is None:
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _candidate_files(
    extra_dirs: Sequence[str | os.PathLike], include_stdlib: bool
) -> list[tuple[str, Path]]:
    candidates = list(_walk_py_files(stdlib_root())) if include_stdlib else []
    for extra in extra_dirs:
        extra_path = Path(extra)
        if not extra_path.is_dir():
            raise FileNotFoundError(
                f"extra corpus folder {str(extra_path)!r} is not a directory; pass a folder of .py files"
            )
        prefix = f"extra/{extra_path.resolve().name}/"
        candidates.extend((prefix + rel, path) for rel, path in _walk_py_files(extra_path))
    candidates.sort(key=lambda item: item[0])
    return candidates


def list_files(
    split: Split = "all",
    extra_dirs: Sequence[str | os.PathLike] = (),
    validation_fraction: float = VALIDATION_FRACTION,
    include_stdlib: bool = True,
) -> list[CorpusFile]:
    """List the corpus files of one split, sorted by relative path.

    ``include_stdlib=False`` keeps only the extra folders (small corpora for tests).
    """
    if split not in SPLITS:
        raise ValueError(f"invalid split {split!r}; expected one of {SPLITS}")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")

    seen_hashes: set[str] = set()
    files: list[CorpusFile] = []
    n_rejected = 0
    for relpath, path in _candidate_files(extra_dirs, include_stdlib):
        stat = path.stat()
        sha256 = _accepted_source_sha256(str(path), stat.st_mtime_ns, stat.st_size)
        if sha256 is None:
            n_rejected += 1
            continue
        if sha256 in seen_hashes:
            continue
        seen_hashes.add(sha256)
        file_split = split_of(relpath, validation_fraction)
        if split in ("all", file_split):
            files.append(CorpusFile(relpath, path, sha256, file_split))

    logger.debug("corpus split %s: %d files (%d rejected)", split, len(files), n_rejected)
    return files


def source_fingerprint(
    extra_dirs: Sequence[str | os.PathLike] = (), include_stdlib: bool = True
) -> str:
    """Return a SHA-256 over the relative path, size and modification time of every candidate file.

    It reads no file contents, so it costs a directory walk where ``list_files`` parses every file,
    and caches of data derived from the corpus can use it as their key. Adding, removing or editing
    a candidate file changes it.
    """
    digest = hashlib.sha256()
    for relpath, path in _candidate_files(extra_dirs, include_stdlib):
        stat = path.stat()
        digest.update(f"{relpath}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def iter_documents(files: Iterable[CorpusFile]) -> Iterator[str]:
    """Yield the text of each file, in order."""
    for corpus_file in files:
        yield corpus_file.path.read_text(encoding="utf-8")


def token_array(encoding: tiktoken.Encoding, files: Sequence[CorpusFile]) -> np.ndarray:
    """Encode the files into one uint16 array, with ``<|endoftext|>`` after every file."""
    if encoding.n_vocab > 2**16:
        raise ValueError(
            f"encoding {encoding.name!r} has {encoding.n_vocab} tokens, too many for uint16"
        )
    eot = encoding.encode_single_token(EOT_TOKEN)
    documents = list(iter_documents(files))
    encoded = encoding.encode_ordinary_batch(documents, num_threads=2)
    pieces = []
    for tokens in encoded:
        pieces.append(np.asarray(tokens, dtype=np.uint16))
        pieces.append(np.asarray([eot], dtype=np.uint16))
    if not pieces:
        return np.zeros(0, dtype=np.uint16)
    return np.concatenate(pieces)
