"""Training configuration: TOML presets with a ``[model]`` and a ``[train]`` table.

``[model]`` contains GPTConfig fields and ``[train]`` contains TrainConfig fields. A preset is a file in
``training/presets/`` (named without ``.toml``) or a path. ``--set model.d_model=128`` overrides one
value; the value is parsed as TOML (``1e-3``, ``true``, ``"text"``), and a bare word is a string.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.config import GPTConfig

logger = logging.getLogger(__name__)

PRESET_DIR = Path(__file__).parent / "presets"
TOKENIZER_NAME = "stdlib_2k"
# A bound chosen here, above the core count of common servers: torch 2.13 crashed when asked
# to start 100,000 threads.
MAX_THREADS = 1024
# A run name becomes a folder name under out_dir and checkpoint_dir, so it may not contain a path.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class ConfigError(ValueError):
    """A preset or override value that is missing, of the wrong type or out of range."""


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
        if not RUN_NAME.fullmatch(self.name) or ".." in self.name:
            raise ConfigError(
                f"train.name={self.name!r} is invalid; use letters, digits, '_', '-' and '.', "
                "since it names the run's folders"
            )
        if not 0.0 < self.target_density <= 1.0:
            raise ConfigError(f"target_density must be in (0, 1], got {self.target_density}")
        if not self.target_density <= self.start_density <= 1.0:
            raise ConfigError(
                f"start_density must be between target_density ({self.target_density}) and 1, "
                f"got {self.start_density}"
            )
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(f"time_budget_s must be positive, got {self.time_budget_s}")
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f'device must be "cpu" or "cuda", got {self.device!r}')
        positive = (
            "batch_size",
            "max_steps",
            "eval_interval",
            "eval_batches",
            "checkpoint_interval",
            "num_threads",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("out_dir", "checkpoint_dir"):
            if not getattr(self, name).strip():
                raise ConfigError(f'{name} is empty; give a folder, e.g. {name}="runs/my_run"')
        if any(not folder.strip() for folder in self.extra_dirs):
            raise ConfigError(f"extra_dirs={self.extra_dirs!r} has an empty folder name; remove it")
        if self.init_from is not None and not self.init_from.strip():
            raise ConfigError("init_from is empty; give a model folder or leave it unset")
        if self.num_threads > MAX_THREADS:
            raise ConfigError(f"num_threads={self.num_threads} is above {MAX_THREADS}; use fewer")
        for name in ("seed", "min_per_row"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)}")
        for name in ("lr", "eps", "grad_rms_clip"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be 0 or more, got {self.weight_decay}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("anneal_frac", "warmup_frac"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}"
            )


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
        raise ConfigError(f"override {text!r} has no '='; write e.g. train.lr=1e-3")
    dotted, raw_value = text.split("=", 1)
    section, _, key = dotted.strip().partition(".")
    if section not in ("model", "train") or not key:
        raise ConfigError(f"override key {dotted!r} must be model.<field> or train.<field>")
    try:
        value = tomllib.loads(f"value = {raw_value}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw_value
    return section, key, value


def _check_keys(section: str, values: dict[str, Any], cls: type) -> None:
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown [{section}] keys {unknown}; known keys: {sorted(known)}")


def _matches(value: Any, hint: Any) -> bool:
    """Return whether a TOML value fits a field's type hint (int, float, bool, str, lists, None)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(entry, item) for entry in value)
    if hint is type(None):
        return value is None
    if isinstance(value, bool):  # bool is a subclass of int, but true is not a number here
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint) if arg is not type(None))
    if origin is list:
        return 'a list such as ["a", "b"]'
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, str(hint))


def _check_types(section: str, values: dict[str, Any], cls: type) -> None:
    """Raise ConfigError naming the first value whose type does not fit its field; turn the
    integers given for float fields into floats."""
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        hint = hints[key]
        if not _matches(value, hint):
            raise ConfigError(f"{section}.{key}={value!r} is invalid; expected {_describe(hint)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{section}.{key}={value!r} is invalid; expected a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            raise ConfigError(f"{section}.{key}={value} is invalid; it does not fit in 64 bits")
        if hint in (float, float | None) and isinstance(value, int):
            values[key] = float(value)


def field_defaults(cls: type) -> dict[str, Any]:
    """Return the default value of every dataclass field that has one."""
    defaults = {}
    for entry in dataclasses.fields(cls):
        if entry.default is not dataclasses.MISSING:
            defaults[entry.name] = entry.default
        elif entry.default_factory is not dataclasses.MISSING:
            defaults[entry.name] = entry.default_factory()
    return defaults


def load_run_config(preset: str, overrides: list[str] = ()) -> RunConfig:
    """Read a preset, apply ``section.key=value`` overrides and build the typed configs."""
    path = resolve_preset(preset)
    try:
        with path.open("rb") as handle:
            tables = tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    unknown_tables = sorted(set(tables) - {"model", "train"})
    if unknown_tables:
        raise ConfigError(f"{path}: unknown tables {unknown_tables}; use [model] and [train]")
    model_values = dict(tables.get("model", {}))
    train_values = dict(tables.get("train", {}))

    for text in overrides:
        section, key, value = parse_override(text)
        target, cls = (
            (model_values, GPTConfig) if section == "model" else (train_values, TrainConfig)
        )
        logger.info(
            "override %s.%s: %r -> %r",
            section,
            key,
            target.get(key, field_defaults(cls).get(key)),
            value,
        )
        target[key] = value

    model_values.setdefault("tokenizer_name", TOKENIZER_NAME)
    _check_keys("model", model_values, GPTConfig)
    _check_keys("train", train_values, TrainConfig)
    _check_types("model", model_values, GPTConfig)
    _check_types("train", train_values, TrainConfig)
    try:
        model = GPTConfig(**model_values)
    except ValueError as err:
        raise ConfigError(f"[model] of {path.name}: {err}") from None
    return RunConfig(model=model, train=TrainConfig(**train_values))
