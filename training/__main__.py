"""Command line: ``python -m training {bpe,train,eval-tasks} ...``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger("training")


def _add_bpe_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bpe", help="train the stdlib_2k tokenizer (data-gym format)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("store/stdlib_2k"),
        help="output folder (default: %(default)s)",
    )
    parser.add_argument(
        "--extra-dir", action="append", default=[], help="extra folder of .py files (repeatable)"
    )


def _run_bpe(args: argparse.Namespace) -> None:
    from training.bpe import build_tokenizer

    build_tokenizer(args.out, args.extra_dir)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subcommand per task."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_bpe_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen subcommand."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    commands = {"bpe": _run_bpe}
    commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
