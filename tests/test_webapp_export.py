"""The circuit page's JSON export: format, ids and agreement with the stored circuit."""

import json

import pytest
import torch
from tiny_store import MODEL, SWEEP, TASK

CIRCUIT = (MODEL, TASK, SWEEP, "8")


def test_export_document_fields(webapp_context):
    from webapp.export import EXPORT_FORMAT, circuit_document

    document = circuit_document(*CIRCUIT)

    assert document["format"] == EXPORT_FORMAT
    assert (document["model"], document["task"], document["sweep"], document["k"]) == CIRCUIT
    assert document["nodes"]
    assert {"id", "location", "index", "importance"} <= set(document["nodes"][0])
    json.dumps(document)  # JSON-native all the way down


def test_export_nodes_match_viz_file(webapp_context, webapp_store):
    from webapp.export import circuit_document

    viz = torch.load(webapp_store / f"viz/{MODEL}/{TASK}/{SWEEP}/8/viz_data.pt", weights_only=True)
    expected = {f"{loc}:{int(i)}" for loc, ids in viz["circuit_data"].items() for i in ids.tolist()}

    ids = {node["id"] for node in circuit_document(*CIRCUIT)["nodes"]}

    assert ids == expected


def test_export_edges_join_kept_nodes(webapp_context):
    from webapp.export import circuit_document

    document = circuit_document(*CIRCUIT)
    ids = {node["id"] for node in document["nodes"]}

    for edge in document["edges"]:
        assert edge["source"] in ids
        assert edge["target"] in ids
        assert edge["weight"] != 0


def test_download_callback_sends_named_file(webapp_context):
    from webapp.export import download_json

    sent, messages = download_json(1, *CIRCUIT)

    assert messages == []
    assert sent["filename"] == f"circuit-{MODEL}-{TASK}-{SWEEP}-8.json"
    assert json.loads(sent["content"])["k"] == "8"


def test_export_rejects_unknown_k(webapp_context):
    from webapp.export import circuit_document

    with pytest.raises((KeyError, ValueError), match="9999"):
        circuit_document(MODEL, TASK, SWEEP, "9999")


VIZ_8 = f"viz/{MODEL}/{TASK}/{SWEEP}/8/viz_data.pt"


def _break_file(path, damage: str) -> None:
    if damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(path.read_bytes()[:300])


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_download_broken_file_is_message(store_copy, damage):
    from dash import no_update
    from webapp_fixtures import component_text

    from webapp.export import download_json

    _break_file(store_copy / VIZ_8, damage)
    sent, messages = download_json(1, *CIRCUIT)
    text = component_text(messages)

    assert sent is no_update
    assert VIZ_8 in text
    # The message names the file relative to the store, never by its server path.
    assert str(store_copy) not in text
    assert "file://" not in text


@pytest.mark.parametrize(
    ("k", "expected"),
    [("9999", "9999"), (None, "pick a k first"), ("", "pick a k first")],
)
def test_download_unknown_or_missing_k_is_message(webapp_context, k, expected):
    from dash import no_update
    from webapp_fixtures import component_text

    from webapp.export import download_json

    sent, messages = download_json(1, MODEL, TASK, SWEEP, k)

    assert sent is no_update
    assert expected in component_text(messages)
