"""Pieces shared by the project's command-line programs (training, pruning, benchmarks).

`inference` is the lowest package that all of them import, so these helpers live here although
no command of `inference` itself uses them.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

MAX_INT = 2**63 - 1  # the largest signed 64-bit integer: a bound chosen here for seeds and counts


def finite_float(text: str) -> float:
    """Parse a command-line number that is neither NaN nor infinite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is invalid; use a finite number")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """Return an argparse type for integers from ``minimum`` up to 2**63 - 1."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not minimum <= value <= MAX_INT:
            raise argparse.ArgumentTypeError(f"{value} is invalid; use {minimum} or more")
        return value

    return parse


def check_output_folder(folder: Path, fix: str) -> None:
    """Raise NotADirectoryError, ending with `fix`, when `folder` or a folder above it is a file."""
    for path in (folder, *folder.parents):
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(
                f"{path} is a file, so {folder} cannot be an output folder; {fix}"
            )


@contextmanager
def exit_on_bad_input(
    logger: logging.Logger, errors: tuple[type[BaseException], ...] = (ValueError, OSError)
) -> Iterator[None]:
    """Turn bad-input errors and Ctrl-C inside the block into a one-line exit message.

    The errors' messages name the value and the fix, so their tracebacks are logged at DEBUG
    level only. A KeyError's message is its first argument, without the quotes that str() adds.
    """
    try:
        yield
    except KeyboardInterrupt as err:
        # An interrupt with a message (a training run names its checkpoint) keeps the message.
        raise SystemExit(f"stopped: {err}" if str(err) else "stopped by Ctrl-C") from None
    except errors as err:
        logger.debug("traceback of the error below", exc_info=True)
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        raise SystemExit(f"error: {message}") from None
