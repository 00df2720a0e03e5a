"""Resolve the model / task / sweep / k selectors against the store catalogue.

Every level is checked against the listing of the level above it before anything below is listed,
so a value from a URL never becomes part of a path unless the store lists it. A missing level
gets a default (see `_default_value`): the first task (in the paper's order) and sweep with a `k_optim` circuit, and
`k_optim` or a k chosen from the sweep's losses. An invalid level gets the same default, with a
message naming the value and what is available. A level with no entries leaves everything below
it empty, with a message saying what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from registry import catalogue
from registry.store import Store
from registry.tasks import PAPER_TASKS

logger = logging.getLogger(__name__)

LEVELS = ("model", "task", "sweep", "k")


@dataclass
class Selection:
    """Options and chosen value of each level, with messages for the page.

    `problems` name empty levels and failed listings. `replacements` name requested values that the
    store does not list, each replaced by the first listed entry.
    """

    options: dict[str, list[str]] = field(default_factory=lambda: {lv: [] for lv in LEVELS})
    values: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(LEVELS))
    problems: list[str] = field(default_factory=list)
    replacements: list[str] = field(default_factory=list)


def default_option(level: str, options: Sequence[str]) -> str:
    """Return the entry to show when the URL names none: for k, `k_optim` if listed, else the first."""
    if level == "k" and "k_optim" in options:
        return "k_optim"
    return options[0]


# Chooses the k to open for (model, task, sweep, listed ks) when the sweep has no k_optim, or
# returns None to open the first k.
KChooser = Callable[[str, str, str, Sequence[str]], str | None]


def _replacement(
    level: str, requested: str, options: Sequence[str], default: str, where: str, store: Store
) -> str:
    shown = ", ".join(options[:20]) + (" ..." if len(options) > 20 else "")
    problem = f"is not available {where}"
    if level == "model" and _is_model_without_circuits(requested, store):
        problem = f"has no circuits in this store (viz/{requested}/ is missing)"
    return f"{level} {requested!r} {problem}; showing {default!r}. Available: {shown}."


def _has_k_optim(store: Store, model: str, task: str, sweep: str) -> bool:
    try:
        return "k_optim" in catalogue.list_ks(model, task, sweep, store)
    except (OSError, catalogue.CatalogueError) as err:
        logger.warning("listing ks of %s/%s/%s failed: %s", model, task, sweep, err)
        return False


def _first_task_with_k_optim(store: Store, model: str, tasks: Sequence[str]) -> str | None:
    """Return the first task with a sweep that has a k_optim circuit.

    The paper's tasks come first, in the paper's order (`registry.tasks.PAPER_TASKS`), so the
    app opens on its headline task when the store has it. Other tasks follow in catalogue order.
    """
    rank = {name: position for position, name in enumerate(PAPER_TASKS)}
    ordered = sorted(tasks, key=lambda task: rank.get(task, len(rank)))
    for task in ordered:
        try:
            sweeps = catalogue.list_sweeps(model, task, store)
        except (OSError, catalogue.CatalogueError) as err:
            logger.warning("listing sweeps of %s/%s failed: %s", model, task, err)
            continue
        if any(_has_k_optim(store, model, task, sweep) for sweep in sweeps):
            return task
    return None


def _default_value(
    level: str,
    options: Sequence[str],
    chosen: dict[str, str | None],
    store: Store,
    choose_k: KChooser | None,
) -> str:
    """Return the entry to open when the URL names none or names one that is not listed.

    Tasks and sweeps prefer the first with a `k_optim` circuit. k is `k_optim` when listed,
    else the one `choose_k` returns, else the first.
    """
    model, task, sweep = chosen["model"], chosen["task"], chosen["sweep"]
    if level == "task":
        return _first_task_with_k_optim(store, model, options) or options[0]
    if level == "sweep":
        with_k_optim = (s for s in options if _has_k_optim(store, model, task, s))
        return next(with_k_optim, options[0])
    if level == "k" and "k_optim" not in options and choose_k is not None:
        chosen_k = choose_k(model, task, sweep, options)
        if chosen_k in options:
            return chosen_k
    return default_option(level, options)


def _is_model_without_circuits(model: str, store: Store) -> bool:
    """Return whether the store lists `model` under models/ or train_curves/ (not under viz/)."""
    try:
        listed = set(catalogue.list_models(store)) | set(catalogue.list_curves(store))
    except (OSError, catalogue.CatalogueError) as err:
        logger.warning("listing models failed: %s", err)
        return False
    return model in listed


def resolve_selection(
    store: Store, requested: dict[str, str | None], choose_k: KChooser | None = None
) -> Selection:
    """Fill the four levels from the catalogue, starting from the `requested` values.

    Models are those with circuits under `viz/`. A level that is not requested, or not listed,
    gets the default of `_default_value`.
    """
    selection = Selection()
    listers: dict[str, Callable[[], list]] = {
        "model": lambda: catalogue.list_viz_models(store),
        "task": lambda: catalogue.list_tasks(selection.values["model"], store),
        "sweep": lambda: catalogue.list_sweeps(
            selection.values["model"], selection.values["task"], store
        ),
        "k": lambda: catalogue.list_ks(
            selection.values["model"], selection.values["task"], selection.values["sweep"], store
        ),
    }
    chosen: list[str] = []
    for level in LEVELS:
        where = "for " + ", ".join(chosen) if chosen else "in this store"
        try:
            options = [str(option) for option in listers[level]()]
        except (OSError, catalogue.CatalogueError) as err:
            logger.warning("listing %s failed (%s): %s", level, where, err)
            selection.problems.append(f"Could not list {level}s {where}: {err}")
            break
        selection.options[level] = options
        if not options:
            selection.problems.append(f"No {level} is available {where}.")
            break

        value = requested.get(level)
        if value not in options:
            default = _default_value(level, options, selection.values, store, choose_k)
            if value is not None:
                selection.replacements.append(
                    _replacement(level, value, options, default, where, store)
                )
            value = default
        selection.values[level] = value
        chosen.append(f"{level} {value!r}")
    return selection
