"""Datapoints, tasks and the builder that turns code templates into token pairs.

A task is a binary next-token choice on Python code. Each datapoint is a pair of
token sequences that differ only in what decides the answer: `inputs` is followed
by `target_tokid` in natural code, `patch_from_inputs` by `target_alt_tokid`.

Templates produce text, and the builder tokenizes it. For every pair the builder
encodes the full line (prefix, answer and the code that follows) and checks that
the tokenizer really emits the answer as one token right after the prefix. This
catches answers that byte-pair merges would glue to a neighbour (for example a
closing quote merged with the newline after it).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_N_TRAIN = 512
DEFAULT_N_TEST = 128
MAX_ATTEMPTS_PER_PAIR = 50


class TaskTokenError(ValueError):
    """An answer string is not one token, or the tokenizer splits the text differently."""


@dataclass(frozen=True)
class Datapoint:
    """One contrastive pair: two token sequences and the correct next token of each."""

    inputs: list[int]
    patch_from_inputs: list[int]
    target_tokid: int
    target_alt_tokid: int


@dataclass(frozen=True)
class Task:
    """A named binary next-token task with train (`xs`) and test (`xs_test`) pairs."""

    name: str
    xs: list[Datapoint]
    xs_test: list[Datapoint]
    description: str = ""
    encoding_name: str = ""


@dataclass(frozen=True)
class TextPair:
    """The text of one pair before tokenization.

    `suffix` is the code that follows the answer in the complete line. It is not
    part of the datapoint and serves only to check how the tokenizer splits the
    answer in natural code.
    """

    inputs: str
    patch_from_inputs: str
    target: str
    alt: str
    suffix: str = "\n"
    alt_suffix: str | None = None


@dataclass
class TemplateContext:
    """Seeded RNG and tokenizer checks available to a template function.

    `emits_answer(prefix, answer, suffix)` is true when the encoding emits `answer`
    as one token right after `prefix` in the text `prefix + answer + suffix`.
    """

    rng: random.Random
    is_single_token: Callable[[str], bool]
    emits_answer: Callable[[str, str, str], bool]


@dataclass(frozen=True)
class TaskSpec:
    """A task defined by a template function that draws one `TextPair` per call."""

    name: str
    make_pair: Callable[[TemplateContext], TextPair]
    description: str
    n_train: int = DEFAULT_N_TRAIN
    n_test: int = DEFAULT_N_TEST
    seed: int = 0


def single_token_id(encoding, text: str, *, task_name: str) -> int:
    """Return the token id of `text`, raising TaskTokenError when it is not one token."""
    token_ids = encoding.encode_ordinary(text)
    if len(token_ids) != 1:
        pieces = [encoding.decode_single_token_bytes(t) for t in token_ids]
        raise TaskTokenError(
            f"task {task_name!r}: answer {text!r} is not a single token in encoding "
            f"{encoding.name!r} (it splits into {pieces}); choose an answer string that "
            "this BPE emits as one token at the decision point"
        )
    return token_ids[0]


def _encode_checked(encoding, prefix: str, answer: str, suffix: str, *, task_name: str):
    """Encode `prefix` and check that `answer` follows it as one token in the full text."""
    prefix_ids = encoding.encode_ordinary(prefix)
    answer_id = single_token_id(encoding, answer, task_name=task_name)
    full_ids = encoding.encode_ordinary(prefix + answer + suffix)
    n = len(prefix_ids)
    if full_ids[:n] != prefix_ids or len(full_ids) <= n or full_ids[n] != answer_id:
        emitted = [encoding.decode_single_token_bytes(t) for t in full_ids[n : n + 2]]
        raise TaskTokenError(
            f"task {task_name!r}: in natural code the tokenizer {encoding.name!r} does not "
            f"emit answer {answer!r} as one token after the prefix; it emits {emitted} "
            f"(text: {(prefix + answer + suffix)[-60:]!r}). Change the template so the "
            "prefix ends at a token boundary, or pick the answer the BPE actually emits"
        )
    return prefix_ids, answer_id


def encode_pair(encoding, pair: TextPair, *, task_name: str) -> Datapoint:
    """Tokenize one `TextPair`, checking both answers in context."""
    inputs, target_id = _encode_checked(
        encoding, pair.inputs, pair.target, pair.suffix, task_name=task_name
    )
    alt_suffix = pair.suffix if pair.alt_suffix is None else pair.alt_suffix
    patch, alt_id = _encode_checked(
        encoding, pair.patch_from_inputs, pair.alt, alt_suffix, task_name=task_name
    )
    if target_id == alt_id:
        raise TaskTokenError(
            f"task {task_name!r}: target and alternative are the same token "
            f"{pair.target!r}; a pair needs two different answers"
        )
    return Datapoint(
        inputs=inputs, patch_from_inputs=patch, target_tokid=target_id, target_alt_tokid=alt_id
    )


def build_task(spec: TaskSpec, encoding) -> Task:
    """Draw `n_train + n_test` distinct pairs from the template, deterministically.

    The RNG is seeded from the task name and seed, so the same encoding always gives
    the same task. Test pairs never repeat a train pair's `inputs` text.
    """
    rng = random.Random(f"{spec.name}:{spec.seed}")

    def is_single_token(text: str) -> bool:
        return len(encoding.encode_ordinary(text)) == 1

    def emits_answer(prefix: str, answer: str, suffix: str) -> bool:
        try:
            _encode_checked(encoding, prefix, answer, suffix, task_name=spec.name)
        except TaskTokenError:
            return False
        return True

    context = TemplateContext(rng=rng, is_single_token=is_single_token, emits_answer=emits_answer)
    n_wanted = spec.n_train + spec.n_test
    seen: set[str] = set()
    datapoints: list[Datapoint] = []
    attempts = 0
    while len(datapoints) < n_wanted:
        attempts += 1
        if attempts > n_wanted * MAX_ATTEMPTS_PER_PAIR:
            raise RuntimeError(
                f"task {spec.name!r}: the template produced only {len(datapoints)} distinct "
                f"pairs out of {n_wanted} requested after {attempts - 1} draws; widen its "
                "vocabulary or lower n_train/n_test"
            )
        pair = spec.make_pair(context)
        if pair.inputs in seen:
            continue
        seen.add(pair.inputs)
        datapoints.append(encode_pair(encoding, pair, task_name=spec.name))

    logger.debug("built task %s: %d pairs in %d draws", spec.name, n_wanted, attempts)
    return Task(
        name=spec.name,
        xs=datapoints[: spec.n_train],
        xs_test=datapoints[spec.n_train :],
        description=spec.description,
        encoding_name=encoding.name,
    )
