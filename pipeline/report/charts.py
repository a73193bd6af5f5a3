"""Plotly figures of the report, built from the frames of :mod:`pipeline.report.data`.

Pure functions: frames in, ``plotly.graph_objects.Figure`` out; nothing is read or written. Every
string that came from data passes through :func:`pipeline.report.html.plot_text`, so plotly draws
it as text (plotly reads a subset of HTML in labels). Figures carry no template: the page applies
one shared template (:func:`template_json`) to every chart, which keeps each chart's JSON small.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from pipeline.report.html import escape_json_for_script, fmt_money, plot_text

BLUE, RED, GREEN, GREY, AMBER = "#2457c5", "#c0392b", "#1e8449", "#9aa3b2", "#b9770e"
PALETTE = ["#2457c5", "#e67e22", "#1e8449", "#8e44ad", "#c0392b", "#16a085", "#7f8c8d", "#d4ac0d", "#34495e"]
_MARGIN = {"l": 60, "r": 20, "t": 30, "b": 50}


def template_json() -> str:
    """The shared plotly template (plotly_white with the report's colours), as script-safe JSON."""
    template = pio.templates["plotly_white"].to_plotly_json()
    layout = template.get("layout", {})
    layout["colorway"] = PALETTE
    layout["font"] = {"family": "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif",
                      "size": 13, "color": "#1d2433"}
    layout["hoverlabel"] = {"font": {"size": 12}}
    template["layout"] = layout
    return escape_json_for_script(json.dumps(template, separators=(",", ":")))


def figure_json(figure: go.Figure) -> str:
    """``{"data": [...], "layout": {...}}`` without a template, safe for a ``<script>`` block."""
    spec = figure.to_plotly_json()
    layout = spec.get("layout", {})
    layout.pop("template", None)
    return escape_json_for_script(pio.to_json({"data": spec.get("data", []), "layout": layout}, validate=False,
                                              pretty=False, remove_uids=True))


def _layout(figure: go.Figure, *, height: int = 380, **extra) -> go.Figure:
    extra.setdefault("margin", _MARGIN)
    figure.update_layout(height=height, legend={"orientation": "h", "y": -0.2}, **extra)
    return figure


def _labels(values: Sequence) -> list[str]:
    return [plot_text(v) for v in values]


# --------------------------------------------------------------------------------------------------


def stage_funnel(frame: pl.DataFrame) -> go.Figure:
    """Bars of journeys per stage; error bars are the Wilson interval of the step conversion."""
    stages = _labels(frame["label"].to_list())
    n = frame["n"].to_list()
    rate = frame["rate"].to_list()
    low = frame["rate_low"].to_list()
    high = frame["rate_high"].to_list()
    text = [f"{v:,}" for v in n]
    figure = go.Figure()
    figure.add_bar(x=stages, y=n, text=text, textposition="outside", marker_color=BLUE, name="journeys",
                   hovertemplate="%{x}: %{y:,} journeys<extra></extra>", cliponaxis=False)
    figure.add_scatter(
        x=stages, y=[None if r is None else 100 * r for r in rate], yaxis="y2", mode="markers",
        marker={"color": AMBER, "size": 10, "symbol": "diamond"}, name="conversion from previous step (95% CI)",
        error_y={"type": "data", "symmetric": False,
                 "array": [None if h is None or r is None else 100 * (h - r) for h, r in zip(high, rate, strict=True)],
                 "arrayminus": [None if lo is None or r is None else 100 * (r - lo) for lo, r in zip(low, rate,
                                                                                                   strict=True)]},
        hovertemplate="%{x}: %{y:.1f}% of the previous step<extra></extra>",
    )
    return _layout(figure, height=400, yaxis={"title": "journeys"},
                   yaxis2={"title": "% of previous step", "overlaying": "y", "side": "right", "range": [0, 105],
                           "showgrid": False, "tickvals": [0, 20, 40, 60, 80, 100], "ticksuffix": "%"},
                   xaxis={"type": "category"})


def rate_bars(frame: pl.DataFrame, group: str, rate: str, *, title_x: str, highlight: str | None = None,
              benchmark: float | None = None, benchmark_label: str = "") -> go.Figure:
    """Horizontal bars of a rate per group with Wilson error bars (``<rate>_low``/``_high``)."""
    frame = frame.sort(rate)
    groups = _labels(frame[group].to_list())
    values = [100 * v for v in frame[rate].to_list()]
    lows = [100 * v for v in frame[f"{rate}_low"].to_list()]
    highs = [100 * v for v in frame[f"{rate}_high"].to_list()]
    colours = [RED if highlight is not None and g == plot_text(highlight) else BLUE for g in groups]
    figure = go.Figure(go.Bar(
        y=groups, x=values, orientation="h", marker_color=colours,
        error_x={"type": "data", "symmetric": False, "array": [h - v for h, v in zip(highs, values, strict=True)],
                 "arrayminus": [v - lo for lo, v in zip(lows, values, strict=True)], "color": "#39414f"},
        text=[f"{v:.1f}%" for v in values], textposition="inside", insidetextanchor="start",
        hovertemplate="%{y}: %{x:.1f}% (95% CI %{customdata[0]:.1f}–%{customdata[1]:.1f}%)<extra></extra>",
        customdata=list(zip(lows, highs, strict=True)),
    ))
    if benchmark is not None:
        figure.add_vline(x=100 * benchmark, line_dash="dot", line_color=GREY,
                         annotation_text=plot_text(benchmark_label), annotation_position="top")
    return _layout(figure, height=max(240, 42 * len(groups) + 100), xaxis={"title": title_x, "ticksuffix": "%"},
                   yaxis={"type": "category"}, margin={"l": 120, "r": 20, "t": 40, "b": 50})


def sankey(paths: pl.DataFrame) -> go.Figure:
    """Top paths from entry to purchase or exit; a node is (step number, touchpoint), and every path
    ends in an outcome node: "purchased" (green) when its sessions converted, else "exit" (red)."""
    nodes: dict[tuple[int, str], int] = {}
    labels: list[str] = []
    colours: list[str] = []
    links: dict[tuple[int, int], int] = {}
    outcomes = {"purchased": GREEN, "exit": RED}

    def node(position: int, name: str) -> int:
        key = (99 if name in outcomes else position, name)
        if key not in nodes:
            nodes[key] = len(labels)
            labels.append(name if name in outcomes else plot_text(name))
            colours.append(outcomes.get(name, BLUE))
        return nodes[key]

    for row in paths.iter_rows(named=True):
        count = int(row["n_journeys"])
        converted = round(count * float(row["conversion_rate"] or 0))
        steps = row["path"].split(" > ")
        for outcome, n in (("purchased", converted), ("exit", count - converted)):
            if n <= 0:
                continue
            chain = [*steps, outcome]
            for i in range(len(chain) - 1):
                key = (node(i, chain[i]), node(i + 1, chain[i + 1]))
                links[key] = links.get(key, 0) + n
    figure = go.Figure(go.Sankey(
        arrangement="snap",
        node={"label": labels, "color": colours, "pad": 14, "thickness": 14},
        link={"source": [a for a, _ in links], "target": [b for _, b in links], "value": list(links.values()),
              "color": "rgba(36,87,197,0.18)"},
        valueformat=",d",
    ))
    return _layout(figure, height=520)


def transition_heatmap(matrix: pl.DataFrame, rows: list[str], cols: list[str],
                       highlight: list[tuple[str, str]]) -> go.Figure:
    """Probability of the next step (columns) from each step (rows); highlighted cells boxed in red."""
    lookup = {(r["from_node"], r["to_node"]): r for r in matrix.iter_rows(named=True)}
    z, text = [], []
    for a in rows:
        z_row, t_row = [], []
        for b in cols:
            cell = lookup.get((a, b))
            z_row.append(None if cell is None else round(100 * cell["probability"], 2))
            t_row.append("" if cell is None else f"{100 * cell['probability']:.0f}")
        z.append(z_row)
        text.append(t_row)
    x, y = _labels(cols), _labels(rows)
    figure = go.Figure(go.Heatmap(
        z=z, x=x, y=y, text=text, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=100,
        colorbar={"title": {"text": "% of next steps"}, "ticksuffix": "%"}, xgap=1, ygap=1,
        hovertemplate="from %{y} to %{x}: %{z:.1f}% of the steps after %{y}<extra></extra>",
    ))
    for a, b in highlight:
        if a in rows and b in cols:
            i, j = rows.index(a), cols.index(b)
            figure.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                             line={"color": RED, "width": 3})
    return _layout(figure, height=max(420, 26 * len(rows) + 160),
                   xaxis={"title": "next step", "tickangle": -40, "side": "bottom"},
                   yaxis={"title": "step", "autorange": "reversed"}, margin={"l": 130, "r": 20, "t": 30, "b": 120})


def risk_bars(frame: pl.DataFrame, currency: str | None) -> go.Figure:
    frame = frame.sort("revenue_at_risk")
    labels = _labels(frame["node"].to_list())
    values = frame["revenue_at_risk"].to_list()
    figure = go.Figure(go.Bar(
        y=labels, x=values, orientation="h", marker_color=RED,
        text=[fmt_money(v, currency) for v in values], textposition="auto",
        customdata=list(zip(frame["n_dropoffs"].to_list(), frame["p_conversion_if_continued"].to_list(),
                            strict=True)),
        hovertemplate="%{y}: %{customdata[0]:,} drop-offs × %{customdata[1]:.1%} would have converted"
                      "<extra></extra>",
    ))
    return _layout(figure, height=max(260, 34 * len(labels) + 90), xaxis={"title": f"revenue at risk ({currency})"},
                   yaxis={"type": "category"},
                   margin={"l": 140, "r": 20, "t": 30, "b": 50})


def histogram(frame: pl.DataFrame, x: str, y: str, *, title_x: str, median: float | None) -> go.Figure:
    figure = go.Figure(go.Bar(x=frame[x].to_list(), y=[100 * v for v in frame[y].to_list()], marker_color=BLUE,
                              hovertemplate="%{x} touchpoints: %{y:.1f}% of buyers<extra></extra>"))
    if median is not None:
        figure.add_vline(x=median, line_dash="dash", line_color=RED, annotation_text=f"median {median:g}",
                         annotation_position="top right")
    return _layout(figure, height=340, xaxis={"title": title_x}, yaxis={"title": "% of buyers", "ticksuffix": "%"},
                   bargap=0.08)


def grouped_bars(frame: pl.DataFrame, x: str, y: str, group: str, *, title_y: str, percent: bool = True,
                 order: list[str] | None = None) -> go.Figure:
    figure = go.Figure()
    groups = order or list(dict.fromkeys(frame[group].to_list()))
    for g in groups:
        part = frame.filter(pl.col(group) == g)
        values = part[y].to_list()
        figure.add_bar(x=_labels(part[x].to_list()), y=[100 * v for v in values] if percent else values,
                       name=plot_text(g),
                       hovertemplate="%{x}: %{y:.1f}" + ("%" if percent else "") + f" ({plot_text(g)})<extra></extra>")
    return _layout(figure, height=400, barmode="group", xaxis={"type": "category"},
                   yaxis={"title": title_y, "ticksuffix": "%" if percent else ""})


def value_bars(frame: pl.DataFrame, currency: str | None) -> go.Figure:
    """Per group: historical revenue and predicted CLV per customer, stacked."""
    labels = _labels(frame["value"].to_list())
    figure = go.Figure()
    figure.add_bar(x=labels, y=frame["historical_revenue_per_customer"].to_list(), name="revenue so far",
                   marker_color=BLUE, hovertemplate="%{x}: %{y:,.0f} so far<extra></extra>")
    figure.add_bar(x=labels, y=frame["predicted_clv_per_customer"].to_list(), name="predicted next 12 months",
                   marker_color="#8fb0ea", hovertemplate="%{x}: %{y:,.0f} predicted<extra></extra>")
    return _layout(figure, height=340, barmode="stack", xaxis={"type": "category"},
                   yaxis={"title": f"per customer ({currency})"})


def line_periods(frame: pl.DataFrame, x: str, ys: list[tuple[str, str]], *, title_y: str,
                 percent: bool = False, boundary: str | None = None) -> go.Figure:
    figure = go.Figure()
    for column, name in ys:
        values = frame[column].to_list()
        figure.add_scatter(x=frame[x].to_list(), y=[None if v is None else (100 * v if percent else v)
                                                    for v in values],
                           mode="lines+markers", name=plot_text(name))
    if boundary is not None:
        figure.add_vline(x=boundary, line_dash="dot", line_color=GREY)
    return _layout(figure, height=320, yaxis={"title": title_y, "ticksuffix": "%" if percent else ""})


def simple_bars(labels: list, values: list, *, title_x: str, colour: str = BLUE, fmt: str = ",d") -> go.Figure:
    figure = go.Figure(go.Bar(y=_labels(labels), x=values, orientation="h", marker_color=colour,
                              hovertemplate="%{y}: %{x:" + fmt + "}<extra></extra>", text=values,
                              texttemplate="%{x:" + fmt + "}", textposition="auto"))
    return _layout(figure, height=max(220, 34 * len(labels) + 90), xaxis={"title": title_x},
                   yaxis={"type": "category"},
                   margin={"l": 160, "r": 20, "t": 30, "b": 50})
