"""Fixtures for the web app tests: a tiny store, the one Dash app of the session, a context.

tests/conftest.py loads this module as a pytest plugin, so every test can request the fixtures.
Dash registers page callbacks globally, so the session creates one app. Tests that need other
store contents copy the store and point the app at the copy with `configure_store`, then back.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

# The fixtures import the web app and tiny_store lazily, so loading this plugin costs other test
# modules nothing and cannot break their collection.


@pytest.fixture(scope="session")
def webapp_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny store of the session (read-only: copy it before changing files)."""
    from tiny_store import build_tiny_store

    return build_tiny_store(tmp_path_factory.mktemp("tiny_store"))


@pytest.fixture(scope="session")
def webapp_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FileSystemCache folder of the session's app."""
    return tmp_path_factory.mktemp("webapp_cache")


@pytest.fixture(scope="session")
def webapp_app(webapp_store: Path, webapp_cache_dir: Path):
    """The Dash app reading the tiny store (via CIRCUIT_SPARSITY_STORE), with a fresh cache folder."""
    from webapp.app_factory import create_app
    from webapp.cache import cache_config_from_env

    previous = os.environ.get("CIRCUIT_SPARSITY_STORE")
    os.environ["CIRCUIT_SPARSITY_STORE"] = str(webapp_store)
    config = cache_config_from_env({"CIRCUIT_VIEWER_CACHE_DIR": str(webapp_cache_dir)})
    app = create_app(cache_config=config)  # reads the store from CIRCUIT_SPARSITY_STORE
    yield app
    if previous is None:
        os.environ.pop("CIRCUIT_SPARSITY_STORE", None)
    else:
        os.environ["CIRCUIT_SPARSITY_STORE"] = previous


@pytest.fixture
def webapp_context(webapp_app, webapp_store: Path) -> Iterator:
    """An app context (needed by the cache) with the app reading the session's tiny store."""
    from webapp.data import configure_store

    configure_store(str(webapp_store))
    with webapp_app.server.app_context():
        yield webapp_app
    configure_store(str(webapp_store))


@pytest.fixture
def store_copy(webapp_context, webapp_store: Path, tmp_path: Path) -> Path:
    """A copy of the tiny store that the app reads for one test, so the test may break files."""
    from webapp.data import configure_store

    copy = tmp_path / "store"
    shutil.copytree(webapp_store, copy)
    configure_store(str(copy))
    return copy


def page_module(name: str):
    """A page module as Dash imported it (importing it again would register callbacks twice)."""
    return importlib.import_module(f"webapp.pages.{name}")


def component_text(component) -> str:
    """All text inside a Dash component tree, joined by spaces."""
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(component_text(child) for child in component)
    return component_text(getattr(component, "children", None))
