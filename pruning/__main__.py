"""Command line: `python -m pruning {prune,sweep,verify} ...`.

    python -m pruning prune --model-dir store/models/NAME --task single_double_quote
    python -m pruning sweep --model-dir store/models/NAME --task bracket_counting --ks 32 64 128
    python -m pruning verify store/viz/NAME/TASK/prune_v4/k_optim/viz_data.pt \
        --model-dir store/models/NAME
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

from inference.allocator import keep_freed_memory_or_exit  # no torch import either
from inference.cli import check_output_folder, exit_on_bad_input, finite_float, int_at_least
from pruning.config import PruneConfig  # no torch import, so --help stays fast

logger = logging.getLogger("pruning")

DEFAULT_SWEEP_KS = (16, 32, 64, 128, 256, 512)
DEFAULT_EXAMPLE_WINDOWS = 64


def _add_run_options(parser: argparse.ArgumentParser, *, writes_circuits: bool = True) -> None:
    """Add the options of the commands that train masks.

    `writes_circuits=False` (search) leaves out the options of written circuits (--store,
    --example-windows, --baseline, --overwrite) and the ones each trial draws (--k-coef, --lr).
    """
    parser.add_argument(
        "--model-dir",
        required=True,
        type=Path,
        help="model folder (beeg_config.json, final_model.pt)",
    )
    parser.add_argument(
        "--task",
        required=True,
        nargs="+",
        help="task names (see registry.tasks.list_task_names); several share one model load",
    )
    if writes_circuits:
        parser.add_argument(
            "--store",
            type=Path,
            default=None,
            help="store root to write viz/ under (default: two levels above --model-dir when it is <store>/models/<name>)",
        )

    # Mask training and k search.
    parser.add_argument(
        "--target-loss",
        type=finite_float,
        default=PruneConfig.target_loss,
        help="per-sequence task loss (nats) that the k search aims for",
    )
    parser.add_argument(
        "--n-steps", type=int, default=PruneConfig.n_steps, help="mask training steps"
    )
    if writes_circuits:
        parser.add_argument(
            "--k-coef",
            type=finite_float,
            default=PruneConfig.k_coef,
            help="loss penalty per open gate (nats per node)",
        )
        parser.add_argument(
            "--lr",
            type=finite_float,
            default=PruneConfig.lr,
            help="AdamW learning rate of the taus",
        )
    parser.add_argument(
        "--batch-size", type=int, default=PruneConfig.batch_size, help="pairs per training step"
    )
    parser.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        help="seed of the gate initialisation and batch order",
    )

    # Validation-corpus windows for the ablation means and the activation examples.
    parser.add_argument(
        "--mean-windows",
        type=int_at_least(1),
        default=256,
        help="validation windows for the ablation means",
    )
    parser.add_argument(
        "--window-len",
        type=int_at_least(2),
        default=128,
        help="tokens per validation window (capped at block_size)",
    )
    if writes_circuits:
        parser.add_argument(
            "--example-windows",
            type=int_at_least(0),
            default=DEFAULT_EXAMPLE_WINDOWS,
            help="validation windows searched for top/bottom examples (0: none)",
        )
        parser.add_argument(
            "--baseline",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="also write the gradient-attribution baseline sweep",
        )
        parser.add_argument(
            "--overwrite",
            action="store_true",
            help="replace a sweep folder that already exists (its files are deleted first)",
        )
    else:
        # Each trial draws its own k_coef and lr, so these defaults only fill the PruneConfig.
        parser.set_defaults(k_coef=PruneConfig.k_coef, lr=PruneConfig.lr)
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show tqdm progress bars",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pruning",
        description="Find circuits by node pruning and write viz_data.pt files.",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    commands = parser.add_subparsers(dest="command", required=True)

    prune = commands.add_parser("prune", help="find the k_optim circuit of one task (and any --k)")
    _add_run_options(prune)
    prune.add_argument(
        "--k",
        type=int_at_least(0),
        nargs="*",
        default=[],
        help="also write circuits with these node counts",
    )

    sweep = commands.add_parser(
        "sweep", help="write circuits at several k plus k_optim, and sweep.json"
    )
    _add_run_options(sweep)
    sweep.add_argument(
        "--ks",
        type=int_at_least(0),
        nargs="+",
        default=list(DEFAULT_SWEEP_KS),
        help="node counts to write",
    )

    search = commands.add_parser(
        "search",
        help="Optuna search for the hyperparameters giving the smallest circuit at the target loss",
    )
    _add_run_options(search, writes_circuits=False)
    search.add_argument(
        "--n-trials", type=int_at_least(1), default=10, help="trials this process runs"
    )
    search.add_argument(
        "--study-name", default=None, help="Optuna study name (default: <model>-<task>)"
    )
    search.add_argument(
        "--storage",
        default=None,
        help="shared study storage: journal:<path> or a database URL such as sqlite:///s.db "
        "(default: in memory); run the same command in several processes to share one study",
    )

    verify = commands.add_parser("verify", help="rerun a viz_data circuit with real interventions")
    verify.add_argument("viz_data", type=Path, help="path of a viz_data.pt")
    verify.add_argument(
        "--model-dir", required=True, type=Path, help="model folder the circuit came from"
    )
    verify.add_argument("--seed", type=int, default=0, help="seed of the random comparison circuit")
    return parser


def _store_root(args, parser) -> Path:
    if args.store is not None:
        return args.store
    model_dir = args.model_dir.resolve()
    if model_dir.parent.name == "models":
        return model_dir.parent.parent
    parser.error(f"--store is required: {args.model_dir} is not inside a <store>/models/ folder")


def _prune_config(args, parser) -> PruneConfig:
    """Build the PruneConfig of the command-line options, or exit with the invalid value."""
    try:
        return PruneConfig(
            target_loss=args.target_loss,
            n_steps=args.n_steps,
            k_coef=args.k_coef,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
        )
    except ValueError as err:
        parser.error(str(err))


def _run(args, parser) -> int:
    from pruning.run import (
        load_model_for_pruning,
        rank_by_attribution,
        rank_by_mask_training,
        run_sweep,
        setup_task,
    )

    store_root = _store_root(args, parser)
    config = _prune_config(args, parser)
    ks = args.k if args.command == "prune" else args.ks
    _check_before_loading(args, store_root, ks)
    loaded = load_model_for_pruning(
        args.model_dir,
        n_mean_windows=args.mean_windows,
        window_len=args.window_len,
        n_example_windows=args.example_windows,
    )
    for task_name in args.task:
        setup = setup_task(loaded, task_name, config, progress=args.progress)
        summary = run_sweep(setup, rank_by_mask_training(setup), store_root=store_root, ks=ks)
        print(f"{task_name}: k_optim={summary['k_optim']} of {summary['num_total_nodes']} nodes")
        if args.baseline:
            setup.timings.clear()
            baseline = run_sweep(setup, rank_by_attribution(setup), store_root=store_root, ks=ks)
            print(f"{task_name} (attribution baseline): k_optim={baseline['k_optim']}")
    return 0


def _check_before_loading(args, store_root: Path, ks: list[int]) -> None:
    """Raise for bad task names, k values or output folders before the slow model load, and
    clear the sweep folders that --overwrite replaces."""
    from inference.circuit import num_total_nodes
    from inference.loading import CONFIG_FILE, read_config
    from pruning.run import ATTRIBUTION_SWEEP, PRUNE_SWEEP
    from pruning.vizdata import sweep_dir
    from registry.tasks import list_task_names

    unknown = [name for name in args.task if name not in list_task_names()]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; available: {', '.join(list_task_names())}")
    n_total = num_total_nodes(read_config(args.model_dir / CONFIG_FILE))
    bad = [k for k in ks if k > n_total]
    if bad:
        raise ValueError(f"k values {bad} are above {n_total}, this model's node count")
    check_output_folder(store_root, "pass a store folder with --store")

    sweeps = [PRUNE_SWEEP, ATTRIBUTION_SWEEP] if args.baseline else [PRUNE_SWEEP]
    model_name = args.model_dir.resolve().name
    folders = [
        sweep_dir(store_root, model_name, task, sweep) for task in args.task for sweep in sweeps
    ]
    existing = [folder for folder in folders if folder.exists()]
    if existing and not args.overwrite:
        verb, pronoun = ("exists", "it") if len(existing) == 1 else ("exist", "them")
        raise FileExistsError(
            f"{', '.join(map(str, existing))} already {verb}; pass --overwrite to replace "
            f"{pronoun}, or --store to write elsewhere"
        )
    for folder in existing:
        shutil.rmtree(folder)
        logger.warning("--overwrite: deleted %s", folder)


def _search(args, parser) -> int:
    from pruning.hpsearch import make_storage, run_search
    from pruning.run import load_model_for_pruning
    from registry.tasks import get_task

    if len(args.task) != 1:
        parser.error("search takes exactly one --task")
    try:
        make_storage(args.storage)
    except ValueError as err:
        parser.error(str(err))
    config = _prune_config(args, parser)  # each trial then draws its own k_coef and lr
    loaded = load_model_for_pruning(
        args.model_dir,
        n_mean_windows=args.mean_windows,
        window_len=args.window_len,
        n_example_windows=0,
    )
    task = get_task(args.task[0], loaded.encoding)
    study = run_search(
        loaded.model,
        task.xs,
        loaded.means,
        config,
        n_trials=args.n_trials,
        study_name=args.study_name or f"{loaded.name}-{task.name}",
        storage=args.storage,
    )
    best = study.best_trial
    print(
        f"{task.name}: best k={int(best.value)} after {len(study.trials)} trials, params {best.params}"
    )
    return 0


def _verify(args) -> int:
    from inference.gpt import load_model
    from pruning.run import model_encoding
    from pruning.verify import losses_match, verify_viz_data

    model = load_model(str(args.model_dir))
    encoding = model_encoding(args.model_dir, model.config.tokenizer_name)
    results = verify_viz_data(args.viz_data, model, seed=args.seed, encoding=encoding)
    print(
        f"verify {args.viz_data} ({int(results['n_nodes'])} nodes), per-sequence task loss on test pairs:"
    )
    rows = [
        ("stored interv_loss / 2", "stored_interv_loss"),
        ("(a) circuit, others mean-ablated", "circuit"),
        ("    same, without logit calibration", "circuit_uncalibrated"),
        ("(b) circuit nodes ablated", "circuit_ablated"),
        ("(c) random circuit, same size", "random_circuit"),
        ("full model", "full_model"),
    ]
    for label, key in rows:
        print(f"  {label:<38} {results[key]:.5f}")
    if not losses_match(results):
        print("MISMATCH: the recomputed circuit loss differs from the stored interv_loss")
        return 1
    print("OK: the recomputed circuit loss equals the stored interv_loss")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    keep_freed_memory_or_exit()
    # Bad input: an unknown name, a missing or damaged file, an existing sweep.
    with exit_on_bad_input(logger, (ValueError, OSError, KeyError)):
        if args.command == "verify":
            return _verify(args)
        if args.command == "search":
            return _search(args, parser)
        return _run(args, parser)


if __name__ == "__main__":
    sys.exit(main())
