"""Pure plotly figure builders: training curves, circuit losses, per-token activations.

Each function takes plain Python data (lists, dicts, numbers) and returns a `go.Figure`, so tests can
call them without a browser or a store.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from webapp.heatmap import plotly_token_text

DEFAULT_METRICS = ("test_xent", "L0", "L0_non_embed")
# A few layout fields give a light look without the "plotly_white" template. Building a 256-bar
# figure took 23 ms with the template and 10 ms without (plotly 7.1, shared 2-core machine). The
# per-token page builds one on every update.
_LIGHT = {"plot_bgcolor": "white", "paper_bgcolor": "white", "font_size": 11}
_GRID = "#e5e5e5"


def _light(figure: go.Figure, **layout) -> go.Figure:
    figure.update_layout(**_LIGHT, **layout)
    figure.update_xaxes(gridcolor=_GRID, zerolinecolor=_GRID)
    figure.update_yaxes(gridcolor=_GRID, zerolinecolor=_GRID)
    return figure


def empty_figure(message: str) -> go.Figure:
    """Build a blank figure that shows `message` in its centre."""
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return _light(figure, xaxis_visible=False, yaxis_visible=False, height=240)


def numeric_metrics(records: Sequence[dict]) -> list[str]:
    """List, sorted, every key other than `step` with a number value in at least one record."""
    names = set()
    for record in records:
        for name, value in record.items():
            if name != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                names.add(name)
    return sorted(names)


def default_metrics(records: Sequence[dict]) -> list[str]:
    """Pick the usual curves (test loss, L0) that the records contain, else their first metric."""
    available = numeric_metrics(records)
    chosen = [name for name in DEFAULT_METRICS if name in available]
    return chosen or available[:1]


def training_curves_figure(
    records: Sequence[dict], metrics: Sequence[str], log_axes: Sequence[str] = ()
) -> go.Figure:
    """Plot one subplot per metric against the training step (record order without `step`).

    `log_axes` lists the axes ("x", "y") on a log scale. A log axis leaves out points <= 0,
    such as step 0.
    """
    if not records:
        return empty_figure("The progress file has no records.")
    if not metrics:
        return empty_figure("No metric selected.")

    figure = make_subplots(
        rows=len(metrics), cols=1, shared_xaxes=True, subplot_titles=list(metrics)
    )
    for row, metric in enumerate(metrics, start=1):
        points = [
            (record.get("step", i), record[metric])
            for i, record in enumerate(records)
            if isinstance(record.get(metric), int | float) and math.isfinite(record[metric])
        ]
        figure.add_trace(
            go.Scatter(
                x=[step for step, _ in points],
                y=[value for _, value in points],
                mode="lines",
                name=metric,
            ),
            row=row,
            col=1,
        )
    figure.update_xaxes(title_text="step", row=len(metrics), col=1)
    if "x" in log_axes:
        figure.update_xaxes(type="log")
    if "y" in log_axes:
        figure.update_yaxes(type="log")
    return _light(figure, height=220 * len(metrics) + 60, showlegend=False, margin={"t": 40})


def circuit_loss_figure(
    loss: float,
    interv_loss: float,
    search_losses: Sequence[tuple[float, float]] = (),
    block_deltas: Mapping[str, float] | None = None,
) -> go.Figure:
    """Plot the per-sequence task loss of the full model and the circuit, side by side with the
    pruning search and the loss rise when each block's nodes are ablated, where given."""
    panels = [
        (
            "task loss per sequence",
            go.Bar(
                x=["full model", "circuit"],
                y=[loss, interv_loss],
                text=[f"{loss:.4f}", f"{interv_loss:.4f}"],
                textposition="outside",
                marker_color=["#9e9e9e", "#2166ac"],
            ),
            None,
        )
    ]
    if search_losses:
        panels.append(_search_panel(search_losses, interv_loss))
    if block_deltas:
        names = sorted(block_deltas, key=_block_order)
        deltas = go.Bar(
            x=names,
            y=[block_deltas[name] for name in names],
            marker_color=["#2166ac" if block_deltas[n] >= 0 else "#b2182b" for n in names],
        )
        panels.append(("loss rise with a block ablated", deltas, None))
    return _side_by_side(panels)


def _search_panel(search_losses: Sequence[tuple[float, float]], interv_loss: float) -> tuple:
    """Build the pruning-search panel: the task loss during mask training, step by step.

    The pruner appends the final circuit's loss (its k nodes, evaluation pairs, after logit
    calibration) as the last point, so a last point equal to `interv_loss` is drawn and labelled
    apart: it is not one more training step.
    """
    steps = [step for step, _ in search_losses]
    values = [value for _, value in search_losses]
    final = len(values) > 1 and math.isclose(values[-1], interv_loss, rel_tol=1e-6, abs_tol=1e-9)
    labels = ["mask training: open gates, a training batch, uncalibrated"] * len(values)
    colours = ["#d6604d"] * len(values)
    if final:
        labels[-1] = "the circuit: its k nodes, evaluation pairs, calibrated"
        colours[-1] = "#2166ac"
    search = go.Scatter(
        x=steps,
        y=values,
        mode="lines+markers",
        marker={"color": colours, "size": [6] * (len(values) - 1) + [10 if final else 6]},
        line={"color": "#d6604d"},
        text=labels,
        hovertemplate="step %{x}: %{y:.4g}<br>%{text}<extra></extra>",
    )
    x_title = "mask-training step" + (" (last point: the circuit)" if final else "")
    return ("pruning search", search, x_title)


def _block_order(name: str) -> tuple:
    layer, _, block = name.partition(".")
    return (int(layer) if layer.isdigit() else 0, block != "attn", name)


def _side_by_side(panels: list[tuple]) -> go.Figure:
    """Lay out (title, trace, x title) panels on hand-placed axes in one row.

    make_subplots took as long as building the rest of the circuit page's figures.
    """
    width = 1 / len(panels)
    gap = 0.04 if len(panels) > 1 else 0
    figure = go.Figure()
    layout: dict = {"annotations": []}
    for number, (title, trace, x_title) in enumerate(panels, start=1):
        suffix = "" if number == 1 else str(number)
        trace.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}")
        figure.add_trace(trace)
        domain = [(number - 1) * width + gap / 2, number * width - gap / 2]
        layout[f"xaxis{suffix}"] = {"domain": domain, "anchor": f"y{suffix}"}
        if x_title:
            layout[f"xaxis{suffix}"]["title"] = {"text": x_title}
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}"}
        layout["annotations"].append(_axis_title(title, (domain[0] + domain[1]) / 2))
    return _light(figure, height=260, showlegend=False, margin={"t": 40}, **layout)


def _axis_title(text: str, x: float) -> dict:
    return {
        "text": text,
        "x": x,
        "y": 1.0,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 14},
    }


def sweep_figure(
    points: Sequence[dict], full_model_loss: float | None, target_loss: float | None, k: int | None
) -> go.Figure:
    """Plot a sweep's task loss per sequence against k, marking the shown circuit's k.

    `points` are `{"k", "loss_per_sequence"}` dicts; k = 0 is left out of the log-scaled x axis.
    """
    shown = sorted((p for p in points if p["k"] > 0), key=lambda p: p["k"])
    if not shown:
        return empty_figure("The sweep has no points with k > 0.")
    figure = go.Figure(
        go.Scatter(
            x=[p["k"] for p in shown],
            y=[p["loss_per_sequence"] for p in shown],
            mode="lines+markers",
            name="circuit",
        )
    )
    ks = [p["k"] for p in shown]
    if k is not None and k > 0:
        ks.append(k)
    # Line annotations stretch plotly's autorange on a log axis, so the range is set here.
    log_range = [math.log10(min(ks)) - 0.1, math.log10(max(ks)) + 0.1]

    # The reference losses are legend entries, not line annotations, because the target and the
    # full model loss are often close and their annotations would overlap.
    references = (("full model", full_model_loss, "dot"), ("target", target_loss, "dash"))
    for name, loss, dash in references:
        if loss is not None:
            figure.add_trace(
                go.Scatter(
                    x=[10 ** log_range[0], 10 ** log_range[1]],
                    y=[loss, loss],
                    mode="lines",
                    name=f"{name} ({loss:.4g})",
                    line={"dash": dash, "color": "#555" if name == "full model" else "#2ca02c"},
                    hovertemplate=f"{name}: %{{y:.4g}}<extra></extra>",
                )
            )
    if k is not None and k > 0:
        figure.add_vline(x=k, line_color="#ff7f0e")
        # An annotation on a log axis takes log10 of the value as its x (add_vline's own
        # annotation passed k itself, which plotly placed at 10**k, out of view).
        figure.add_annotation(
            x=math.log10(k),
            xref="x",
            y=1,
            yref="paper",
            text=f"k = {k}",
            showarrow=False,
            xanchor="left",
            yanchor="top",
            font={"color": "#ff7f0e"},
        )
    figure.update_xaxes(type="log", range=log_range, title_text="k (kept nodes)")
    figure.update_yaxes(title_text="task loss per sequence")
    return _light(
        figure,
        height=280,
        showlegend=True,
        margin={"t": 30},
        title="loss against k (sweep.json, before logit calibration)",
    )


def _shown_token_text(token: str) -> str:
    # `token` already has visible whitespace marks (`webapp.heatmap.heatmap_row`), where a newline
    # is '↵' followed by a line break. Plotly breaks lines only at `<br>`, so the break is dropped,
    # and tags such as `<b>` become entities.
    return html.escape(token.replace("\n", ""), quote=False)


def activation_figure(tokens: Sequence[str], values: Sequence[float], title: str) -> go.Figure:
    """Plot a bar per token position with the node's activation; hovering shows the token text.

    `tokens` are the texts of a `webapp.heatmap.heatmap_row`, with whitespace already visible.
    """
    figure = go.Figure(
        go.Bar(
            x=list(range(len(values))),
            y=list(values),
            hovertext=[_shown_token_text(token) for token in tokens],
            hovertemplate="position %{x}: %{hovertext}<br>activation %{y:.4g}<extra></extra>",
            marker_color=["#2166ac" if v >= 0 else "#b2182b" for v in values],
        )
    )
    return _light(
        figure,
        title=title,
        height=260,
        xaxis_title="token position",
        yaxis_title="activation",
        margin={"t": 40},
    )


def nodes_activation_figure(
    tokens: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], title: str
) -> go.Figure:
    """Plot several nodes' activations as rows of one heatmap (node by token position).

    `tokens` are heatmap-row texts, as for `activation_figure`; `series` contains (node, values) pairs,
    the first at the top. Each row is divided by its own largest |activation|, so a node with a
    small range is as visible as one with a large range; the hover gives the raw activation. Blue
    is positive and red negative, on a scale centred at 0.
    """
    token_texts = [_shown_token_text(token) for token in tokens]
    names = [name for name, _ in series]
    scaled, hover = [], []
    for _, values in series:
        limit = max((abs(v) for v in values), default=0.0) or 1.0
        scaled.append([v / limit for v in values])
        hover.append([[text, v] for text, v in zip(token_texts, values, strict=True)])
    figure = go.Figure(
        go.Heatmap(
            z=scaled,
            x=list(range(len(tokens))),
            y=names,
            customdata=hover,
            colorscale="RdBu",
            zmid=0,
            zmin=-1.0,
            zmax=1.0,
            hovertemplate=(
                "%{y}<br>position %{x}: %{customdata[0]}<br>activation %{customdata[1]:.4g}"
                "<extra></extra>"
            ),
            colorbar={"title": "activation / row's max |activation|"},
        )
    )
    figure.update_yaxes(autorange="reversed", type="category")
    return _light(
        figure,
        title=title,
        height=120 + 36 * len(series),
        xaxis_title="token position",
        margin={"t": 40},
    )


def attention_figure(
    labels: Sequence[str], matrix: Sequence[Sequence[float | None]], title: str, *, signed: bool
) -> go.Figure:
    """Plot a (query pos, key pos) matrix over one sequence's tokens, query 0 at the top.

    `signed` matrices (score contributions) get a blue-positive, red-negative scale centred on 0;
    others (probabilities) go from white at 0 to dark blue. None entries stay blank. Token labels
    on the axes are escaped, so markup in a token shows as text.
    """
    positions = list(range(len(labels)))
    ticks = [f"{plotly_token_text(label)} {pos}" for pos, label in enumerate(labels)]
    colours = {"colorscale": "RdBu", "zmid": 0} if signed else {"colorscale": "Blues", "zmin": 0}
    heatmap = go.Heatmap(
        z=[list(row) for row in matrix],
        x=positions,
        y=positions,
        hoverongaps=False,
        hovertemplate="query %{y}, key %{x}: %{z:.4g}<extra></extra>",
        colorbar={"thickness": 12},
        **colours,
    )
    axis = {
        "tickmode": "array",
        "tickvals": positions,
        "ticktext": ticks,
        "tickfont_size": 9,
        "automargin": True,
    }
    figure = go.Figure(heatmap)
    figure.update_xaxes(title_text="key", tickangle=-90, showgrid=False, **axis)
    figure.update_yaxes(title_text="query", autorange="reversed", showgrid=False, **axis)
    side = min(720, 260 + 12 * len(labels))
    return _light(figure, title=title, height=side, margin={"t": 40, "l": 10, "r": 10, "b": 10})
