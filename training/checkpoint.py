"""Resumable training checkpoints and the store outputs of a finished run.

A checkpoint holds only tensors, numbers, strings and containers of them, so it loads with
``torch.load(weights_only=True)``. Store outputs follow the released layout:
``models/<name>/beeg_config.json``, ``models/<name>/final_model.pt`` (a plain float32 state dict)
and ``train_curves/<name>/progress.json`` (one JSON object per line).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from inference.cli import check_output_folder
from training.config import RunConfig, TrainConfig, field_defaults

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "ckpt.pt"


def run_config_dict(run: RunConfig) -> dict[str, dict[str, Any]]:
    """Return the run config as plain dicts (for checkpoints and logs)."""
    return {"model": run.model.to_dict(), "train": dataclasses.asdict(run.train)}


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (temporary file, then rename) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CHECKPOINT_FILE
    partial = folder / (CHECKPOINT_FILE + ".tmp")
    torch.save(state, partial)
    partial.replace(path)
    return path


def checkpoint_path(folder: Path) -> Path:
    """Return the checkpoint file in ``folder``; raise FileNotFoundError when there is none."""
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; start without --resume")
    return path


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """Read the checkpoint in ``folder``; raise FileNotFoundError when there is none."""
    return torch.load(checkpoint_path(folder), map_location="cpu", weights_only=True)


# Train settings that may change between a checkpoint and its resumption: they affect neither the
# weights nor the data order. Every other [train] setting must match the checkpoint's.
CHANGEABLE_ON_RESUME = (
    "name",
    "out_dir",
    "checkpoint_dir",
    "init_from",
    "eval_interval",
    "checkpoint_interval",
    "num_threads",
    "device",
    "progress_bar",
)


def check_resume_config(saved: dict[str, dict[str, Any]], run: RunConfig) -> None:
    """Raise ValueError when the model, schedule, optimizer or data differ from the checkpoint's run."""
    current = run_config_dict(run)
    if saved["model"] != current["model"]:
        changed = sorted(
            key for key in current["model"] if saved["model"].get(key) != current["model"][key]
        )
        was = {key: saved["model"].get(key) for key in changed}
        raise ValueError(
            f"cannot resume: model config differs from the checkpoint in {changed} (it had "
            f"{was}); set them back, or start a new run under another train.name"
        )

    # A checkpoint written before a setting existed ran with that setting's default.
    defaults = field_defaults(TrainConfig)
    changed = [
        key
        for key, value in current["train"].items()
        if key not in CHANGEABLE_ON_RESUME and saved["train"].get(key, defaults[key]) != value
    ]
    if changed:
        was = {key: saved["train"].get(key, defaults[key]) for key in changed}
        raise ValueError(
            f"cannot resume: train settings {changed} differ from the checkpoint's {was}; "
            "set them back, or start a new run under another train.name"
        )


def _run_files(out_dir: Path, name: str, checkpoint_folder: Path) -> list[Path]:
    return [
        checkpoint_folder / CHECKPOINT_FILE,
        model_folder(out_dir, name) / "final_model.pt",
        progress_path(out_dir, name),
    ]


def check_fresh_start(out_dir: Path, name: str, checkpoint_folder: Path) -> None:
    """Raise FileExistsError when a run's checkpoint, model or curve exists, so that a new run
    does not replace them unasked."""
    existing = [path for path in _run_files(out_dir, name, checkpoint_folder) if path.exists()]
    if not existing:
        return
    resumable = (checkpoint_folder / CHECKPOINT_FILE).exists()
    ways = (
        "pass --resume to continue it, --overwrite to replace it"
        if resumable
        else ("it has no checkpoint to resume from, so pass --overwrite to replace it")
    )
    raise FileExistsError(
        f"run {name!r} already has {', '.join(str(path) for path in existing)}; "
        f"{ways}, or set train.name to start a new run"
    )


def remove_run(out_dir: Path, name: str, checkpoint_folder: Path) -> None:
    """Delete a run's checkpoint, model weights and curve before it starts over (--overwrite),
    so that a later --resume cannot continue the old run."""
    partial = checkpoint_folder / (CHECKPOINT_FILE + ".tmp")
    for path in [*_run_files(out_dir, name, checkpoint_folder), partial]:
        if path.is_file():
            path.unlink()
            logger.warning("--overwrite: deleted %s", path)


def check_output_folders(out_dir: Path, checkpoint_folder: Path) -> None:
    """Raise NotADirectoryError when an output folder, or a folder above it, is a file."""
    for folder in (out_dir, checkpoint_folder):
        check_output_folder(folder, "set train.out_dir and train.checkpoint_dir to folders")


def check_model_folder(folder: Path) -> None:
    """Raise FileNotFoundError when ``folder`` lacks a finished model's two files."""
    missing = [
        name for name in ("beeg_config.json", "final_model.pt") if not (folder / name).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"train.init_from={str(folder)!r} has no {' or '.join(missing)}; "
            "pass a model folder such as store/models/sparse_stdlib"
        )


def model_folder(out_dir: Path, name: str) -> Path:
    """Return the store folder of a run's finished model."""
    return out_dir / "models" / name


def write_model(
    out_dir: Path, name: str, run: RunConfig, state_dict: dict[str, torch.Tensor]
) -> Path:
    """Write ``beeg_config.json`` and ``final_model.pt`` under ``<out_dir>/models/<name>/``."""
    folder = model_folder(out_dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    config = run.model.to_dict()
    (folder / "beeg_config.json").write_text(json.dumps(config, indent=2) + "\n")

    weights = {
        key: value.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
        for key, value in state_dict.items()
    }
    partial = folder / "final_model.pt.tmp"
    torch.save(weights, partial)
    partial.replace(folder / "final_model.pt")
    logger.info("wrote %s", folder)
    return folder


def copy_tokenizer(encoding_name: str, out_dir: Path) -> None:
    """Copy a store tokenizer's files into ``out_dir`` unless it has them, so the folder is a store.

    Raises FileExistsError when ``out_dir`` has other files under the same name.

    Encodings that tiktoken ships (such as gpt2) have no files in a store and are left alone.
    """
    from registry.store import default_store
    from registry.tokenizer import ENCODING_FOLDERS

    folder = ENCODING_FOLDERS.get(encoding_name)
    if folder is None:
        return
    target = out_dir / folder
    store = default_store()
    for file_name in ("encoder.json", "vocab.bpe"):
        source = store.local_path(f"{folder}/{file_name}")
        if not (target / file_name).exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / file_name)
            logger.info("copied %s to %s", source, target)
        elif (target / file_name).read_bytes() != source.read_bytes():
            raise FileExistsError(
                f"{target / file_name} differs from the tokenizer this run trains with "
                f"({source}), so the store would pair the model with the wrong tokens; "
                "set train.out_dir to another folder"
            )


def progress_path(out_dir: Path, name: str) -> Path:
    """Return the path of a run's ``progress.json``."""
    return out_dir / "train_curves" / name / "progress.json"


def truncate_progress(path: Path, last_step: int) -> None:
    """Drop progress lines after ``last_step`` (they came from a run that was resumed earlier)."""
    if not path.is_file():
        return
    records_up_to_step = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            step = json.loads(line)["step"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ValueError(
                f"{path} line {number} is not a progress record (cut short by a kill?); "
                "delete that line and run again"
            ) from None
        if step <= last_step:
            records_up_to_step.append(line)
    path.write_text("".join(line + "\n" for line in records_up_to_step))


def append_progress(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``progress.json``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def join_progress(first: Path, second: Path) -> list[dict[str, Any]]:
    """Return the records of two consecutive runs as one curve.

    ``second`` continued the model that ``first`` ended with (``train.init_from``): its step,
    tokens and elapsed_s count on from the last record of ``first``.
    """
    head = [json.loads(line) for line in first.read_text().splitlines() if line.strip()]
    tail = [json.loads(line) for line in second.read_text().splitlines() if line.strip()]
    if not head:
        raise ValueError(
            f"{first} contains no progress records; pass the first stage's progress.json"
        )
    last = head[-1]
    offsets = {key: last[key] for key in ("step", "tokens", "elapsed_s") if key in last}
    joined = []
    for record in tail:
        moved = dict(record)
        for key, offset in offsets.items():
            if key in moved:
                moved[key] = moved[key] + offset
        joined.append(moved)
    return head + joined
