"""Resolve the model / task / sweep / k selectors against the store catalogue.

Every level is checked against the listing of the level above it before anything below is listed,
so a value from a URL never becomes part of a path unless the store lists it. A missing level
falls back to the first listed entry. An invalid level also falls back to the first entry, with
a message naming the value and what is available. A level with no entries leaves everything below
it empty, with a message saying what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from registry import catalogue
from registry.store import Store

logger = logging.getLogger(__name__)

LEVELS = ("model", "task", "sweep", "k")


@dataclass
class Selection:
    """Options and chosen value of each level; `complete` when all four are chosen."""

    options: dict[str, list[str]] = field(default_factory=lambda: {lv: [] for lv in LEVELS})
    values: dict[str, str | None] = field(default_factory=lambda: dict.fromkeys(LEVELS))
    messages: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(self.values[level] is not None for level in LEVELS)


def _choose(level: str, requested: str | None, options: Sequence[str], where: str) -> tuple:
    """Return (value, message or None) for one level."""
    if not options:
        return None, f"No {level} is available {where}."
    if requested is None:
        return options[0], None
    if requested in options:
        return requested, None
    shown = ", ".join(options[:20]) + (" ..." if len(options) > 20 else "")
    return options[0], (
        f"{level} {requested!r} is not available {where}; showing {options[0]!r}. "
        f"Available: {shown}."
    )


def resolve_selection(
    store: Store,
    requested: dict[str, str | None],
    *,
    models_lister: Callable[[Store], list[str]] | None = None,
) -> Selection:
    """Fill the four levels from the catalogue, starting from the `requested` values.

    `models_lister` lists the models to offer (default: those with circuits under `viz/`).
    """
    selection = Selection()
    list_models = models_lister or catalogue.list_viz_models
    listers: dict[str, Callable[[], list]] = {
        "model": lambda: list_models(store),
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
            selection.messages.append(f"Could not list {level}s {where}: {err}")
            break
        value, message = _choose(level, requested.get(level), options, where)
        selection.options[level] = options
        selection.values[level] = value
        if message:
            selection.messages.append(message)
        if value is None:
            break
        chosen.append(f"{level} {value!r}")
    return selection
