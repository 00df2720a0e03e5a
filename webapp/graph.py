"""The circuit as a dash-cytoscape graph: server-side positions, elements, stylesheet, node details.

Input is the JSON-native circuit dict that `webapp.circuit_data.load_circuit` returns:
`{"n_layer", "n_head", "d_head", "loss", "interv_loss", "nodes": [...], "edges": [...]}` with nodes
`{"id", "location", "index", "importance"}` and edges `{"source", "target", "weight"}`.

Layout (a `preset` layout, because cytoscape's force layouts take minutes on thousands of nodes):
one row per hook location, stacked bottom up by layer in the order of `nodes.LOCATION_SUFFIXES`.
Nodes in a row are sorted by channel index and centred. The q, k and v rows of a layer share one
column per head, so a head's q, k and v channels sit above each other, with a gap between heads.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from webapp.nodes import LOCATION_SUFFIXES, QKV_SUFFIXES, NodeKey, describe_node, parse_node_key

NODE_GAP = 24  # px between neighbouring nodes in a row
HEAD_GAP = 2  # empty node slots between two heads in the q/k/v rows
ROW_GAP = 44  # px between the rows of one layer
LAYER_GAP = 36  # extra px between layers
MAX_ZOOM = 4  # the graph component's maxZoom (webapp.components.circuit_panels)

NODE_INDEX_SIZE = 9  # graph units: 9 px at full zoom, enough for 4 digits within NODE_GAP
NODE_INDEX_MIN_PX = 7  # smaller index labels are hidden until the user zooms in

POSITIVE_COLOURS = ("#eef3fb", "#08306b")  # importance 0 .. max: white to dark blue
NEGATIVE_COLOURS = ("#b2182b", "#fbeeee")  # importance min .. 0: red to white
SELECTED_COLOUR = "#ff7f0e"


def _row_y(location: str) -> float:
    layer, suffix = location.split(".", 1)
    row = int(layer) * len(LOCATION_SUFFIXES) + LOCATION_SUFFIXES.index(suffix)
    # Cytoscape's y axis points down, so higher rows get smaller y.
    return -float(row * ROW_GAP + int(layer) * LAYER_GAP)


def _compact_row_ys(locations: Iterable[str]) -> dict[str, float]:
    """Return a y for each row that has nodes, top to bottom in graph order.

    Empty rows take no space. A 4-layer model has 32 possible rows, and a small circuit uses only a
    few of them. Space for the empty rows made its fit zoom draw nodes about 3 px wide.
    """
    ordered = sorted(set(locations), key=lambda location: -_row_y(location))
    ys: dict[str, float] = {}
    y, previous_layer = 0.0, None
    for location in ordered:
        layer = location.split(".", 1)[0]
        if previous_layer is not None:
            y -= ROW_GAP + (LAYER_GAP if layer != previous_layer else 0)
        ys[location] = y
        previous_layer = layer
    return ys


def _centred(count: int) -> list[float]:
    return [(i - (count - 1) / 2) * NODE_GAP for i in range(count)]


def _qkv_columns(indices_by_suffix: dict[str, list[int]], d_head: int) -> dict[tuple, float]:
    """Compute the x of each (suffix, index) in one layer's q/k/v rows, one column block per head."""
    per_head: dict[int, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for suffix, indices in indices_by_suffix.items():
        for index in sorted(indices):
            per_head[index // d_head][suffix].append(index)

    slots: dict[tuple, int] = {}
    offset = 0
    for head in sorted(per_head):
        rows = per_head[head]
        for suffix, indices in rows.items():
            for rank, index in enumerate(indices):
                slots[(suffix, index)] = offset + rank
        offset += max(len(indices) for indices in rows.values()) + HEAD_GAP

    width = max(offset - HEAD_GAP, 1)
    return {key: (slot - (width - 1) / 2) * NODE_GAP for key, slot in slots.items()}


def layout_positions(nodes: Iterable[dict], d_head: int) -> dict[str, tuple[float, float]]:
    """Compute the (x, y) position in pixels of each node id."""
    by_location: dict[str, list[int]] = defaultdict(list)
    for node in nodes:
        by_location[node["location"]].append(node["index"])

    positions: dict[str, tuple[float, float]] = {}
    row_ys = _compact_row_ys(by_location)
    qkv_by_layer: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for location, indices in by_location.items():
        layer, suffix = location.split(".", 1)
        if suffix in QKV_SUFFIXES:
            qkv_by_layer[layer][suffix] = indices
            continue
        y = row_ys[location]
        for x, index in zip(_centred(len(indices)), sorted(indices), strict=True):
            positions[f"{location}:{index}"] = (x, y)

    for layer, indices_by_suffix in qkv_by_layer.items():
        for (suffix, index), x in _qkv_columns(indices_by_suffix, d_head).items():
            location = f"{layer}.{suffix}"
            positions[f"{location}:{index}"] = (x, row_ys[location])
    return positions


def node_block(node_id: str) -> str:
    """Return the block of a node id, e.g. `1.attn` for `1.attn.q:17`."""
    return ".".join(node_id.split(".", 2)[:2])


def circuit_blocks(circuit: dict) -> list[str]:
    """List the blocks (`<layer>.attn`, `<layer>.mlp`) that keep nodes, in graph order."""
    blocks = {node_block(node["id"]) for node in circuit["nodes"]}
    return sorted(blocks, key=lambda block: (int(block.split(".")[0]), block.split(".")[1]))


def block_subgraph(circuit: dict, block: str) -> dict:
    """Return a copy of `circuit` with the nodes of `block` and the edges into or out of them.

    The node at the other end of such an edge is kept too, so every edge has both ends drawn.
    Raises ValueError naming the block when the circuit keeps no node in it.
    """
    inside = {node["id"] for node in circuit["nodes"] if node_block(node["id"]) == block}
    if not inside:
        shown = ", ".join(circuit_blocks(circuit)) or "none"
        raise ValueError(f"block {block!r} has no nodes in this circuit; pick one of {shown}")
    edges = [e for e in circuit["edges"] if e["source"] in inside or e["target"] in inside]
    ends = inside | {e["source"] for e in edges} | {e["target"] for e in edges}
    nodes = [node for node in circuit["nodes"] if node["id"] in ends]
    return {**circuit, "nodes": nodes, "edges": edges}


def _label(node: dict, d_head: int) -> str:
    return describe_node(NodeKey(node["location"], node["index"]), d_head)


def max_abs_weight(circuit: dict) -> float:
    """Return the largest |edge weight| of the circuit (0.0 when it has no edges)."""
    return max((abs(edge["weight"]) for edge in circuit["edges"]), default=0.0)


def visible_edges(circuit: dict, threshold: float) -> list[dict]:
    """Return edges with |weight| >= threshold * the largest |weight| (0 keeps every nonzero edge)."""
    cutoff = threshold * max_abs_weight(circuit)
    return [e for e in circuit["edges"] if e["weight"] != 0 and abs(e["weight"]) >= cutoff]


def build_elements(circuit: dict, threshold: float) -> list[dict]:
    """Build the cytoscape elements (see `build_view`)."""
    return build_view(circuit, threshold)[0]


def build_view(circuit: dict, threshold: float) -> tuple[list[dict], int]:
    """Build the cytoscape elements and the graph's height in px.

    The elements are every node at its preset position, a label per row, and the edges above the
    threshold. The height comes from `view_height`.
    """
    positions = layout_positions(circuit["nodes"], circuit["d_head"])
    height = view_height(positions)
    elements = []
    for node in circuit["nodes"]:
        x, y = positions[node["id"]]
        has_importance = node["importance"] is not None
        elements.append(
            {
                "data": {
                    "id": node["id"],
                    "label": _label(node, circuit["d_head"]),
                    "index": str(node["index"]),
                    "importance": node["importance"] if has_importance else 0.0,
                },
                "position": {"x": x, "y": y},
                "classes": node["location"].split(".", 1)[1].replace(".", "-")
                + ("" if has_importance else " no-importance"),
            }
        )
    elements += row_label_elements(positions, height)
    for edge in visible_edges(circuit, threshold):
        elements.append(
            {
                "data": {
                    "id": f"{edge['source']}->{edge['target']}",
                    "source": edge["source"],
                    "target": edge["target"],
                    "weight": edge["weight"],
                    "abs_weight": abs(edge["weight"]),
                },
                "classes": "positive" if edge["weight"] > 0 else "negative",
            }
        )
    return elements, height


ROW_LABEL_PREFIX = "row:"

# The server does not know the view's width, so the fit zoom is estimated for a VIEW_WIDTH px view.
# The graph's height is chosen here (view_height), so a tall circuit gets a tall view rather than
# tiny nodes. Row labels are sized so that they read at ROW_LABEL_PX on screen at the fit zoom:
# cytoscape scales text with the zoom.
ROW_LABEL_PX = 13
VIEW_WIDTH = 1000  # an estimate: the graph spans the page width, which the server cannot see
FIT_PADDING = 20  # px the preset layout leaves around the graph when it fits it (circuit_panels)
TARGET_ZOOM = 1.5  # the zoom view_height aims for: 14-unit nodes drawn 21 px wide, indices 13 px
MIN_VIEW_HEIGHT = 400
MAX_VIEW_HEIGHT = 1400  # a taller circuit gets smaller nodes rather than a taller page
LABEL_CHARS = 18  # characters of the longest row label, `11.mlp.resid_delta`
MAX_ROW_LABEL_SIZE = 0.8 * ROW_GAP  # larger labels would overlap the rows above and below


def _spans(positions: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Return the (width, height) in graph units that the nodes span (at least 1 each)."""
    xs = [x for x, _ in positions.values()]
    ys = [y for _, y in positions.values()]
    return max(max(xs) - min(xs), 1.0), max(max(ys) - min(ys), 1.0)


def _width_zoom(width: float) -> float:
    # The labels stand left of the nodes and take about 0.6 em per character on screen.
    label_width_px = 0.6 * ROW_LABEL_PX * LABEL_CHARS + 3 * NODE_GAP
    return (VIEW_WIDTH - label_width_px) / width


def view_height(positions: dict[str, tuple[float, float]]) -> int:
    """Return the graph's height in px: enough to fit the rows at TARGET_ZOOM.

    A circuit whose width already limits the zoom gets only the height it uses at that zoom.
    The height stays within [MIN_VIEW_HEIGHT, MAX_VIEW_HEIGHT].
    """
    if not positions:
        return MIN_VIEW_HEIGHT
    width, height = _spans(positions)
    zoom = min(TARGET_ZOOM, _width_zoom(width))
    needed = height * zoom + 2 * FIT_PADDING
    return int(round(min(max(needed, MIN_VIEW_HEIGHT), MAX_VIEW_HEIGHT)))


def graph_style(height_px: int) -> dict:
    """Return the cytoscape component's style for a graph `height_px` tall."""
    return {"width": "100%", "height": f"{height_px}px"}


def fit_zoom(positions: dict[str, tuple[float, float]], height_px: int) -> float:
    """Return the zoom at which cytoscape fits the nodes into a VIEW_WIDTH x height_px view."""
    width, height = _spans(positions)
    return min(_width_zoom(width), (height_px - 2 * FIT_PADDING) / height, MAX_ZOOM)


def row_label_font_size(positions: dict[str, tuple[float, float]], height_px: int) -> float:
    """Return the row-label font size in graph units that shows ROW_LABEL_PX px at the fit zoom.

    NOTE: the size is capped at MAX_ROW_LABEL_SIZE so that labels never overlap. A circuit too
    tall for MAX_VIEW_HEIGHT at TARGET_ZOOM (most rows of 8 or more layers) is drawn smaller, and
    its labels read smaller than ROW_LABEL_PX until the user zooms in.
    """
    zoom = fit_zoom(positions, height_px)
    return round(min(ROW_LABEL_PX / zoom, MAX_ROW_LABEL_SIZE), 1)


def row_label_elements(
    positions: dict[str, tuple[float, float]], height_px: int | None = None
) -> list[dict]:
    """Build one unselectable text node per row (e.g. `3.attn.q`), left of the widest row.

    `height_px` is the graph's height (default: `view_height(positions)`).
    """
    if not positions:
        return []
    if height_px is None:
        height_px = view_height(positions)
    left = min(x for x, _ in positions.values()) - 3 * NODE_GAP
    font_size = row_label_font_size(positions, height_px)
    # Every node of a row shares its y (layout_positions), so the label takes it from the row.
    row_ys = {node_id.rsplit(":", 1)[0]: y for node_id, (_, y) in positions.items()}
    locations = sorted(row_ys, key=lambda loc: -_row_y(loc))
    return [
        {
            "data": {
                "id": f"{ROW_LABEL_PREFIX}{location}",
                "label": location,
                "font_size": font_size,
            },
            "position": {"x": left, "y": row_ys[location]},
            "classes": "row-label",
            "selectable": False,
            "grabbable": False,
        }
        for location in locations
    ]


def importance_range(circuit: dict) -> tuple[float, float]:
    """Return the (min, max) node importance, widened to include 0 so the range is never empty."""
    values = [n["importance"] for n in circuit["nodes"] if n["importance"] is not None]
    low = min([0.0, *values])
    high = max([0.0, *values])
    return (low if low < 0 else -1e-9, high if high > 0 else 1e-9)


# Node colours saturate at the largest |ablation delta|, but never below this fraction of the
# circuit's task loss (or ABSOLUTE_COLOUR_FLOOR), so deltas that are noise next to the loss stay pale.
COLOUR_FLOOR_FRACTION = 0.02
ABSOLUTE_COLOUR_FLOOR = 1e-4


def colour_floor(circuit: dict) -> float:
    """Return the smallest |ablation delta| that gets a saturated node colour."""
    return max(COLOUR_FLOOR_FRACTION * abs(circuit["interv_loss"]), ABSOLUTE_COLOUR_FLOOR)


def colour_range(circuit: dict) -> tuple[float, float]:
    """Return the (low, high) ablation deltas of the node colour scale: -M and +M.

    M is the largest |delta|, at least colour_floor. Both signs share one scale, so a node whose
    delta is -0.004 next to a +0.5 is drawn almost white, not as saturated as the +0.5 one.
    """
    low, high = importance_range(circuit)
    largest = max(-low, high, colour_floor(circuit))
    return -largest, largest


def colour_legend(low: float, high: float, floor: float, largest: float | None = None) -> str:
    """Describe the node colour scale for the legend under the graph.

    `largest` is the circuit's largest |ablation delta|. When it is below `floor`, the legend
    explains why every node is pale.
    """
    text = (
        f"Colour: ablation delta, the task loss per sequence with the node ablated too minus the "
        f"circuit's loss (blue: ablating the node raises the loss; red: lowers it). Both signs "
        f"share one scale, from {low:+.3g} to {high:+.3g}. The scale spans at least +-{floor:.3g} "
        f"({COLOUR_FLOOR_FRACTION:.0%} of the circuit loss, at least {ABSOLUTE_COLOUR_FLOOR:g}), "
        "so deltas smaller than that stay pale. Edge width: |weight|, blue if positive, red if negative."
    )
    if largest is not None and largest < floor:
        text += (
            f" Every node's |ablation delta| in this circuit is at most {largest:.2g}, below "
            f"{floor:.3g}: removing any single node barely changes the circuit's loss, so all "
            "nodes look pale. A smaller k usually shows more contrast."
        )
    return text


def largest_importance(circuit: dict) -> float | None:
    """Return the largest |ablation delta| of the circuit's nodes (None when none has one)."""
    values = [abs(n["importance"]) for n in circuit["nodes"] if n["importance"] is not None]
    return max(values, default=None)


def build_stylesheet(
    importance_low: float,
    importance_high: float,
    max_weight: float,
    selected: str | None = None,
) -> list[dict]:
    """Build the cytoscape stylesheet: node colour maps importance, edge width maps |weight|.

    The selected node gets an orange border, and its input and output edges are drawn on top in orange.
    """
    max_weight = max(max_weight, 1e-12)
    stylesheet = [
        *_node_rules(importance_low, importance_high),
        {
            "selector": "edge",
            "style": {
                "width": f"mapData(abs_weight, 0, {max_weight}, 0.3, 4)",
                "opacity": 0.55,
                "curve-style": "straight",
            },
        },
        {"selector": "edge.positive", "style": {"line-color": "#4575b4"}},
        {"selector": "edge.negative", "style": {"line-color": "#d73027"}},
    ]
    if selected is not None:
        stylesheet += _selection_rules(selected)
    return stylesheet


def _node_rules(importance_low: float, importance_high: float) -> list[dict]:
    return [
        {
            "selector": "node",
            "style": {
                "width": 14,
                "height": 14,
                "border-width": 1,
                "border-color": "#555",
                # The channel index under each node (the row label gives the location). Cytoscape
                # hides it while it would draw smaller than NODE_INDEX_MIN_PX on screen.
                "label": "data(index)",
                "font-size": NODE_INDEX_SIZE,
                "min-zoomed-font-size": NODE_INDEX_MIN_PX,
                "text-valign": "bottom",
                "text-margin-y": 1,
                "color": "#444",
                "text-background-color": "#fff",
                "text-background-opacity": 0.75,
            },
        },
        {
            "selector": "node[importance >= 0]",
            "style": {
                "background-color": f"mapData(importance, 0, {importance_high}, "
                f"{POSITIVE_COLOURS[0]}, {POSITIVE_COLOURS[1]})"
            },
        },
        {
            "selector": "node[importance < 0]",
            "style": {
                "background-color": f"mapData(importance, {importance_low}, 0, "
                f"{NEGATIVE_COLOURS[0]}, {NEGATIVE_COLOURS[1]})"
            },
        },
        {"selector": "node.no-importance", "style": {"background-color": "#ccc"}},
        {
            "selector": "node.row-label",
            "style": {
                "label": "data(label)",
                "background-opacity": 0,
                "border-width": 0,
                "text-halign": "left",
                "text-valign": "center",
                # A size in the stylesheet is in graph units, so it shrinks with the zoom. The
                # elements carry a size chosen for the graph's fit zoom (see row_label_font_size).
                "font-size": "data(font_size)",
                "font-weight": "bold",
                "color": "#333",
            },
        },
    ]


def _selection_rules(selected: str) -> list[dict]:
    quoted = selected.replace("\\", "\\\\").replace('"', '\\"')
    return [
        {
            "selector": f'node[id = "{quoted}"]',
            "style": {
                "border-width": 4,
                "border-color": SELECTED_COLOUR,
                "label": "data(label)",
                "font-size": 11,
                "text-valign": "top",
                "text-background-color": "#fff",
                "text-background-opacity": 0.8,
            },
        },
        {
            "selector": f'edge[source = "{quoted}"], edge[target = "{quoted}"]',
            "style": {"line-color": SELECTED_COLOUR, "opacity": 1, "z-index": 10},
        },
    ]


def node_details(circuit: dict, node_id: str) -> dict | None:
    """Collect the location, index, head/channel, ablation delta and in/out edges of one node.

    Returns None when the circuit lacks the node.

    Edges are sorted by |weight|, largest first, and include those below the display threshold.
    """
    node = next((n for n in circuit["nodes"] if n["id"] == node_id), None)
    if node is None:
        return None
    key = parse_node_key(node_id)
    d_head = circuit["d_head"]
    in_edges = [(e["source"], e["weight"]) for e in circuit["edges"] if e["target"] == node_id]
    out_edges = [(e["target"], e["weight"]) for e in circuit["edges"] if e["source"] == node_id]
    head_channel = divmod(key.index, d_head) if key.suffix in QKV_SUFFIXES else None
    return {
        "id": node_id,
        "location": key.location,
        "index": key.index,
        "head": head_channel[0] if head_channel else None,
        "channel": head_channel[1] if head_channel else None,
        "importance": node["importance"],
        "in_edges": sorted(in_edges, key=lambda pair: -abs(pair[1])),
        "out_edges": sorted(out_edges, key=lambda pair: -abs(pair[1])),
    }


def node_options(circuit: dict) -> list[dict]:
    """Build the node-search dropdown options: every node, labelled with head/channel for q/k/v."""
    d_head = circuit["d_head"]
    ordered = sorted(circuit["nodes"], key=lambda n: (_row_y(n["location"]) * -1, n["index"]))
    return [{"label": _option_label(n, d_head), "value": n["id"]} for n in ordered]


def _option_label(node: dict, d_head: int) -> str:
    if node["importance"] is None:
        return _label(node, d_head)
    return f"{_label(node, d_head)}  delta {node['importance']:+.3g}"


def top_nodes(circuit: dict, count: int = 10) -> list[dict]:
    """Return up to `count` nodes with the largest |ablation delta|, largest first.

    Each entry is `{"id", "label", "importance"}`. Nodes without an importance are left out, and
    ties keep graph order.
    """
    d_head = circuit["d_head"]
    scored = [node for node in circuit["nodes"] if node["importance"] is not None]
    ordered = sorted(scored, key=lambda node: -abs(node["importance"]))
    return [
        {"id": node["id"], "label": _label(node, d_head), "importance": node["importance"]}
        for node in ordered[:count]
    ]
