"""Tests for registry.viz: schema checks, the per-sequence loss correction and optional keys."""

import datetime
import zipfile
from pathlib import Path

import pytest
import torch
from http_store import http_store  # noqa: F401

from registry.cache import CorruptFileError
from registry.catalogue import CatalogueError
from registry.store import Store
from registry.viz import (
    VizDataError,
    flatten_pair_data,
    load_viz_data,
    parse_viz_dict,
    per_sequence_loss,
    read_viz_file,
)

KEY = ("tiny", "quotes", "prune_v4", 8)


def make_viz(**overrides) -> dict:
    """Return a small viz_data dict in the stored (doubled-loss) convention."""
    tokens = torch.tensor([[5, 6, 7, 0], [5, 9, 0, 0]])  # right-padded with token 0
    pair_block = [torch.ones(2, 1), [0, 3], [1], ("0.attn.act_in", "0.attn.q")]
    viz = {
        "circuit_data": {"0.attn.act_in": torch.tensor([0, 3]), "0.attn.q": torch.tensor([1])},
        "samples": {"0.attn.q": {1: {0.5: [[], []]}}},
        "importances": {
            "beeg_model_config": {"n_layer": 1, "n_head": 2, "d_model": 8},
            "loss": 0.2,
            "interv_loss": torch.tensor(0.3),
            "ch_interv_losses": {"0.attn.act_in": torch.tensor([0.4, 0.8]), "0.attn.q": [1.0]},
            "layer_interv_losses": {"0.attn": 0.5, "0.mlp": torch.tensor(0.7)},
            "pair_data": [pair_block],
            "pair_data_connections": [],
            "task_samples": (tokens, {"0.attn.q": {1: torch.zeros(2, 4)}}),
        },
        "all_loss": [(0, 0.9), (1, torch.tensor(0.5))],
        "num_total_nodes": 40,
        "prune_config": {"target_loss": 0.15},
    }
    viz.update(overrides)
    return viz


def save_viz(root: Path, viz: dict, key=KEY) -> Path:
    path = root.joinpath("viz", *map(str, key), "viz_data.pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(viz, path)
    return path


def test_losses_halved_once(tmp_path):
    save_viz(tmp_path, make_viz())
    viz = load_viz_data(*KEY, store=Store(tmp_path))

    assert viz.has_importances
    assert viz.importances["loss"] == pytest.approx(0.1)
    assert viz.importances["interv_loss"] == pytest.approx(0.15)
    ch_losses = viz.importances["ch_interv_losses"]
    assert torch.allclose(ch_losses["0.attn.act_in"], torch.tensor([0.2, 0.4]))
    assert ch_losses["0.attn.q"] == pytest.approx([0.5])
    assert viz.importances["layer_interv_losses"] == pytest.approx({"0.attn": 0.25, "0.mlp": 0.35})
    assert viz.all_loss == [(0, pytest.approx(0.45)), (1, pytest.approx(0.25))]


def test_load_does_not_mutate_parsed_dict():
    raw = make_viz()
    parse_viz_dict(raw, "memory")
    assert raw["importances"]["loss"] == 0.2
    assert raw["all_loss"][0] == (0, 0.9)


def test_fields_and_dict_access(tmp_path):
    save_viz(tmp_path, make_viz())
    viz = load_viz_data(*KEY, store=Store(tmp_path))

    assert viz.num_total_nodes == 40
    assert viz.prune_config == {"target_loss": 0.15}
    assert viz.circuit_data["0.attn.act_in"].tolist() == [0, 3]
    assert viz.circuit_data["0.attn.act_in"].dtype == torch.long
    assert viz["importances"] is viz.importances
    assert viz.get("all_loss") is viz.all_loss
    assert viz.get("ablation_means", {}) == {}
    assert "importances" in viz
    assert "ablation_means" not in viz
    assert viz.source.endswith("viz/tiny/quotes/prune_v4/8/viz_data.pt")
    with pytest.raises(KeyError, match="not a viz_data key"):
        viz["nope"]


def test_missing_importances_is_explicit(tmp_path):
    raw = make_viz()
    del raw["importances"]
    save_viz(tmp_path, raw)
    viz = load_viz_data(*KEY, store=Store(tmp_path))

    assert viz.importances is None
    assert not viz.has_importances
    assert viz.task_sample_lengths is None
    assert viz.all_loss[0][1] == pytest.approx(0.45)


@pytest.mark.parametrize(
    "key", ["circuit_data", "samples", "all_loss", "num_total_nodes", "prune_config"]
)
def test_missing_top_level_key(tmp_path, key):
    raw = make_viz()
    del raw[key]
    path = save_viz(tmp_path, raw)
    with pytest.raises(VizDataError) as excinfo:
        load_viz_data(*KEY, store=Store(tmp_path))
    assert str(path) in str(excinfo.value) or path.as_uri() in str(excinfo.value)
    assert f"['{key}']" in str(excinfo.value)


def test_missing_importances_key():
    raw = make_viz()
    del raw["importances"]["interv_loss"]
    with pytest.raises(
        VizDataError, match=r"memory: missing required importances key\(s\) \['interv_loss'\]"
    ):
        parse_viz_dict(raw, "memory")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"circuit_data": {"0.attn.q": torch.tensor([[1]])}},
            "circuit_data\\['0.attn.q'\\] must be a 1-D integer",
        ),
        ({"circuit_data": {"0.attn.q": torch.tensor([1.0])}}, "1-D integer tensor"),
        ({"circuit_data": {"0.attn.q": [2.5]}}, "1-D integer tensor"),
        ({"circuit_data": {"0.attn.q": [True]}}, "1-D integer tensor"),
        ({"circuit_data": {"0.attn.q": torch.tensor([True])}}, "1-D integer tensor"),
        ({"num_total_nodes": 4.5}, "num_total_nodes must be an integer"),
        ({"all_loss": [(0, 1.0, 2)]}, "is not an \\(iteration, loss\\) pair"),
        ({"prune_config": []}, "prune_config must be a dict"),
        (
            {"ablation_means": {"0.attn.q": torch.zeros(2, 2)}},
            "ablation_means\\['0.attn.q'\\] must be a 1-D",
        ),
    ],
)
def test_schema_violations(overrides, message):
    with pytest.raises(VizDataError, match=message):
        parse_viz_dict(make_viz(**overrides), "memory")


def test_circuit_as_list_of_ints_accepted():
    viz = parse_viz_dict(make_viz(circuit_data={"0.attn.q": [4, 1]}), "memory")
    assert viz.circuit_data["0.attn.q"].tolist() == [4, 1]
    assert viz.circuit_data["0.attn.q"].dtype == torch.long


def test_ablation_means_pass_through():
    means = {"0.attn.q": torch.tensor([0.5, -1.0])}
    viz = parse_viz_dict(make_viz(ablation_means=means), "memory")
    assert viz.ablation_means is not None
    assert torch.equal(viz.ablation_means["0.attn.q"], means["0.attn.q"])
    assert viz.get("ablation_means") is viz.ablation_means


def test_stored_task_sample_lengths():
    viz = parse_viz_dict(make_viz(task_sample_lengths=torch.tensor([3, 2])), "memory")
    assert viz.task_sample_lengths.tolist() == [3, 2]

    raw = make_viz()
    raw["importances"]["task_lengths"] = torch.tensor([3, 2])
    assert parse_viz_dict(raw, "memory").task_sample_lengths.tolist() == [3, 2]


def test_lengths_from_datapoints_only_when_not_stored():
    assert parse_viz_dict(make_viz(), "memory").task_sample_lengths is None
    viz = parse_viz_dict(make_viz(), "memory", datapoint_lengths=[3, 2])
    assert viz.task_sample_lengths.tolist() == [3, 2]

    stored = make_viz(task_sample_lengths=torch.tensor([4, 2]))
    assert parse_viz_dict(
        stored, "memory", datapoint_lengths=[3, 2]
    ).task_sample_lengths.tolist() == [4, 2]


@pytest.mark.parametrize("lengths", [[3], [3, 5], [0, 2], [3.0, 2.0]])
def test_invalid_lengths_rejected(lengths):
    with pytest.raises(VizDataError, match="datapoint_lengths for memory"):
        parse_viz_dict(make_viz(), "memory", datapoint_lengths=lengths)


def test_nested_pair_data_flattened():
    block = make_viz()["importances"]["pair_data"][0]
    raw = make_viz()
    raw["importances"]["pair_data"] = [[block, block], [], [block]]
    assert len(parse_viz_dict(raw, "memory").importances["pair_data"]) == 3
    assert flatten_pair_data([block]) == [block]
    with pytest.raises(ValueError, match="blocks"):
        flatten_pair_data([[1, 2]])


def test_per_sequence_loss_types():
    assert per_sequence_loss(0.3) == pytest.approx(0.15)
    assert per_sequence_loss(1) == 0.5
    assert per_sequence_loss(torch.tensor(0.3)) == pytest.approx(0.15)
    assert isinstance(per_sequence_loss(torch.tensor(0.3)), float)
    assert torch.allclose(per_sequence_loss(torch.tensor([2, 4])), torch.tensor([1.0, 2.0]))
    assert per_sequence_loss([0.2, 0.4]) == pytest.approx([0.1, 0.2])
    with pytest.raises(TypeError, match="Expected a loss"):
        per_sequence_loss(True)
    with pytest.raises(TypeError, match="Expected a loss"):
        per_sequence_loss("0.3")


def test_catalogue_rejects_before_reading(tmp_path):
    save_viz(tmp_path, make_viz())
    with pytest.raises(CatalogueError, match="plain folder name"):
        load_viz_data("../x", "quotes", "prune_v4", 8, store=Store(tmp_path))
    with pytest.raises(CatalogueError, match="Unknown k '9'"):
        load_viz_data("tiny", "quotes", "prune_v4", 9, store=Store(tmp_path))


def test_truncated_file_rejected(tmp_path):
    path = save_viz(tmp_path, make_viz())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="not a complete zip"):
        load_viz_data(*KEY, store=Store(tmp_path))


def test_unloadable_files_rejected(tmp_path):
    not_torch = tmp_path / "plain.pt"
    with zipfile.ZipFile(not_torch, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(VizDataError, match="Cannot load .*plain.pt with weights_only=True"):
        read_viz_file(not_torch)

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"when": datetime.date(2025, 1, 1)}, unsafe)
    with pytest.raises(VizDataError, match="weights_only=True"):
        read_viz_file(unsafe)

    not_dict = tmp_path / "list.pt"
    torch.save([1, 2], not_dict)
    with pytest.raises(VizDataError, match="expected a dict at the top level, got list"):
        read_viz_file(not_dict)


def test_load_over_http(http_store, tmp_path):  # noqa: F811
    save_viz(tmp_path / "store", make_viz())
    served = http_store(tmp_path / "store")
    store = Store(served.url, cache_root=tmp_path / "cache", progress=False)

    viz = load_viz_data(*KEY, store=store)
    assert viz.importances["loss"] == pytest.approx(0.1)
    assert viz.source == f"{served.url}/viz/tiny/quotes/prune_v4/8/viz_data.pt"
    load_viz_data(*KEY, store=store)
    assert served.count("GET", "viz_data.pt") == 1
