"""Training configuration: TOML presets with a ``[model]`` and a ``[train]`` table.

``[model]`` contains GPTConfig fields and ``[train]`` contains TrainConfig fields. A preset is a file in
``training/presets/`` (named without ``.toml``) or a path. ``--set model.d_model=128`` overrides one
value; the value is parsed as TOML (``1e-3``, ``true``, ``"text"``), and a bare word is a string.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.config import GPTConfig

logger = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).parent / "presets"
TOKENIZER_NAME = "stdlib_2k"


@dataclass
class TrainConfig:
    """Optimisation, schedule, data and output settings of one training run."""

    name: str = "run"  # model name in the store: models/<name>/, train_curves/<name>/
    out_dir: str = "store"  # store root that receives models/ and train_curves/
    checkpoint_dir: str = (
        "runs"  # resumable checkpoints go to <checkpoint_dir>/<name>/ (git-ignored)
    )
    seed: int = 0
    batch_size: int = 16  # sequences of block_size tokens per step, summed over torchrun processes
    max_steps: int = 1000
    # Wall-time budget in seconds of training steps (evaluations excluded). When set, the schedules
    # advance by max(step / max_steps, elapsed / budget) and training stops when either reaches 1,
    # so a run on a busy machine still anneals fully and ends on time (but is not reproducible).
    time_budget_s: float | None = None
    eval_interval: int = 100  # steps between evaluations (one progress.json line each)
    eval_batches: int = 8  # validation batches per evaluation, drawn from a fixed set
    checkpoint_interval: int = 500  # steps between resumable checkpoints (and at the end)
    lr: float = 3e-3  # base learning rate before the schedule and the 1/sqrt(density) factor
    warmup_frac: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 0.1
    weight_decay: float = 0.1
    grad_rms_clip: float = 1.0  # clip the root-mean-square of all gradient entries to this
    target_density: float = 1.0  # fraction of each sparse tensor's entries kept at the end
    anneal_frac: float = 0.5  # fraction of the steps over which density falls to target
    start_density: float = 1.0  # density at step 0; below 1 to continue a sparse init_from model
    min_per_row: int = 4  # entries every row of a 2-D weight keeps
    num_threads: int = 2  # torch CPU threads (per process under torchrun)
    device: str = "cpu"  # "cpu" or "cuda"; under torchrun each process uses GPU LOCAL_RANK
    progress_bar: bool = True
    # Model folder (beeg_config.json + final_model.pt) whose weights start the run, e.g. to continue
    # a finished run with a new schedule; its config must equal [model].
    init_from: str | None = None
    extra_dirs: list[str] = field(default_factory=list)  # extra folders of .py files for the corpus
    include_stdlib: bool = True  # False: train on extra_dirs only (small corpora for tests)
    validation_fraction: float = 0.05  # fraction of corpus files held out for test_xent

    def __post_init__(self) -> None:
        if not 0.0 < self.target_density <= 1.0:
            raise ValueError(f"target_density must be in (0, 1], got {self.target_density}")
        if not self.target_density <= self.start_density <= 1.0:
            raise ValueError(
                f"start_density must be between target_density ({self.target_density}) and 1, "
                f"got {self.start_density}"
            )
        if not 0.0 <= self.anneal_frac <= 1.0:
            raise ValueError(f"anneal_frac must be in [0, 1], got {self.anneal_frac}")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s must be positive, got {self.time_budget_s}")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f'device must be "cpu" or "cuda", got {self.device!r}')
        for name in ("batch_size", "max_steps", "eval_interval", "checkpoint_interval"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")


@dataclass
class RunConfig:
    """A model architecture and the settings to train it."""

    model: GPTConfig
    train: TrainConfig


def resolve_preset(preset: str) -> Path:
    """Return the path of a preset given as a name in training/presets/ or as a file path."""
    path = Path(preset)
    if path.suffix == ".toml" and path.is_file():
        return path
    named = PRESET_DIR / f"{preset}.toml"
    if named.is_file():
        return named
    available = sorted(p.stem for p in PRESET_DIR.glob("*.toml"))
    raise FileNotFoundError(f"preset {preset!r} not found; use a .toml path or one of {available}")


def parse_override(text: str) -> tuple[str, str, Any]:
    """Split ``section.key=value`` into (section, key, parsed value)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} has no '='; write e.g. train.lr=1e-3")
    dotted, raw_value = text.split("=", 1)
    section, _, key = dotted.strip().partition(".")
    if section not in ("model", "train") or not key:
        raise ValueError(f"override key {dotted!r} must be model.<field> or train.<field>")
    try:
        value = tomllib.loads(f"value = {raw_value}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw_value
    return section, key, value


def _check_keys(section: str, values: dict[str, Any], cls: type) -> None:
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown [{section}] keys {unknown}; known keys: {sorted(known)}")


def load_run_config(preset: str, overrides: list[str] = ()) -> RunConfig:
    """Read a preset, apply ``section.key=value`` overrides and build the typed configs."""
    path = resolve_preset(preset)
    with path.open("rb") as handle:
        tables = tomllib.load(handle)
    unknown_tables = sorted(set(tables) - {"model", "train"})
    if unknown_tables:
        raise ValueError(f"{path}: unknown tables {unknown_tables}; use [model] and [train]")
    model_values = dict(tables.get("model", {}))
    train_values = dict(tables.get("train", {}))

    for text in overrides:
        section, key, value = parse_override(text)
        target = model_values if section == "model" else train_values
        logger.warning("override %s.%s: %r -> %r", section, key, target.get(key), value)
        target[key] = value

    model_values.setdefault("tokenizer_name", TOKENIZER_NAME)
    _check_keys("model", model_values, GPTConfig)
    _check_keys("train", train_values, TrainConfig)
    return RunConfig(model=GPTConfig(**model_values), train=TrainConfig(**train_values))
