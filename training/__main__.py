"""Command line: ``python -m training {bpe,train,eval-tasks,join-curves} ...``.

``train`` also runs under ``torchrun --nproc_per_node=N -m training train PRESET``, with N processes
on each machine and several machines joined by ``--nnodes`` and ``--rdzv_endpoint``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from inference.allocator import keep_freed_memory_or_exit
from inference.cli import exit_on_bad_input

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
    parser.add_argument(
        "--no-stdlib",
        dest="include_stdlib",
        action="store_false",
        help="train on the --extra-dir folders only",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the tokenizer files already in --out"
    )


def _run_bpe(args: argparse.Namespace) -> None:
    from training.bpe import build_tokenizer

    if not str(args.out).strip() or str(args.out) == ".":
        raise SystemExit(f"error: --out {str(args.out)!r} is not a tokenizer folder; name one")
    if any(not folder.strip() for folder in args.extra_dir):
        raise SystemExit("error: --extra-dir '' is empty; give a folder of .py files")

    build_tokenizer(
        args.out, args.extra_dir, overwrite=args.overwrite, include_stdlib=args.include_stdlib
    )


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a weight-sparse GPT on the corpus")
    parser.add_argument("preset", help="preset name in training/presets/ or a .toml path")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a preset value, e.g. train.max_steps=100 (repeatable)",
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--resume",
        action="store_true",
        help="continue from <checkpoint_dir>/<name>/ckpt.pt",
    )
    start.add_argument(
        "--overwrite",
        action="store_true",
        help="start over, replacing the run's checkpoint, model and progress.json",
    )


def _run_train(args: argparse.Namespace) -> None:
    import tiktoken

    from registry.tokenizer import ENCODING_FOLDERS, get_encoding
    from training.config import load_run_config
    from training.trainer import train

    run = load_run_config(args.preset, args.overrides)
    known = sorted(ENCODING_FOLDERS) + tiktoken.list_encoding_names()
    if run.model.tokenizer_name not in known:
        raise SystemExit(
            f"error: model.tokenizer_name={run.model.tokenizer_name!r} is unknown; use one of {known}"
        )
    encoding = get_encoding(run.model.tokenizer_name)
    if encoding.n_vocab != run.model.vocab_size:
        raise SystemExit(
            f"error: vocab_size {run.model.vocab_size} does not match {encoding.name} "
            f"({encoding.n_vocab} tokens); set model.vocab_size={encoding.n_vocab}"
        )
    train(run, encoding, resume=args.resume, overwrite=args.overwrite)


def _add_eval_tasks_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-tasks", help="count the task pairs that a full model predicts correctly"
    )
    parser.add_argument("model", help="model folder, store URL or model name in the store")
    parser.add_argument(
        "--task",
        dest="tasks",
        action="append",
        default=[],
        help="task name (repeatable; default: every task)",
    )


def _run_eval_tasks(args: argparse.Namespace) -> None:
    from inference.gpt import load_model
    from registry.tasks import get_task, list_task_names
    from registry.tokenizer import get_encoding
    from training.evaluate import task_accuracy

    model = load_model(args.model)
    encoding = get_encoding(model.config.tokenizer_name)
    # Build every task before scoring any, so that a misspelt name fails before the slow part.
    try:
        tasks = [get_task(name, encoding) for name in args.tasks or list_task_names()]
    except KeyError as err:  # an unknown task name, and the message lists the known ones
        raise SystemExit(f"error: {err.args[0]}") from None

    block_size = model.config.block_size
    for task in tasks:
        sequences = [p.inputs for p in task.xs_test] + [p.patch_from_inputs for p in task.xs_test]
        too_long = sum(len(sequence) > block_size for sequence in sequences)
        if too_long:
            print(
                f"{task.name:28s} skipped: {too_long} of {len(sequences)} sequences are longer "
                f"than the model's block_size {block_size}"
            )
            continue
        result = task_accuracy(model, task)
        print(
            f"{task.name:28s} pairs {result.pairs_correct:4d}/{result.n_pairs:<4d} "
            f"({result.pair_accuracy:6.1%})  sequences {result.sequence_accuracy:6.1%}"
        )


def _add_join_curves_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "join-curves", help="join the progress.json of a run and of its init_from continuation"
    )
    parser.add_argument("first", type=Path, help="progress.json of the first stage")
    parser.add_argument("second", type=Path, help="progress.json of the run that continued it")
    parser.add_argument("--out", type=Path, required=True, help="where to write the joined curve")


def _run_join_curves(args: argparse.Namespace) -> None:
    import json

    from training.checkpoint import join_progress

    for path in (args.first, args.second):
        if not path.is_file():
            raise SystemExit(f"{path} is not a file; pass two progress.json paths")
    records = join_progress(args.first, args.second)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(record) + "\n" for record in records))
    logger.info("wrote %d records to %s", len(records), args.out)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subcommand per task."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="logging level (default: %(default)s)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_bpe_parser(subparsers)
    _add_train_parser(subparsers)
    _add_eval_tasks_parser(subparsers)
    _add_join_curves_parser(subparsers)
    return parser


def configure_logging(level_name: str) -> None:
    """Log to stderr at ``level_name``. Under torchrun, ranks other than 0 log warnings and errors
    only, and each line names its rank."""
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise SystemExit(f"--log-level {level_name!r} is not a logging level; use INFO or DEBUG")
    line_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        rank = os.environ.get("RANK", "?")
        line_format = f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"
        if rank != "0":
            level = max(level, logging.WARNING)
    logging.basicConfig(level=level, format=line_format)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the chosen subcommand."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    keep_freed_memory_or_exit()
    commands = {
        "bpe": _run_bpe,
        "train": _run_train,
        "eval-tasks": _run_eval_tasks,
        "join-curves": _run_join_curves,
    }
    # Bad input: a config value, a missing file or folder, a run that exists.
    with exit_on_bad_input(logger):
        commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
