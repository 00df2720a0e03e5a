"""Tests for the circuit graph builders (webapp.graph): layout, elements, stylesheet, details."""

import pytest

from webapp import graph


def _node(node_id: str, importance: float | None = 0.1) -> dict:
    location, index = node_id.rsplit(":", 1)
    return {"id": node_id, "location": location, "index": int(index), "importance": importance}


def _circuit() -> dict:
    """Two layers; layer 0 keeps q/k/v channels of heads 0 and 2 (d_head 4)."""
    nodes = [
        _node("0.attn.act_in:1", 0.5),
        _node("0.attn.act_in:5", -0.2),
        _node("0.attn.q:0"),
        _node("0.attn.q:1"),
        _node("0.attn.q:9"),
        _node("0.attn.k:2"),
        _node("0.attn.k:8"),
        _node("0.attn.v:3"),
        _node("0.attn.resid_delta:7", None),
        _node("0.mlp.post_act:30"),
        _node("1.attn.act_in:2"),
    ]
    edges = [
        {"source": "0.attn.act_in:1", "target": "0.attn.q:0", "weight": 0.5},
        {"source": "0.attn.act_in:5", "target": "0.attn.q:0", "weight": -2.0},
        {"source": "0.attn.act_in:1", "target": "0.attn.k:8", "weight": 0.1},
        {"source": "0.attn.v:3", "target": "0.attn.resid_delta:7", "weight": 1.0},
    ]
    return {"n_layer": 2, "n_head": 4, "d_head": 4, "nodes": nodes, "edges": edges}


def test_layout_rows_stack_bottom_up():
    positions = graph.layout_positions(_circuit()["nodes"], d_head=4)
    order = [
        "0.attn.act_in:1",
        "0.attn.q:0",
        "0.attn.k:2",
        "0.attn.v:3",
        "0.attn.resid_delta:7",
        "0.mlp.post_act:30",
        "1.attn.act_in:2",
    ]
    ys = [positions[node_id][1] for node_id in order]
    assert ys == sorted(ys, reverse=True)
    assert len(set(ys)) == len(ys)


def test_layout_row_sorted_and_centred():
    positions = graph.layout_positions(_circuit()["nodes"], d_head=4)
    left, right = positions["0.attn.act_in:1"], positions["0.attn.act_in:5"]
    assert left[0] < right[0]
    assert left[0] == -right[0]
    assert left[1] == right[1]
    assert positions["0.mlp.post_act:30"][0] == 0


def test_layout_aligns_qkv_by_head():
    positions = graph.layout_positions(_circuit()["nodes"], d_head=4)
    x = {node_id: xy[0] for node_id, xy in positions.items()}
    # Head 0: q0, q1 / k2 / v3 share the first column block, ranked left to right.
    assert x["0.attn.q:0"] == x["0.attn.k:2"] == x["0.attn.v:3"]
    assert x["0.attn.q:1"] == x["0.attn.q:0"] + graph.NODE_GAP
    # Head 2 starts after head 0's widest row (2 slots) plus the head gap.
    assert x["0.attn.q:9"] == x["0.attn.k:8"]
    assert x["0.attn.q:9"] - x["0.attn.q:0"] == (2 + graph.HEAD_GAP) * graph.NODE_GAP


def test_layout_positions_every_node():
    circuit = _circuit()
    positions = graph.layout_positions(circuit["nodes"], d_head=4)
    assert set(positions) == {node["id"] for node in circuit["nodes"]}
    assert len(set(positions.values())) == len(positions)


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [(0.0, 4), (0.05, 4), (0.06, 3), (0.5, 2), (1.0, 1)],
)
def test_visible_edges_threshold(threshold, expected):
    assert len(graph.visible_edges(_circuit(), threshold)) == expected


def test_visible_edges_drop_zero_weights():
    circuit = _circuit()
    circuit["edges"].append({"source": "0.attn.q:1", "target": "0.attn.q:9", "weight": 0.0})
    assert len(graph.visible_edges(circuit, 0.0)) == 4


def test_build_elements_nodes_and_edges():
    elements = graph.build_elements(_circuit(), threshold=0.5)
    nodes = [e for e in elements if "source" not in e["data"] and e["classes"] != "row-label"]
    edges = [e for e in elements if "source" in e["data"]]
    assert len(nodes) == 11
    assert {e["data"]["id"] for e in edges} == {
        "0.attn.act_in:5->0.attn.q:0",
        "0.attn.v:3->0.attn.resid_delta:7",
    }
    negative = next(e for e in edges if e["data"]["weight"] < 0)
    assert negative["classes"] == "negative"
    assert negative["data"]["abs_weight"] == 2.0
    q_node = next(e for e in nodes if e["data"]["id"] == "0.attn.q:9")
    assert q_node["data"]["label"] == "0.attn.q:9 (head 2, channel 1)"
    assert q_node["data"]["index"] == "9"
    assert q_node["classes"] == "attn-q"
    assert set(q_node["position"]) == {"x", "y"}


def test_build_elements_marks_missing_importance():
    elements = graph.build_elements(_circuit(), threshold=0.0)
    resid = next(e for e in elements if e["data"]["id"] == "0.attn.resid_delta:7")
    assert resid["data"]["importance"] == 0.0
    assert "no-importance" in resid["classes"]


def test_importance_range_includes_zero():
    assert graph.importance_range(_circuit()) == (-0.2, 0.5)
    positive_only = {"nodes": [_node("0.attn.q:0", 0.3)]}
    low, high = graph.importance_range(positive_only)
    assert low < 0 < high
    assert high == 0.3


def test_colour_range_floors_noise():
    # A chance-level circuit whose deltas are all about -5e-5: the scale must not saturate on them.
    noise = {
        "interv_loss": 0.6932,
        "nodes": [_node("0.attn.q:0", -5.5e-5), _node("0.mlp.act_in:1", -5e-5)],
    }
    low, high = graph.colour_range(noise)
    assert graph.colour_floor(noise) == pytest.approx(0.02 * 0.6932)
    assert low == pytest.approx(-0.02 * 0.6932)
    assert high == pytest.approx(0.02 * 0.6932)
    assert abs(-5.5e-5 / low) < 0.01  # drawn almost white, not saturated red


def test_colour_range_keeps_large_deltas():
    circuit = {"interv_loss": 0.03, "nodes": [_node("0.attn.q:0", 0.7), _node("0.attn.k:1", -0.2)]}
    assert graph.colour_range(circuit) == (-0.7, 0.7)


def test_colour_range_shares_scale_across_signs():
    # A tiny negative delta next to a large positive one must stay pale: both signs share +-M.
    circuit = {
        "interv_loss": 0.06,
        "nodes": [_node("0.attn.v:31", 0.49), _node("0.attn.v:2", -0.004)],
    }
    low, high = graph.colour_range(circuit)
    assert (low, high) == (-0.49, 0.49)
    assert abs(-0.004 / low) < 0.01


def test_colour_floor_absolute_minimum():
    assert graph.colour_floor({"interv_loss": 0.0}) == graph.ABSOLUTE_COLOUR_FLOOR


def test_colour_legend_explains_pale_circuit():
    assert "barely changes" not in graph.colour_legend(-0.2, 0.7, 0.0139, largest=0.5)
    legend = graph.colour_legend(-1e-4, 1e-4, 1e-4, largest=3.4e-6)
    assert "at most 3.4e-06, below 0.0001" in legend
    assert "barely changes" in legend


def test_largest_importance():
    circuit = _circuit()
    circuit["nodes"][0]["importance"] = -0.9
    circuit["nodes"][1]["importance"] = None
    assert graph.largest_importance(circuit) == 0.9
    assert graph.largest_importance({"nodes": [_node("0.attn.q:1", None)]}) is None


def test_colour_legend_states_floor():
    legend = graph.colour_legend(-0.7, 0.7, 0.0139)
    assert "share one scale, from -0.7 to +0.7" in legend
    assert "at least +-0.0139 (2% of the circuit loss" in legend


def test_stylesheet_maps_importance_and_weight():
    stylesheet = graph.build_stylesheet(-0.2, 0.5, 2.0)
    styles = {rule["selector"]: rule["style"] for rule in stylesheet}
    assert styles["node[importance >= 0]"]["background-color"].startswith(
        "mapData(importance, 0, 0.5,"
    )
    assert styles["node[importance < 0]"]["background-color"].startswith(
        "mapData(importance, -0.2, 0,"
    )
    assert styles["edge"]["width"] == "mapData(abs_weight, 0, 2.0, 0.3, 4)"
    assert not any("0.attn" in rule["selector"] for rule in stylesheet)


def test_stylesheet_highlights_selected_node():
    stylesheet = graph.build_stylesheet(-0.2, 0.5, 2.0, selected="0.attn.q:0")
    selectors = [rule["selector"] for rule in stylesheet]
    assert 'node[id = "0.attn.q:0"]' in selectors
    assert 'edge[source = "0.attn.q:0"], edge[target = "0.attn.q:0"]' in selectors


def test_node_details_lists_edges_by_weight():
    details = graph.node_details(_circuit(), "0.attn.q:0")
    assert details["location"] == "0.attn.q"
    assert details["head"] == 0
    assert details["channel"] == 0
    assert details["in_edges"] == [("0.attn.act_in:5", -2.0), ("0.attn.act_in:1", 0.5)]
    assert details["out_edges"] == []


def test_node_details_non_qkv_and_missing():
    details = graph.node_details(_circuit(), "0.attn.act_in:1")
    assert details["head"] is None
    assert details["out_edges"] == [("0.attn.q:0", 0.5), ("0.attn.k:8", 0.1)]
    assert graph.node_details(_circuit(), "0.attn.q:3") is None


def test_node_options_follow_graph_order():
    options = graph.node_options(_circuit())
    values = [option["value"] for option in options]
    assert values[0] == "0.attn.act_in:1"
    assert values[-1] == "1.attn.act_in:2"
    assert len(values) == 11


def test_node_options_show_ablation_delta():
    labels = {option["value"]: option["label"] for option in graph.node_options(_circuit())}
    assert labels["0.attn.act_in:5"] == "0.attn.act_in:5  delta -0.2"
    assert labels["0.attn.resid_delta:7"] == "0.attn.resid_delta:7"  # no importance stored


def test_top_nodes_by_absolute_delta():
    top = graph.top_nodes(_circuit(), count=3)
    assert [node["id"] for node in top] == ["0.attn.act_in:1", "0.attn.act_in:5", "0.attn.q:0"]
    assert top[1]["importance"] == -0.2
    assert top[2]["label"] == "0.attn.q:0 (head 0, channel 0)"
    assert len(graph.top_nodes(_circuit())) == 10  # the node without importance is left out


def test_stylesheet_labels_nodes_with_index():
    rule = next(r for r in graph.build_stylesheet(-0.2, 0.5, 2.0) if r["selector"] == "node")
    assert rule["style"]["label"] == "data(index)"
    assert rule["style"]["min-zoomed-font-size"] == graph.NODE_INDEX_MIN_PX


def test_row_labels_left_of_every_row():
    elements = graph.build_elements(_circuit(), threshold=0.0)
    labels = [e for e in elements if e["classes"] == "row-label"]
    nodes = [e for e in elements if "source" not in e["data"] and e["classes"] != "row-label"]
    assert [e["data"]["label"] for e in labels] == [
        "0.attn.act_in",
        "0.attn.q",
        "0.attn.k",
        "0.attn.v",
        "0.attn.resid_delta",
        "0.mlp.post_act",
        "1.attn.act_in",
    ]
    assert all(e["data"]["id"].startswith(graph.ROW_LABEL_PREFIX) for e in labels)
    assert all(e["selectable"] is False for e in labels)
    leftmost = min(e["position"]["x"] for e in nodes)
    assert all(e["position"]["x"] < leftmost for e in labels)


ROW_SUFFIXES = (
    "attn.act_in",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.resid_delta",
    "mlp.act_in",
    "mlp.post_act",
    "mlp.resid_delta",
)


def _tall_circuit(n_layer: int) -> dict:
    """One node in every row of `n_layer` layers, plus a wide mlp.post_act row in layer 0."""
    nodes = [_node(f"{layer}.{suffix}:0") for layer in range(n_layer) for suffix in ROW_SUFFIXES]
    nodes += [_node(f"0.mlp.post_act:{index}") for index in range(1, 40)]
    return {"n_layer": n_layer, "n_head": 4, "d_head": 4, "nodes": nodes, "edges": []}


def _fit_zoom(positions: dict, height_px: int) -> float:
    """The zoom at which the graph's nodes fill the assumed view, labels' width included."""
    xs = [x for x, _ in positions.values()]
    ys = [y for _, y in positions.values()]
    label_px = 0.6 * graph.ROW_LABEL_PX * graph.LABEL_CHARS + 3 * graph.NODE_GAP
    return min(
        (graph.VIEW_WIDTH - label_px) / max(max(xs) - min(xs), 1.0),
        (height_px - 2 * graph.FIT_PADDING) / max(max(ys) - min(ys), 1.0),
        graph.MAX_ZOOM,
    )


def test_row_labels_readable_at_fit_zoom():
    # Four layers, like the embedded model: the labels show ROW_LABEL_PX px at the fit zoom.
    circuit = _tall_circuit(4)
    positions = graph.layout_positions(circuit["nodes"], d_head=4)
    height = graph.view_height(positions)
    size = graph.row_label_font_size(positions, height)
    assert size * _fit_zoom(positions, height) == pytest.approx(graph.ROW_LABEL_PX, rel=0.02)
    assert size > 11  # the fixed size they had before, which read as about 3 px here
    labels = [
        e for e in graph.build_elements(circuit, threshold=0.0) if e["classes"] == "row-label"
    ]
    assert {e["data"]["font_size"] for e in labels} == {size}


def test_row_labels_never_overlap_rows():
    positions = graph.layout_positions(_tall_circuit(12)["nodes"], d_head=4)
    assert graph.view_height(positions) == graph.MAX_VIEW_HEIGHT
    assert graph.row_label_font_size(positions, graph.MAX_VIEW_HEIGHT) == graph.MAX_ROW_LABEL_SIZE
    assert graph.MAX_ROW_LABEL_SIZE < graph.ROW_GAP


def test_row_labels_small_graph_screen_size():
    positions = graph.layout_positions(_circuit()["nodes"], d_head=4)
    height = graph.view_height(positions)
    size = graph.row_label_font_size(positions, height)
    assert size * _fit_zoom(positions, height) == pytest.approx(graph.ROW_LABEL_PX, rel=0.02)


def test_stylesheet_sizes_row_labels_from_data():
    rule = next(
        r for r in graph.build_stylesheet(-0.2, 0.5, 2.0) if r["selector"] == "node.row-label"
    )
    assert rule["style"]["font-size"] == "data(font_size)"


def test_circuit_blocks_in_graph_order():
    assert graph.circuit_blocks(_circuit()) == ["0.attn", "0.mlp", "1.attn"]


def test_block_subgraph_keeps_block_and_edges():
    part = graph.block_subgraph(_circuit(), "0.attn")
    ids = {node["id"] for node in part["nodes"]}
    assert "0.mlp.post_act:30" not in ids
    assert "1.attn.act_in:2" not in ids
    assert {node["id"] for node in _circuit()["nodes"] if node["id"].startswith("0.attn.")} == ids
    assert part["edges"] == _circuit()["edges"]
    assert part["d_head"] == 4


def test_block_subgraph_keeps_other_edge_ends():
    circuit = _circuit()
    crossing = {"source": "0.attn.resid_delta:7", "target": "1.attn.act_in:2", "weight": 0.3}
    circuit["edges"].append(crossing)
    part = graph.block_subgraph(circuit, "1.attn")
    assert {node["id"] for node in part["nodes"]} == {"1.attn.act_in:2", "0.attn.resid_delta:7"}
    assert part["edges"] == [crossing]


def test_block_subgraph_without_nodes_names_block():
    with pytest.raises(ValueError, match=r"block '1.mlp' has no nodes.*0.attn, 0.mlp, 1.attn"):
        graph.block_subgraph(_circuit(), "1.mlp")


def test_layout_skips_empty_rows():
    # Two nodes, in layer 0's first row and layer 3's last: the 30 empty rows between them take
    # no space, so a small circuit's fit zoom draws readable nodes.
    nodes = [
        {"id": "0.attn.act_in:1", "location": "0.attn.act_in", "index": 1},
        {"id": "3.mlp.resid_delta:2", "location": "3.mlp.resid_delta", "index": 2},
    ]
    positions = graph.layout_positions(nodes, d_head=4)
    top, bottom = positions["0.attn.act_in:1"][1], positions["3.mlp.resid_delta:2"][1]
    assert top - bottom == graph.ROW_GAP + graph.LAYER_GAP
    labels = {
        label["data"]["label"]: label["position"]["y"]
        for label in graph.row_label_elements(positions)
    }
    assert labels == {"0.attn.act_in": top, "3.mlp.resid_delta": bottom}


def test_view_height_fits_rows_at_full_zoom():
    # Two layers with a node in every row: the view grows so the rows fit at TARGET_ZOOM
    # instead of shrinking the nodes into a fixed-height view.
    nodes = [_node(f"{layer}.{suffix}:0") for layer in range(2) for suffix in ROW_SUFFIXES]
    positions = graph.layout_positions(nodes, d_head=4)
    height = graph.view_height(positions)
    assert graph.MIN_VIEW_HEIGHT < height < graph.MAX_VIEW_HEIGHT
    assert _fit_zoom(positions, height) == pytest.approx(graph.TARGET_ZOOM, rel=0.01)


def test_view_height_bounds():
    one_row = graph.layout_positions([_node("0.attn.q:1"), _node("0.attn.q:5")], d_head=4)
    assert graph.view_height(one_row) == graph.MIN_VIEW_HEIGHT
    assert graph.view_height({}) == graph.MIN_VIEW_HEIGHT


def test_view_height_no_taller_than_width_allows():
    # A row of 60 nodes limits the zoom by width, so extra height would be blank.
    nodes = [_node(f"0.mlp.post_act:{i}") for i in range(60)]
    nodes += [_node(f"{layer}.attn.q:0") for layer in range(12)]
    positions = graph.layout_positions(nodes, d_head=4)
    height = graph.view_height(positions)
    ys = [y for _, y in positions.values()]
    width_zoom = _fit_zoom(positions, graph.MAX_VIEW_HEIGHT * 10)
    assert width_zoom < graph.TARGET_ZOOM
    assert graph.MIN_VIEW_HEIGHT < height < graph.MAX_VIEW_HEIGHT
    assert height == pytest.approx((max(ys) - min(ys)) * width_zoom + 2 * graph.FIT_PADDING, abs=1)


def test_build_view_returns_height():
    elements, height = graph.build_view(_circuit(), threshold=0.0)
    assert elements == graph.build_elements(_circuit(), threshold=0.0)
    positions = graph.layout_positions(_circuit()["nodes"], d_head=4)
    assert height == graph.view_height(positions)
