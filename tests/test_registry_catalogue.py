"""Tests for registry.catalogue on a local store folder and the same folder over HTTP."""

from pathlib import Path

import pytest
from http_store import http_store  # noqa: F401

from registry.catalogue import (
    CatalogueError,
    check_curve,
    check_model,
    check_viz_key,
    list_curves,
    list_ks,
    list_models,
    list_sweeps,
    list_tasks,
)
from registry.store import Store

K_FOLDERS = ["10", "2", "100", "k_optim", "007", "notes"]


@pytest.fixture
def store_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    (folder / "models" / "alpha").mkdir(parents=True)
    (folder / "models" / "alpha" / "beeg_config.json").write_text("{}")
    (folder / "models" / "no_config").mkdir()
    (folder / "models" / "back\\slash").mkdir()
    (folder / "models" / "back\\slash" / "beeg_config.json").write_text("{}")
    (folder / "models" / ".hidden").mkdir()
    (folder / "train_curves" / "alpha").mkdir(parents=True)
    (folder / "train_curves" / "alpha" / "progress.json").write_text('{"step": 0}\n')
    for k in K_FOLDERS:
        (folder / "viz" / "alpha" / "quotes" / "prune_v4" / k).mkdir(parents=True)
        (folder / "viz" / "alpha" / "quotes" / "prune_v4" / k / "viz_data.pt").write_bytes(b"x")
    (folder / "viz" / "alpha" / "brackets_beeg" / "prune_v2").mkdir(parents=True)
    return folder


@pytest.fixture(params=["local", "http"])
def store(request, store_folder, tmp_path) -> Store:
    if request.param == "local":
        return Store(store_folder)
    served = request.getfixturevalue("http_store")(store_folder)
    return Store(served.url, cache_root=tmp_path / "cache", progress=False)


def test_listing_functions(store):
    assert list_tasks("alpha", store) == ["brackets_beeg", "quotes"]
    assert list_sweeps("alpha", "quotes", store) == ["prune_v4"]
    assert list_ks("alpha", "quotes", "prune_v4", store) == [2, 10, 100, "k_optim"]
    assert list_ks("alpha", "brackets_beeg", "prune_v2", store) == []
    assert list_curves(store) == ["alpha"]


def test_list_models_local_needs_config(store_folder, http_store, tmp_path):  # noqa: F811
    assert list_models(Store(store_folder)) == ["alpha"]
    served = http_store(store_folder)
    remote = Store(served.url, cache_root=tmp_path / "cache")
    assert list_models(remote) == ["alpha", "no_config"]


def test_missing_top_folders_list_empty(tmp_path):
    store = Store(tmp_path)
    assert list_models(store) == []
    assert list_curves(store) == []
    with pytest.raises(CatalogueError, match="none in this store"):
        list_tasks("alpha", store)


def test_check_viz_key_returns_relpath(store):
    assert check_viz_key("alpha", "quotes", "prune_v4", 10, store) == (
        "viz/alpha/quotes/prune_v4/10/viz_data.pt"
    )
    assert check_viz_key("alpha", "quotes", "prune_v4", "k_optim", store).endswith(
        "/k_optim/viz_data.pt"
    )
    assert check_viz_key("alpha", "quotes", "prune_v4", "2", store).endswith("/2/viz_data.pt")


@pytest.mark.parametrize(
    "key",
    [
        ("../x", "quotes", "prune_v4", 10),
        ("alpha", "../x", "prune_v4", 10),
        ("alpha", "quotes", "../../models", 10),
        ("alpha", "quotes", "prune_v4", "../10"),
        ("alpha/quotes", "quotes", "prune_v4", 10),
        ("alpha", "quo\\tes", "prune_v4", 10),
        ("alpha", "quotes", "..", 10),
        ("alpha", "quotes", ".hidden", 10),
    ],
)
def test_check_viz_key_rejects_paths(store, key):
    with pytest.raises(CatalogueError, match="plain folder name"):
        check_viz_key(*key, store)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (("beta", "quotes", "prune_v4", 10), "Unknown model 'beta'. Available: alpha"),
        (
            ("alpha", "nope", "prune_v4", 10),
            "Unknown task 'nope'. Available: brackets_beeg, quotes",
        ),
        (("alpha", "quotes", "prune_v9", 10), "Unknown sweep 'prune_v9'. Available: prune_v4"),
        (("alpha", "quotes", "prune_v4", 3), "Unknown k '3'. Available: 2, 10, 100, k_optim"),
        (("alpha", "quotes", "prune_v4", "007"), "Unknown k '007'"),
        (("alpha", "quotes", "prune_v4", True), "Invalid k True"),
        (("alpha", "quotes", "prune_v4", 2.0), "Invalid k 2.0"),
    ],
)
def test_check_viz_key_rejects_unknown(store, key, message):
    with pytest.raises(CatalogueError) as excinfo:
        check_viz_key(*key, store)
    assert message in str(excinfo.value)


def test_catalogue_error_is_key_and_value_error(store):
    with pytest.raises(KeyError):
        check_model("beta", store)
    with pytest.raises(ValueError) as excinfo:
        check_model("beta", store)
    assert str(excinfo.value).startswith("Unknown model 'beta'")


def test_check_model_and_curve(store_folder):
    store = Store(store_folder)
    assert check_model("alpha", store) == "alpha"
    with pytest.raises(CatalogueError, match="Unknown model 'no_config'"):
        check_model("no_config", store)
    assert check_curve("alpha", store) == "train_curves/alpha/progress.json"
    with pytest.raises(CatalogueError, match="plain folder name"):
        check_curve("../alpha", store)
