"""Tests for the pure figure and heatmap builders (webapp.figures, webapp.heatmap, components)."""

import math

import pytest
from dash import html

from webapp import figures, heatmap
from webapp.components.token_heatmap import render_heatmap

RECORDS = [
    {"step": 0, "test_xent": 5.0, "L0": 1000, "note": "warmup"},
    {"step": 10, "test_xent": 3.0, "L0": 800, "lr": 0.1},
    {"step": 20, "test_xent": math.nan, "L0": 600},
    {"step": 30, "test_xent": 2.0, "L0": 500, "flag": True},
]


def test_numeric_metrics_skip_text_bool_step():
    assert figures.numeric_metrics(RECORDS) == ["L0", "lr", "test_xent"]


def test_default_metrics_prefer_usual_curves():
    assert figures.default_metrics(RECORDS) == ["test_xent", "L0"]
    assert figures.default_metrics([{"step": 1, "acc": 0.5}]) == ["acc"]
    assert figures.default_metrics([]) == []


def test_training_curves_one_subplot_per_metric():
    figure = figures.training_curves_figure(RECORDS, ["test_xent", "L0"])
    assert len(figure.data) == 2
    xent, l0 = figure.data
    assert list(xent.x) == [0, 10, 30]  # the NaN point is dropped
    assert list(xent.y) == [5.0, 3.0, 2.0]
    assert list(l0.y) == [1000, 800, 600, 500]
    assert xent.yaxis != l0.yaxis


def test_training_curves_without_step_use_line_order():
    figure = figures.training_curves_figure([{"loss": 2.0}, {"loss": 1.0}], ["loss"])
    assert list(figure.data[0].x) == [0, 1]


@pytest.mark.parametrize(
    ("records", "metrics", "text"),
    [([], ["x"], "no records"), (RECORDS, [], "No metric selected")],
)
def test_training_curves_empty_states(records, metrics, text):
    figure = figures.training_curves_figure(records, metrics)
    assert figure.data == ()
    assert text in figure.layout.annotations[0].text


def test_circuit_loss_figure_bars_and_search():
    figure = figures.circuit_loss_figure(0.1, 0.15, [(0, 0.9), (1, 0.3)])
    bars, search = figure.data
    assert list(bars.x) == ["full model", "circuit"]
    assert list(bars.y) == [0.1, 0.15]
    assert list(search.y) == [0.9, 0.3]
    assert len(figures.circuit_loss_figure(0.1, 0.15).data) == 1


def test_search_panel_marks_final_circuit_point():
    # The pruner appends the circuit's own loss (0.15 here) after the mask-training steps.
    figure = figures.circuit_loss_figure(0.1, 0.15, [(0, 0.9), (1, 0.01), (2, 0.15)])
    search = figure.data[1]
    assert list(search.text) == [
        "mask training: open gates, a training batch, uncalibrated",
        "mask training: open gates, a training batch, uncalibrated",
        "the circuit: its k nodes, evaluation pairs, calibrated",
    ]
    assert search.marker.color[-1] != search.marker.color[0]
    assert "last point: the circuit" in figure.layout.xaxis2.title.text


def test_search_panel_without_final_point():
    # A history that does not end at the circuit's loss has only training steps.
    figure = figures.circuit_loss_figure(0.1, 0.15, [(0, 0.9), (1, 0.3)])
    assert set(figure.data[1].text) == {"mask training: open gates, a training batch, uncalibrated"}
    assert figure.layout.xaxis2.title.text == "mask-training step"


def test_circuit_loss_figure_block_deltas_in_order():
    deltas = {"1.mlp": 0.2, "0.mlp": -0.1, "10.attn": 0.3, "0.attn": 0.05, "1.attn": 0.0}
    figure = figures.circuit_loss_figure(0.1, 0.15, [], deltas)
    bars, blocks = figure.data
    assert list(blocks.x) == ["0.attn", "0.mlp", "1.attn", "1.mlp", "10.attn"]
    assert list(blocks.y) == [0.05, -0.1, 0.0, 0.2, 0.3]
    assert blocks.xaxis == "x2"
    assert blocks.marker.color[1] != blocks.marker.color[0]
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles == ["task loss per sequence", "loss rise with a block ablated"]


def test_circuit_loss_figure_panels_do_not_overlap():
    figure = figures.circuit_loss_figure(0.1, 0.15, [(0, 0.5)], {"0.attn": 0.1})
    domains = [figure.layout.xaxis.domain, figure.layout.xaxis2.domain, figure.layout.xaxis3.domain]
    for left, right in zip(domains, domains[1:], strict=False):
        assert left[1] < right[0]


def test_activation_figure_colours_sign():
    figure = figures.activation_figure(["a", "b"], [0.5, -0.5], "node")
    bar = figure.data[0]
    assert list(bar.y) == [0.5, -0.5]
    assert list(bar.hovertext) == ["a", "b"]
    assert bar.marker.color[0] != bar.marker.color[1]


def test_activation_figure_hover_escapes_tokens():
    # Plotly renders tags in hover text, so a token such as "<b>" must reach it as entities.
    row = heatmap.heatmap_row(["<b>", " x\n"], [1.0, 2.0], "text")
    figure = figures.activation_figure(row["tokens"], row["values"], "node")
    assert list(figure.data[0].hovertext) == ["&lt;b&gt;", "\u00b7x\u21b5"]


def test_activation_figure_marks_newline_once():
    # The per-token page passes heatmap-row tokens, whose newline already carries its mark.
    row = heatmap.heatmap_row(["'\n", "\n\n"], [1.0, 2.0], "text")
    figure = figures.activation_figure(row["tokens"], row["values"], "node")
    assert list(figure.data[0].hovertext) == ["'\u21b5", "\u21b5\u21b5"]


def test_visible_whitespace_marks():
    assert heatmap.visible_whitespace(" if\tx\r\n") == "\u00b7if\u2192x\u240d\u21b5\n"
    assert heatmap.visible_whitespace("\\xe2\\x80") == "\\xe2\\x80"


@pytest.mark.parametrize(
    ("value", "scale", "expected"),
    [
        (1.0, 2.0, "rgba(33,102,172,0.500)"),
        (-2.0, 2.0, "rgba(178,24,43,1.000)"),
        (5.0, 2.0, "rgba(33,102,172,1.000)"),
        (1.0, 0.0, "rgba(0,0,0,0)"),
    ],
)
def test_token_colour(value, scale, expected):
    assert heatmap.token_colour(value, scale) == expected


def test_heatmap_row_rejects_length_mismatch():
    with pytest.raises(ValueError, match="has 2 tokens but 1 activation values"):
        heatmap.heatmap_row(["a", "b"], [1.0], "row")


def test_window_clips_to_sequence():
    assert heatmap.window(100, 50, 10) == (40, 61)
    assert heatmap.window(100, 3, 10) == (0, 14)
    assert heatmap.window(20, 19, 10) == (9, 20)


def test_render_heatmap_keeps_markup_as_text():
    rows = [heatmap.heatmap_row(["<b>", " &amp;", "x"], [1.0, -2.0, 0.0], "row 0", highlight=1)]
    rendered = render_heatmap(rows, element_id="heatmap")
    spans = rendered.children[0].children[1].children
    assert [span.children for span in spans] == ["<b>", "\u00b7&amp;", "x"]
    assert all(isinstance(span, html.Span) for span in spans)
    assert spans[1].className == "token token-marked token-min"
    assert spans[0].style["backgroundColor"] == "rgba(33,102,172,0.500)"
    assert spans[0].title == "position 0: 1 (max of the row)"
    assert rendered.id == "heatmap"


def test_render_heatmap_explains_outline():
    marked = heatmap.heatmap_row(["a", "b"], [1.0, 2.0], "row 0", highlight=0, highlight_note="X")
    plain = heatmap.heatmap_row(["a", "b"], [1.0, 2.0], "row 1")
    legend = render_heatmap([marked, marked, plain]).children[-1].children
    assert legend.count("an orange outline marks X") == 1
    assert "orange outline" not in render_heatmap([plain]).children[-1].children
    default = heatmap.heatmap_row(["a"], [1.0], "row 2", highlight=0)
    assert (
        "marks the position named in the row's title"
        in render_heatmap([default]).children[-1].children
    )


def test_sweep_figure_range_covers_points_and_k():
    points = [{"k": 0, "loss_per_sequence": 0.9}, {"k": 4, "loss_per_sequence": 0.5}]
    points.append({"k": 64, "loss_per_sequence": 0.1})
    figure = figures.sweep_figure(points, 0.05, 0.15, 100)
    assert list(figure.data[0].x) == [4, 64]
    low, high = figure.layout.xaxis.range
    assert low < math.log10(4)
    assert math.log10(100) < high < math.log10(1000)
    # The k label sits inside that range: a log axis reads an annotation's x as log10(k).
    label = next(a for a in figure.layout.annotations if a.text == "k = 100")
    assert low < label.x < high


def test_sweep_figure_reference_losses_in_legend():
    points = [{"k": 4, "loss_per_sequence": 0.5}, {"k": 64, "loss_per_sequence": 0.1}]
    figure = figures.sweep_figure(points, 0.05, 0.055, 16)
    names = [trace.name for trace in figure.data]
    assert names == ["circuit", "full model (0.05)", "target (0.055)"]
    assert figure.layout.showlegend is True
    # Close reference losses must not get line annotations, which would overlap.
    texts = [annotation.text for annotation in figure.layout.annotations]
    assert texts == ["k = 16"]
    low, high = figure.layout.xaxis.range
    assert list(figure.data[2].x) == pytest.approx([10**low, 10**high])
    assert list(figure.data[2].y) == [0.055, 0.055]


def test_sweep_figure_without_positive_k():
    figure = figures.sweep_figure([{"k": 0, "loss_per_sequence": 0.9}], None, None, None)
    assert "no points with k > 0" in figure.layout.annotations[0].text


def test_aligned_difference_equal_lengths():
    # The pair differs in one token (a quote), which still aligns position by position.
    difference = heatmap.aligned_difference([5, 7, 9], [1.0, 2.0, 3.0], [5, 8, 9], [0.5, 4.0, 3.0])
    assert difference == [0.5, -2.0, 0.0]


def test_aligned_difference_skips_inserted_token():
    # `f"` against `"`: the inserted f token has no partner, the rest aligns around it.
    difference = heatmap.aligned_difference(
        [1, 2, 3, 4], [1.0, 9.0, 3.0, 4.0], [1, 3, 4], [0.0, 1.0, 1.0]
    )
    assert difference == [1.0, None, 2.0, 3.0]


def test_extreme_positions():
    assert heatmap.extreme_positions([0.1, -2.0, 3.0, 3.0]) == (2, 1)
    assert heatmap.extreme_positions([None, 1.0, -1.0]) == (1, 2)
    assert heatmap.extreme_positions([0.0, 0.0]) == (None, None)
    assert heatmap.extreme_positions([None]) == (None, None)


def test_extreme_positions_skip_zero_extremes():
    # A difference row that is 0 where the classes agree and negative elsewhere: its maximum is a
    # zero shared by many tokens, so only the minimum is marked.
    assert heatmap.extreme_positions([0.0, -0.5, 0.0, -1.5]) == (None, 3)
    assert heatmap.extreme_positions([0.0, 2.0, 0.0]) == (1, None)


def test_ranged_colour_spans_min_to_max():
    assert heatmap.ranged_colour(-2.0, -2.0, 2.0) == "rgba(230,85,13,0.000)"
    assert heatmap.ranged_colour(0.0, -2.0, 2.0) == "rgba(230,85,13,0.500)"
    assert heatmap.ranged_colour(2.0, -2.0, 2.0) == "rgba(230,85,13,1.000)"
    assert heatmap.ranged_colour(None, -2.0, 2.0) == "rgba(0,0,0,0)"
    assert heatmap.ranged_colour(1.0, 1.0, 1.0) == "rgba(0,0,0,0)"


def test_render_heatmap_auto_scale_and_marks():
    rows = [heatmap.heatmap_row(["a", "b", "c"], [1.0, 3.0, None], "row")]
    rendered = render_heatmap(rows, scale="auto")
    spans = rendered.children[0].children[1].children
    assert spans[0].style["backgroundColor"] == "rgba(230,85,13,0.000)"
    assert spans[1].style["backgroundColor"] == "rgba(230,85,13,1.000)"
    assert spans[2].style["backgroundColor"] == "rgba(0,0,0,0)"
    assert spans[0].className == "token token-min"
    assert spans[1].className == "token token-max"
    assert spans[2].title == "position 2: no aligned token"
    assert "min 1 (white) to max 3 (orange)" in rendered.children[-1].children


def test_render_heatmap_symmetric_scale():
    rows = [heatmap.heatmap_row(["a", "b"], [-1.0, 2.0], "row")]
    rendered = render_heatmap(rows)
    spans = rendered.children[0].children[1].children
    assert spans[0].style["backgroundColor"] == "rgba(178,24,43,0.500)"
    assert spans[1].style["backgroundColor"] == "rgba(33,102,172,1.000)"
    assert "centred on 0, |activation| up to 2" in rendered.children[-1].children


def test_render_heatmap_rejects_unknown_scale():
    with pytest.raises(ValueError, match="invalid heatmap scale 'log'"):
        render_heatmap([], scale="log")


def test_match_pair_answers_labels_matching_pairs():
    from types import SimpleNamespace

    from webapp.circuit_data import match_pair_answers

    pairs = [
        SimpleNamespace(
            inputs=[1, 2], patch_from_inputs=[1, 3], target_tokid=2, target_alt_tokid=3
        ),
        SimpleNamespace(inputs=[4], patch_from_inputs=[5], target_tokid=6, target_alt_tokid=7),
    ]
    answers = match_pair_answers([[1, 2], [9]], [[1, 3], [5]], pairs, lambda token: f"t{token}")
    assert answers == [["t2", "t3"], None]  # the second stored pair differs from the task's
    assert match_pair_answers([[1, 2]], [[1, 3]], [], str) == [None]


def test_nodes_activation_figure_rows_and_hover():
    row = heatmap.heatmap_row(["<b>", "\n"], [1.0, -3.0], "text")
    series = [("0.attn.q:1", [1.0, -3.0]), ("1.mlp.act_in:2", [0.5, 2.0])]
    figure = figures.nodes_activation_figure(row["tokens"], series, "2 nodes")
    heat = figure.data[0]

    assert list(heat.y) == ["0.attn.q:1", "1.mlp.act_in:2"]
    # Each row on its own scale: 0.5 and 2.0 must not look faint beside -3.0.
    assert [list(values) for values in heat.z] == [[1 / 3, -1.0], [0.25, 1.0]]
    assert [[list(cell) for cell in row] for row in heat.customdata] == [
        [["&lt;b&gt;", 1.0], ["\u21b5", -3.0]],
        [["&lt;b&gt;", 0.5], ["\u21b5", 2.0]],
    ]
    assert (heat.zmin, heat.zmid, heat.zmax) == (-1.0, 0, 1.0)
    assert "customdata[1]" in heat.hovertemplate  # the hover shows the raw activation
