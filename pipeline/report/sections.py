"""The report's sections: each turns the numbers of :class:`pipeline.report.data.ReportData` into a
title that states the finding, a short "how to read this", charts, tables and CSV downloads.

A section is a function ``(data, page) -> Section``; it never computes a metric itself (that is
``data``'s job), it only picks the headline number out of the frames it is given and formats it. A
section whose inputs fail is shown with its one-line error (and marked ``data-section-error``), so
one broken analysis never takes the whole report down.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from pipeline.metrics.abandonment import CART_ABANDONMENT_BENCHMARK
from pipeline.report import charts
from pipeline.report.data import GOAL, ReportData
from pipeline.report.html import (
    csv_text,
    data_block,
    download_button,
    esc,
    fmt_change,
    fmt_duration,
    fmt_int,
    fmt_money,
    fmt_num,
    fmt_p,
    fmt_pct,
    fmt_pp,
    script_json,
    table,
)


@dataclass
class Section:
    anchor: str
    nav: str
    kicker: str
    title: str = ""
    how: str = ""
    body: str = ""
    error: str | None = None


@dataclass
class Page:
    """Collects the JSON blocks (figures, CSV text) the sections reference by id."""

    blocks: list[str] = field(default_factory=list)
    n_charts: int = 0
    ids: set[str] = field(default_factory=set)

    def _id(self, prefix: str, name: str) -> str:
        from pipeline.report.html import slug

        base = f"{prefix}-{slug(name)}"
        block_id, i = base, 1
        while block_id in self.ids:
            i += 1
            block_id = f"{base}-{i}"
        self.ids.add(block_id)
        return block_id

    def chart(self, name: str, figure, label: str) -> str:
        block_id = self._id("fig", name)
        self.blocks.append(data_block(block_id, charts.figure_json(figure)))
        self.n_charts += 1
        return (f'<div class="chart" id="chart-{block_id}" data-figure="{block_id}" role="img" '
                f'aria-label="{esc(label)}"></div>')

    def csv(self, name: str, frame: pl.DataFrame, label: str = "Download the data (CSV)") -> str:
        block_id = self._id("csv", name)
        self.blocks.append(data_block(block_id, script_json(csv_text(frame))))
        return download_button(block_id, f"{name}.csv", label)


def render(section: Section) -> str:
    if section.error is not None:
        return (
            f'<section class="card" id="{esc(section.anchor)}" data-section-error="1">'
            f'<p class="kicker">{esc(section.kicker)}</p><h2>{esc(section.nav)}</h2>'
            f'<p class="error">This section could not be computed: {esc(section.error)}</p></section>'
        )
    return (
        f'<section class="card" id="{esc(section.anchor)}"><p class="kicker">{esc(section.kicker)}</p>'
        f"<h2>{esc(section.title)}</h2>"
        f'<details class="how"><summary>How to read this</summary><p>{esc(section.how)}</p></details>'
        f"{section.body}</section>"
    )


def _sig(p_adjusted, is_significant) -> str:
    if p_adjusted is None or (isinstance(p_adjusted, float) and math.isnan(p_adjusted)):
        return ""
    word = "significant" if is_significant else "not significant"
    return f"{word}, {fmt_p(p_adjusted)}"


def _stage(step: str) -> str:
    return step.split(":", 1)[1] if step.startswith(("stage:", "event:", "touchpoint:")) else step


# --------------------------------------------------------------------------------------------------
# 1. Headline KPIs
# --------------------------------------------------------------------------------------------------


def kpis(data: ReportData, page: Page) -> Section:
    s = Section("kpis", "Headline KPIs", "Last 4 weeks vs the 4 weeks before")
    cur_label, prev_label = data.period.label("current"), data.period.label("previous")
    frame = data.kpi_table()
    rows = {r["metric"]: r for r in frame.iter_rows(named=True)}
    cur = data.currency
    revenue, conv = rows.get("revenue"), rows.get("session_conversion_rate")
    parts = []
    if revenue and revenue["change"] is not None:
        parts.append(f"Revenue {'up' if revenue['change'] >= 0 else 'down'} {fmt_change(abs(revenue['change']))[1:]}"
                     f" to {fmt_money(revenue['current'], cur)}")
    elif revenue:
        parts.append(f"Revenue {fmt_money(revenue['current'], cur)}")
    if conv:
        verdict = "a significant change" if conv["is_significant"] else "no significant change"
        parts.append(f"session conversion {fmt_pct(conv['previous'])} → {fmt_pct(conv['current'])} ({verdict})")
    s.title = "; ".join(parts) + " in the last 4 weeks" if parts else "Headline KPIs"
    if not data.period.has_previous:
        s.title += " (the previous period is only partly covered by the data)"
    s.how = (f"Each card compares {cur_label} (the last 4 weeks of data, ending on the last day with a visit) with "
             f"{prev_label}. Sessions count by the day they start. Rates are compared with a two-proportion z-test "
             "and means with Welch's t-test; p-values are Benjamini-Hochberg adjusted across the KPIs. Counts "
             "have no test: a change in traffic is a fact, not an estimate.")
    cards = []
    for r in frame.iter_rows(named=True):
        if r["kind"] == "rate":
            value, delta = fmt_pct(r["current"]), fmt_pp(r["change"])
        elif r["metric"] in ("revenue", "average_order_value", "revenue_per_session"):
            value, delta = fmt_money(r["current"], cur), fmt_change(r["change"])
        else:
            value, delta = fmt_int(r["current"]), fmt_change(r["change"])
        good_when_up = r["metric"] not in ("cart_abandonment_rate", "checkout_abandonment_rate")
        direction = "flat"
        if r["change"] is not None and abs(r["change"]) > 1e-12:
            direction = "up" if (r["change"] > 0) == good_when_up else "down"
        if r["kind"] != "count" and r["is_significant"] is False:
            direction = "flat"
        previous = fmt_pct(r["previous"]) if r["kind"] == "rate" else (
            fmt_money(r["previous"], cur) if r["metric"] in ("revenue", "average_order_value", "revenue_per_session")
            else fmt_int(r["previous"]))
        sig = _sig(r["p_adjusted"], r["is_significant"])
        cards.append(
            f'<div class="kpi"><div class="label">{esc(r["label"])}</div><div class="value">{esc(value)}</div>'
            f'<div class="delta {direction}">{esc(delta)} <span class="sig">vs {esc(previous)}</span></div>'
            + (f'<div class="sig">{esc(sig)}</div>' if sig else "") + "</div>"
        )
    weekly = data.weekly
    boundary = data.period.current[0].isoformat()
    body = f'<div class="kpis">{"".join(cards)}</div>'
    body += '<div class="grid2">'
    body += page.chart("weekly-revenue", charts.line_periods(weekly, "week", [("revenue", "revenue")],
                                                             title_y=f"revenue per week ({cur})", boundary=boundary),
                       "Revenue per week")
    body += page.chart("weekly-conversion", charts.line_periods(weekly, "week", [("conversion_rate", "conversion")],
                                                                title_y="session conversion", percent=True,
                                                                boundary=boundary),
                       "Session conversion per week")
    body += "</div>"
    body += ('<p class="note">The dotted line marks the start of the current period. The first and last weeks may '
             "be partial.</p>")
    body += page.csv("kpis", frame) + page.csv("weekly", weekly, "Download the weekly trend (CSV)")
    s.body = body
    return s


# --------------------------------------------------------------------------------------------------
# 2. Journey map
# --------------------------------------------------------------------------------------------------


_CHIP = re.compile(r"(.*?) \((\d[\d,]*)\)(?:, |$)")


def _chips(text: str | None) -> str:
    """``"cart (11732), sign_up (1136)"`` as chips; text that does not parse is one chip."""
    if not text:
        return '<span class="note">–</span>'
    found = _CHIP.findall(text)
    if not found or sum(len(a) + len(b) + 4 for a, b in found) < len(text) - 2:
        return f'<span class="chip">{esc(text)}</span>'
    return "".join(
        f'<span class="chip">{esc(name)} <span class="note">{esc(fmt_int(int(n.replace(",", ""))))}</span></span>'
        for name, n in found
    )


def _bar(share, bad: bool = False) -> str:
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return ""
    width = max(0.0, min(100.0, 100 * float(share)))
    return f'<div class="bar{" bad" if bad else ""}"><span style="width:{width:.1f}%"></span></div>'


def _satisfaction(r: dict) -> str:
    parts = []
    if r.get("n_survey_responses"):
        parts.append(f'{esc(fmt_num(r["mean_survey_score"], 2))} survey <span class="note">'
                     f'{esc(fmt_int(r["n_survey_responses"]))} responses</span>')
    if r.get("n_reviews"):
        parts.append(f'{esc(fmt_num(r["mean_review_rating"], 2))} reviews <span class="note">'
                     f'{esc(fmt_int(r["n_reviews"]))} reviews</span>')
    return "<br>".join(parts) or '<span class="note">no survey or review scores</span>'


def journey_map(data: ReportData, page: Page) -> Section:
    s = Section("journey-map", "Journey map", "Stages as columns, user journeys")
    frame = data.journey_map()
    cur = data.currency
    stages = frame["stage"].to_list()
    n = len(stages)
    candidates = frame.filter(pl.col("abandonment_rate") > 0).sort("abandonment_rate", descending=True)
    if candidates.height:
        worst = candidates.row(0, named=True)
        s.title = (f"{worst['stage']} loses the most: {fmt_pct(worst['abandonment_rate'], 0)} of the journeys that "
                   f"reach it end there without a purchase")
        if worst.get("dropoff_touchpoint"):
            s.title += f", most often at {worst['dropoff_touchpoint']}"
    else:
        s.title = "No journey ends without a purchase"
    s.how = ("One column per stage, in order. Reach: journeys (people) with at least one step in the stage. Went on: "
             "the share that later reached a later stage. Abandoned here: the share whose furthest stage this is and "
             "who never bought. Time in stage: median time from entering the stage to the next stage. Satisfaction: "
             "mean survey score and review rating of the journeys that reached the stage. Revenue: purchases of "
             "those journeys "
             "(so later stages show a subset of earlier ones). ⚠ marks each stage's drop-off point: the touchpoint "
             "where leaving puts the most revenue at risk (see Drop-off points). Intervals are Wilson 95%.")
    max_abandon = max([v for v in frame["abandonment_rate"].to_list() if v is not None] or [0])
    cells = ['<div class="rowhead">Stage</div>']
    for r in frame.iter_rows(named=True):
        cells.append(f'<div class="stagehead">{esc(r["stage"])}<small>stage {r["stage_order"]}</small></div>')

    def row(label: str, render_cell: Callable[[dict], str], flag: Callable[[dict], bool] = lambda r: False) -> None:
        cells.append(f'<div class="rowhead">{esc(label)}</div>')
        for r in frame.iter_rows(named=True):
            cls = ' class="dropcell"' if flag(r) else ""
            cells.append(f"<div{cls}>{render_cell(r)}</div>")

    row("Touchpoints", lambda r: _chips(r.get("top_touchpoints")))
    row("Reach", lambda r: f'<span class="big">{esc(fmt_int(r["n_reached"]))}</span> '
                           f'<span class="note">{esc(fmt_pct(r["reach_rate"]))} of all</span>{_bar(r["reach_rate"])}')
    row("Went on to a later stage",
        lambda r: (f'<span class="big">{esc(fmt_pct(r["progression_rate"]))}</span> <span class="note">'
                   f'{esc(fmt_pct(r["progression_rate_low"]))}–{esc(fmt_pct(r["progression_rate_high"]))}</span>'
                   if r["stage_order"] != frame["stage_order"].max() else '<span class="note">last stage</span>'))
    row("Abandoned here",
        lambda r: (f'<span class="big{" drop" if r["abandonment_rate"] == max_abandon and max_abandon > 0 else ""}">'
                   f'{esc(fmt_pct(r["abandonment_rate"]))}</span> <span class="note">'
                   f'{esc(fmt_int(r["n_abandoned"]))} journeys</span>{_bar(r["abandonment_rate"], bad=True)}'),
        flag=lambda r: r["abandonment_rate"] == max_abandon and max_abandon > 0)
    row("Time in stage (median)", lambda r: esc(fmt_duration(r["median_seconds_in_stage"])))
    row("Satisfaction", _satisfaction)
    row("Revenue of these journeys", lambda r: esc(fmt_money(r["revenue"], cur)))
    if "dropoff_touchpoint" in frame.columns:
        row("Drop-off point",
            lambda r: (f'<span class="drop">⚠ {esc(r["dropoff_touchpoint"])}</span><br><span class="note">'
                       f'{esc(fmt_int(r["dropoff_n"]))} left here · {esc(fmt_money(r["dropoff_revenue_at_risk"], cur))}'
                       " at risk</span>" if r.get("dropoff_touchpoint") else '<span class="note">–</span>'))
    grid = (f'<div class="jmap" style="grid-template-columns:170px repeat({n}, minmax(130px, 1fr))">'
            + "".join(cells) + "</div>")
    s.body = f'<div class="table-wrap">{grid}</div>' + page.csv("journey_map", frame)
    return s


# --------------------------------------------------------------------------------------------------
# 3. Funnel
# --------------------------------------------------------------------------------------------------


def _step_label(step: str) -> str:
    return "Purchased" if step == f"event:{GOAL}" else _stage(step)


def funnel(data: ReportData, page: Page) -> Section:
    s = Section("funnel", "Stage funnel", "Ordered stage funnel, people, 95% intervals")
    frame = data.stage_funnel()
    chart_frame = frame.select(
        pl.col("step").map_elements(_step_label, return_dtype=pl.String).alias("label"),
        pl.col("n_entered").alias("n"),
        pl.when(pl.col("step_index") > 1).then(pl.col("conversion_from_previous")).alias("rate"),
        pl.when(pl.col("step_index") > 1).then(pl.col("conversion_from_previous_low")).alias("rate_low"),
        pl.when(pl.col("step_index") > 1).then(pl.col("conversion_from_previous_high")).alias("rate_high"),
    )
    steps = frame["step"].to_list()
    goal_index = steps.index(f"event:{GOAL}") + 1 if f"event:{GOAL}" in steps else frame.height
    before_goal = frame.filter((pl.col("step_index") > 1) & (pl.col("step_index") <= goal_index))
    later = before_goal.sort("conversion_from_previous")
    if later.height:
        worst = later.row(0, named=True)
        previous = frame.filter(pl.col("step_index") == worst["step_index"] - 1)["step"][0]
        s.title = (f"The biggest loss before the purchase is {_step_label(previous)} → {_step_label(worst['step'])}: "
                   f"only {fmt_pct(worst['conversion_from_previous'], 0)} go on "
                   f"({fmt_pct(worst['conversion_from_previous_low'], 0)}–"
                   f"{fmt_pct(worst['conversion_from_previous_high'], 0)}, 95% interval)")
    else:
        s.title = "Stage funnel"
    s.how = ("Bars: people who reached each stage after the previous one, in order (a step counts only after the "
             "steps before it); 'Purchased' is the purchase itself, after the stage it belongs to. Diamonds: the "
             "share of the previous step that went on, with its 95% Wilson interval; where two intervals do not "
             "overlap, the difference is not noise. pipeline.metrics.funnel, ordered mode, people.")
    table_frame = frame.select("step", "n_entered", "conversion_from_previous", "conversion_from_previous_low",
                               "conversion_from_previous_high", "conversion_from_first", "n_dropped",
                               "median_seconds_from_previous")
    body = page.chart("stage-funnel", charts.stage_funnel(chart_frame), "Stage funnel")
    body += table(table_frame, [
        ("step", "Step", _step_label), ("n_entered", "People", fmt_int),
        ("conversion_from_previous", "From previous", fmt_pct),
        ("conversion_from_previous_low", "low (95%)", fmt_pct),
        ("conversion_from_previous_high", "high (95%)", fmt_pct),
        ("conversion_from_first", "From first", fmt_pct), ("n_dropped", "Dropped after", fmt_int),
        ("median_seconds_from_previous", "Median time from previous", fmt_duration),
    ])
    body += page.csv("stage_funnel", frame)
    try:
        by_device = data.checkout_funnel_by_device
    except Exception as exc:  # noqa: BLE001 - the stage funnel stands alone
        body += f'<p class="note">Checkout funnel by device unavailable: {esc(_one_line(exc))}</p>'
    else:
        last = by_device.filter(pl.col("step_index") == pl.col("step_index").max())
        ranked = last.sort("conversion_from_previous")
        note = ""
        if ranked.height >= 2:
            lo, hi = ranked.row(0, named=True), ranked.row(-1, named=True)
            note = (f"{lo['device']} converts {fmt_pct(lo['conversion_from_previous'], 0)} of checkouts, "
                    f"{hi['device']} {fmt_pct(hi['conversion_from_previous'], 0)}.")
        body += (f"<h3>Checkout funnel by device (sessions): {esc(note)}</h3>"
                 '<p class="note">Each bar: the share of the sessions at the previous step that reached this one.</p>')
        plot = by_device.filter(pl.col("step_index") > 1).with_columns(
            pl.concat_str(pl.col("step_index").cast(pl.String), pl.lit(". "), pl.col("step")).alias("step"),
        ).select("device", "step", pl.col("conversion_from_previous").alias("rate"))
        body += page.chart("checkout-funnel-device",
                           charts.grouped_bars(plot, "step", "rate", "device", title_y="% of the previous step"),
                           "Checkout funnel by device")
        body += page.csv("checkout_funnel_by_device", by_device)
    s.body = body
    return s


# --------------------------------------------------------------------------------------------------
# 4. Paths (Sankey)
# --------------------------------------------------------------------------------------------------


def paths_sankey(data: ReportData, page: Page) -> Section:
    s = Section("paths", "Top paths", "Session paths from entry to purchase or exit")
    frame = data.top_paths
    if frame.height == 0:
        s.title, s.how, s.body = "No session paths", "", '<p class="note">No sessions.</p>'
        return s
    coverage = float(frame["share_of_sessions"].sum())
    top = frame.row(0, named=True)
    best = frame.filter(pl.col("conversion_rate") > 0).sort("n_journeys", descending=True)
    lost = 1 - (top["conversion_rate"] or 0)
    s.title = (f"The most common visit, {top['path']}, "
               + (f"never ends in a purchase ({fmt_int(top['n_journeys'])} sessions)" if lost >= 1 else
                  f"ends without a purchase in {fmt_pct(lost, 0)} of its {fmt_int(top['n_journeys'])} sessions"))
    if best.height:
        s.title += f"; the most common buying path is {best.row(0, named=True)['path']}"
    s.how = (f"Each band is a group of sessions following the same path of touchpoints (repeats of one touchpoint "
             f"counted once, the path cut at the purchase). Green: the sessions bought; red: they left. Shown: the "
             f"{fmt_int(frame.height)} most frequent paths and the most frequent buying paths, "
             f"{fmt_pct(coverage)} of all sessions; the CSV has them with their conversion and duration.")
    s.body = page.chart("sankey", charts.sankey(frame), "Sankey of the top paths")
    s.body += table(frame, [("path", "Path", None), ("n_journeys", "Sessions", fmt_int),
                            ("share_of_sessions", "Share", fmt_pct), ("conversion_rate", "Conversion", fmt_pct),
                            ("median_duration_seconds", "Median duration", fmt_duration)], max_rows=12)
    s.body += page.csv("top_paths", frame)
    return s


# --------------------------------------------------------------------------------------------------
# 5. Transition graph
# --------------------------------------------------------------------------------------------------


def transitions(data: ReportData, page: Page) -> Section:
    s = Section("transitions", "Transition graph", "Next step after each touchpoint, sessions")
    edges = data.session_transitions
    order = data.touchpoint_stages
    stage_rank = {name: i for i, name in enumerate(data.stage_names)}
    volume = edges.group_by("from_node").agg(pl.col("n_transitions").sum().alias("n"))
    volumes = dict(volume.iter_rows())
    nodes = [n for n in volumes if n != "path_start"]
    nodes.sort(key=lambda n: (stage_rank.get(order.get(n, ""), 99), -volumes.get(n, 0), n))
    rows = ["path_start", *nodes]
    cols = [*nodes, "path_end"]
    after_goal = sorted(data.post_goal_nodes)
    drops = edges.filter((pl.col("to_node") == "path_end") & (pl.col("from_node") != "path_start")
                         & ~pl.col("from_node").is_in(after_goal)).sort("n_transitions", descending=True)
    strongest = drops.head(3)
    highlight = [(r["from_node"], r["to_node"]) for r in strongest.iter_rows(named=True)]
    if strongest.height:
        r = strongest.row(0, named=True)
        s.title = (f"{r['from_node']} → exit is the strongest drop-off edge: {fmt_int(r['n_transitions'])} sessions "
                   f"end there ({fmt_pct(r['probability'], 0)} of the steps after {r['from_node']})")
    else:
        s.title = "No session ends early"
    s.how = ("Rows: where a visitor is; columns: where they go next (path_end: they leave). Each cell is the share "
             "of the row's next steps, so every row sums to 100%. The three edges into path_end with the most "
             "sessions are boxed in red (leaving after the purchase is not a drop-off, so those rows are left "
             "out). Darker diagonal cells are repeats (another product page).")
    body = page.chart("transition-heatmap", charts.transition_heatmap(edges, rows, cols, highlight),
                      "Transition heatmap")
    body += table(drops.head(8), [("from_node", "Last step", None), ("n_transitions", "Sessions that leave", fmt_int),
                                  ("probability", "Share of next steps", fmt_pct)],
                  caption="Strongest drop-off edges (into path_end)")
    body += page.csv("transitions", edges)
    try:
        loops = data.loops_by_device
    except Exception as exc:  # noqa: BLE001
        body += f'<p class="note">Loops by device unavailable: {esc(_one_line(exc))}</p>'
    else:
        if loops.height:
            spread = loops.group_by("loop_path").agg(
                (pl.col("loop_share").max() - pl.col("loop_share").min()).alias("spread"),
                pl.col("n_sessions_looping").sum().alias("n"),
            ).filter(pl.col("n") > 0).sort("spread", "n", descending=True)
            if spread.height:
                path = spread.row(0, named=True)["loop_path"]
                part = loops.filter(pl.col("loop_path") == path).sort("loop_share", descending=True)
                hi, lo = part.row(0, named=True), part.row(-1, named=True)
                start = path.split(" > ")[0]
                heading = (f"{fmt_pct(hi['loop_share'], 0)} of {hi['device']} sessions at {start} loop {path}; "
                           f"{lo['device']} {fmt_pct(lo['loop_share'], 0)}")
                body += (f"<h3>{esc(heading)}</h3>"
                         '<p class="note">A loop is A → B → A in consecutive steps. Share: sessions with the loop '
                         "among "
                         "the sessions of that device that reached A.</p>")
                plot = loops.filter(pl.col("loop_path").is_in(spread.head(4)["loop_path"].to_list()))
                body += page.chart("loops-device", charts.grouped_bars(plot, "loop_path", "loop_share", "device",
                                                                       title_y="% of sessions at the loop's start"),
                                   "Loops by device")
                body += page.csv("loops_by_device", loops)
    s.body = body
    return s


# --------------------------------------------------------------------------------------------------
# 6. Drop-off points by revenue at risk
# --------------------------------------------------------------------------------------------------


def dropoffs(data: ReportData, page: Page) -> Section:
    s = Section("dropoffs", "Drop-off points", "Ranked by revenue at risk")
    frame = data.revenue_at_risk
    cur = data.currency
    tp = frame.filter(pl.col("level") == "touchpoint").sort("revenue_at_risk", descending=True)
    if tp.height == 0:
        s.title, s.body = "No drop-off points", '<p class="note">Nobody left without converting.</p>'
        return s
    top = tp.row(0, named=True)
    s.title = (f"Drop-offs at {top['node']} put {fmt_money(top['revenue_at_risk'], cur)} at risk: "
               f"{fmt_pct(top['share_of_risk'], 0)} of all revenue at risk")
    basis = top["value_basis"]
    basis_text = ("average order plus a new customer’s predicted 12-month value" if basis == "clv"
                  else "average order")
    value = fmt_money(top["value_per_conversion"], cur)
    s.how = (f"Revenue at risk = people who left at the point × the chance they would have bought had they taken one "
             f"more step (from the journey's Markov chain) × the value of a conversion ({value}: "
             f"{basis_text}). "
             "It ranks where fixing the experience is worth most, not where most people leave. "
             "pipeline.value.risk.revenue_at_risk, user journeys until the first purchase.")
    body = page.chart("risk", charts.risk_bars(tp.head(10), cur), "Revenue at risk by drop-off point")
    body += table(frame, [("level", "Level", None), ("node", "Drop-off point", None),
                          ("n_dropoffs", "Left here", fmt_int), ("dropoff_rate", "of those passing", fmt_pct),
                          ("next_node", "Usual next step", None),
                          ("p_conversion_if_continued", "Would have bought", fmt_pct),
                          ("revenue_at_risk", "Revenue at risk", lambda v: fmt_money(v, cur)),
                          ("share_of_risk", "Share", fmt_pct)])
    body += page.csv("revenue_at_risk", frame)
    s.body = body
    return s


# --------------------------------------------------------------------------------------------------
# 7. Touchpoints to purchase
# --------------------------------------------------------------------------------------------------


def effort(data: ReportData, page: Page) -> Section:
    from pipeline import paths

    s = Section("effort", "Touchpoints to purchase", "Effort before the first purchase, per buyer")
    per_user = data.effort
    if per_user.height == 0:
        s.title, s.body = "Nobody has purchased yet", '<p class="note">No converting journeys.</p>'
        return s
    hist = paths.effort_histogram(per_user, "n_touchpoints")
    summary = paths.effort_summary(per_user)
    overall = summary.row(0, named=True)
    s.title = (f"Half of buyers need {fmt_num(overall['n_touchpoints_median'], 0)} touchpoints or fewer before their "
               f"first purchase; 1 in 10 needs {fmt_num(overall['n_touchpoints_p90'], 0)} or more")
    s.how = ("Bars: the share of buyers by the number of touchpoints (channel visits and on-site steps) before their "
             "first purchase, across all their sessions. The table gives the median and the 10th/90th percentiles "
             "by acquisition channel, with sessions and days to purchase.")
    body = page.chart("effort", charts.histogram(hist, "n_touchpoints", "share", title_x="touchpoints before purchase",
                                                 median=overall["n_touchpoints_median"]), "Touchpoints to purchase")
    body += table(summary, [("group", "Acquisition channel", None), ("n_converted", "Buyers", fmt_int),
                            ("n_touchpoints_median", "Touchpoints (median)", lambda v: fmt_num(v, 0)),
                            ("n_touchpoints_p10", "p10", lambda v: fmt_num(v, 0)),
                            ("n_touchpoints_p90", "p90", lambda v: fmt_num(v, 0)),
                            ("n_sessions_median", "Sessions (median)", lambda v: fmt_num(v, 0)),
                            ("days_to_goal_median", "Days (median)", lambda v: fmt_num(v, 1))])
    body += page.csv("touchpoints_to_purchase", hist) + page.csv("effort_by_channel", summary,
                                                                 "Download the summary by channel (CSV)")
    s.body = body
    return s


# --------------------------------------------------------------------------------------------------
# 8. Attribution
# --------------------------------------------------------------------------------------------------


def attribution(data: ReportData, page: Page) -> Section:
    s = Section("attribution", "Attribution", "Conversions credited to channels, seven models")
    frame = data.attribution()
    spread = frame.group_by("channel").agg(pl.col("share").min().alias("lo"), pl.col("share").max().alias("hi"),
                                           pl.col("share").mean().alias("mean")).sort("mean", descending=True)
    lead = spread.row(0, named=True)
    disagree = spread.with_columns((pl.col("hi") - pl.col("lo")).alias("d")).sort("d", descending=True).row(
        0, named=True)
    s.title = (f"{lead['channel']} earns the most credit on average ({fmt_pct(lead['mean'], 0)}); models disagree most "
               f"on {disagree['channel']} ({fmt_pct(disagree['lo'], 0)} to {fmt_pct(disagree['hi'], 0)})")
    s.how = ("Each bar is a channel's share of the purchases under one model. First/last click give all credit to one "
             "touch; linear, position (40/20/40) and time decay (7-day half-life) split it; Markov credits the drop "
             "in conversion when a channel is removed from the journeys; Shapley splits each purchase over the "
             "channels that took part. A channel high under first touch but low under last touch opens journeys "
             "that other channels close. Touches within 30 days before the purchase.")
    order = ["first", "last", "linear", "position", "time_decay", "markov", "shapley"]
    models = [m for m in order if m in set(frame["model"].to_list())]
    channel_order = spread["channel"].to_list()
    plot = frame.with_columns(pl.col("channel").replace_strict({c: i for i, c in enumerate(channel_order)},
                                                               default=99).alias("_o")).sort("_o")
    figure = charts.grouped_bars(plot, "channel", "share", "model", title_y="share of purchases", order=models)
    body = page.chart("attribution", figure, "Attribution by model")
    wide = frame.pivot(on="model", index="channel", values="share").select("channel", *models)
    wide = wide.with_columns(pl.col("channel").replace_strict({c: i for i, c in enumerate(channel_order)},
                                                              default=99).alias("_o")).sort("_o").drop("_o")
    body += table(wide, [("channel", "Channel", None), *((m, m.replace("_", " "), fmt_pct) for m in models)])
    body += page.csv("attribution", frame)
    s.body = body
    return s


# --------------------------------------------------------------------------------------------------
# 9. Customer value
# --------------------------------------------------------------------------------------------------


def value(data: ReportData, page: Page) -> Section:
    s = Section("value", "Customer lifetime value", "By acquisition channel, first-visit cohort and stage")
    frames = data.value_by
    cur = data.currency
    channel = frames["acquisition_channel"].filter(pl.col("n_customers") > 0).sort("total_value_per_customer",
                                                                                   descending=True)
    params = data.clv_result.parameters()
    if channel.height:
        best, worst = channel.row(0, named=True), channel.row(-1, named=True)
        s.title = (f"Customers from {best['value']} are worth the most: "
                   f"{fmt_money(best['total_value_per_customer'], cur, 0)}"
                   f" each (so far + next 12 months), vs {fmt_money(worst['total_value_per_customer'], cur, 0)} from "
                   f"{worst['value']}")
    else:
        s.title = "Customer lifetime value"
    s.how = (f"Dark: net revenue per customer so far; light: predicted value of their next 12 months (BG/NBD for how "
             f"often they buy again, Gamma-Gamma for how much; 1% monthly discount), fitted on "
             f"{fmt_int(params['n_customers'])} customers up to {params['calibration_end']}. Cohort = month of the "
             "first "
             "visit; stage = the furthest stage reached. A young cohort has had less time to buy, so compare its "
             "predicted part. pipeline.value.customers.value_by.")
    body = ""
    titles = {"acquisition_channel": "By acquisition channel", "cohort": "By first-visit month (cohort)",
              "stage": "By furthest stage"}
    for dim, frame in frames.items():
        shown = frame.filter(pl.col("n_customers") > 0)
        body += f"<h3>{esc(titles[dim])}</h3>"
        if shown.height == 0:
            body += '<p class="note">No customers.</p>'
            continue
        body += page.chart(f"clv-{dim}", charts.value_bars(shown, cur), f"Customer value {titles[dim].lower()}")
    combined = pl.concat(list(frames.values()), how="diagonal_relaxed")
    body += table(combined, [("dimension", "By", None), ("value", "Group", None), ("n_users", "People", fmt_int),
                             ("n_customers", "Customers", fmt_int), ("conversion_rate", "Conversion", fmt_pct),
                             ("historical_revenue_per_customer", "Revenue so far", lambda v: fmt_money(v, cur)),
                             ("predicted_clv_per_customer", "Predicted 12 months", lambda v: fmt_money(v, cur)),
                             ("mean_p_alive", "Still active (P)", fmt_pct)], max_rows=40)
    body += page.csv("customer_value", combined)
    s.body = body
    return s


# --------------------------------------------------------------------------------------------------
# 10. Segments
# --------------------------------------------------------------------------------------------------


def segments(data: ReportData, page: Page) -> Section:
    s = Section("segments", "Segments", "Conversion and cart abandonment by channel and device")
    conv = data.conversion_by
    channel = conv["channel"]
    ranked = channel.filter(pl.col("n_units") >= 30).sort("conversion_rate", descending=True)
    body = ""
    titles = []
    if ranked.height >= 2:
        best, worst = ranked.row(0, named=True), ranked.row(-1, named=True)
        ratio = best["conversion_rate"] / worst["conversion_rate"] if worst["conversion_rate"] else None
        titles.append(f"{best['group']} sessions convert at {fmt_pct(best['conversion_rate'])}"
                      + (f", {fmt_num(ratio, 1)}× {worst['group']} ({fmt_pct(worst['conversion_rate'])})"
                         if ratio else ""))
    try:
        ab = data.abandonment_by_device.filter(pl.col("abandonment_kind") == "cart").sort("abandonment_rate",
                                                                                          descending=True)
    except Exception as exc:  # noqa: BLE001
        ab = None
        body += f'<p class="note">Cart abandonment unavailable: {esc(_one_line(exc))}</p>'
    if ab is not None and ab.height:
        w = ab.row(0, named=True)
        titles.append(f"{w['group'].capitalize()} loses {fmt_pct(w['abandonment_rate'], 0)} of carts")
    s.title = "; ".join(titles) or "Segments"
    s.how = ("Session conversion: share of sessions with a purchase, by the session's channel and device, with 95% "
             "Wilson intervals (bars that do not overlap differ beyond noise). Cart abandonment: of the sessions with "
             "an add-to-cart, the share without a purchase after it in the same session; the dotted line is the "
             "published average (Baymard Institute, 70%). The table lists the built-in segments (user level).")
    body += '<div class="grid2">'
    body += page.chart("conversion-channel", charts.rate_bars(channel, "group", "conversion_rate",
                                                              title_x="session conversion"), "Conversion by channel")
    body += page.chart("conversion-device", charts.rate_bars(conv["device"], "group", "conversion_rate",
                                                             title_x="session conversion"), "Conversion by device")
    body += "</div>"
    body += page.csv("conversion_by_channel", channel) + page.csv("conversion_by_device", conv["device"],
                                                                  "Download conversion by device (CSV)")
    if ab is not None and ab.height:
        body += page.chart("cart-abandonment-device",
                           charts.rate_bars(ab, "group", "abandonment_rate", title_x="cart abandonment",
                                            highlight=ab.row(0, named=True)["group"],
                                            benchmark=CART_ABANDONMENT_BENCHMARK,
                                            benchmark_label="industry average"),
                           "Cart abandonment by device")
        body += page.csv("abandonment_by_device", data.abandonment_by_device, "Download abandonment by device (CSV)")
    try:
        seg = data.segment_summary
    except Exception as exc:  # noqa: BLE001
        body += f'<p class="note">Segment summary unavailable: {esc(_one_line(exc))}</p>'
    else:
        body += table(seg, [("segment", "Segment", None), ("n_users", "People", fmt_int),
                            ("share_of_users", "Share", fmt_pct), ("conversion_rate", "Conversion", fmt_pct),
                            ("conversion_rate_low", "low", fmt_pct), ("conversion_rate_high", "high", fmt_pct),
                            ("revenue_per_user", "Revenue per person", lambda v: fmt_money(v, data.currency))],
                      caption="Built-in segments (people)", max_rows=40)
        body += page.csv("segments", seg, "Download the segments (CSV)")
    s.body = body
    return s


def personas(data: ReportData, page: Page) -> Section:
    s = Section("personas", "Personas", "People clustered by what their journeys look like (k-means, k = 4)")
    result = data.personas
    summary = result.summary.sort("n_users", descending=True)
    top = summary.sort("conversion_rate", descending=True).row(0, named=True)
    first_touchpoint = top["top_touchpoints"].split(",")[0].split(" (")[0]
    s.title = (f"Persona {top['persona']} ({fmt_pct(top['share_of_users'], 0)} of people) converts best at "
               f"{fmt_pct(top['conversion_rate'], 0)}: it over-uses {first_touchpoint}")
    s.how = ("People are grouped by the mix of touchpoints and stages in their journeys, their number of sessions and "
             "channels, whether they bought and their revenue (standardised, seeded k-means, so the same data gives "
             "the same personas). 'Over-uses' lists the touchpoints most above average in the persona (in standard "
             "deviations).")
    body = page.chart("personas", charts.simple_bars([f"Persona {p}" for p in summary["persona"].to_list()],
                                                     summary["n_users"].to_list(), title_x="people"), "Persona sizes")
    body += table(summary, [("persona", "Persona", None), ("n_users", "People", fmt_int),
                            ("share_of_users", "Share", fmt_pct), ("conversion_rate", "Conversion", fmt_pct),
                            ("mean_revenue", "Revenue per person", lambda v: fmt_money(v, data.currency)),
                            ("mean_sessions", "Sessions", lambda v: fmt_num(v, 1)),
                            ("top_touchpoints", "Over-uses", None)])
    body += page.csv("personas", summary)
    s.body = body
    return s


def experiments(data: ReportData, page: Page) -> Section:
    s = Section("experiments", "Experiments and before/after", "A/B tests and the last 4 weeks vs the 4 before")
    body = ""
    compared = data.before_after
    sig = compared.filter(pl.col("is_significant"))
    changes = data.channel_changes
    sig_channels = changes.filter(pl.col("p_adjusted") < 0.05)
    if sig.height:
        biggest = sig.row(0, named=True)
        s.title = (f"{sig.height} of {compared.height} KPIs changed significantly since the previous 4 weeks, among "
                   f"them {biggest['metric'].replace('_', ' ').replace(':', ': ')} "
                   f"({_fmt_value(biggest['before_value'], biggest['kind'])} → "
                   f"{_fmt_value(biggest['after_value'], biggest['kind'])})")
    else:
        s.title = "No KPI changed significantly since the previous 4 weeks"
    s.how = (f"Before: {data.period.label('previous')}; after: {data.period.label('current')}. Rates: pooled "
             "two-proportion z-test with a Wald interval of the difference; means: Welch's t-test. p-values are "
             "Benjamini-Hochberg adjusted over all rows of a table, so 'significant' holds after looking at "
             "everything at once. pipeline.metrics.experiments.compare_periods.")
    shown = compared.with_columns(
        pl.struct("before_value", "kind").map_elements(lambda r: _fmt_value(r["before_value"], r["kind"]),
                                                       return_dtype=pl.String).alias("before_text"),
        pl.struct("after_value", "kind").map_elements(lambda r: _fmt_value(r["after_value"], r["kind"]),
                                                      return_dtype=pl.String).alias("after_text"),
        pl.struct("difference", "kind").map_elements(
            lambda r: _fmt_difference(r["difference"], r["kind"]),
            return_dtype=pl.String).alias("difference_text"),
    )
    body += table(shown, [("metric", "KPI", lambda v: v.replace("_", " ")),
                          ("before_text", "Before", None), ("after_text", "After", None),
                          ("difference_text", "Difference", None), ("p_adjusted", "p (adjusted)", fmt_p),
                          ("is_significant", "Significant", lambda v: "yes" if v else "no")],
                  row_classes=["flag" if v else "" for v in compared["is_significant"].to_list()])
    body += page.csv("before_after", compared)
    channel_note = (f"{sig_channels.height} channel(s) changed significantly: "
                    + ", ".join(f"{r['channel']} {fmt_pct(r['rate_before'])} → {fmt_pct(r['rate_after'])}"
                                for r in sig_channels.iter_rows(named=True))
                    if sig_channels.height else "No channel's session conversion changed significantly.")
    body += f"<h3>{esc(channel_note)}</h3>"
    body += page.chart("channel-before-after", charts.grouped_bars(
        pl.concat([changes.select("channel", pl.lit("before").alias("period"), pl.col("rate_before").alias("rate")),
                   changes.select("channel", pl.lit("after").alias("period"), pl.col("rate_after").alias("rate"))]),
        "channel", "rate", "period", title_y="session conversion"), "Conversion by channel before and after")
    body += table(changes, [("channel", "Channel", None), ("n_before", "Sessions before", fmt_int),
                            ("rate_before", "Before", fmt_pct), ("n_after", "Sessions after", fmt_int),
                            ("rate_after", "After", fmt_pct), ("difference", "Change", fmt_pp),
                            ("p_adjusted", "p (adjusted)", fmt_p)])
    body += page.csv("channel_before_after", changes, "Download the channel comparison (CSV)")
    keys = data.experiment_keys
    if not keys:
        body += ('<h3>A/B tests</h3><p class="note">No experiment in the data: no event carries a property such as '
                 "<code>variant</code> or <code>experiment</code>.</p>")
    else:
        for key, frame in data.experiments.items():
            body += f"<h3>A/B test on property {esc(key)}</h3>"
            body += table(frame) + page.csv(f"experiment_{_slug(key)}", frame)
    s.body = body
    return s


def _fmt_difference(value, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt_pp(value) if kind == "rate" else f"{value:+,.2f}"


def _fmt_value(value, kind: str) -> str:
    return fmt_pct(value) if kind == "rate" else fmt_num(value, 2)


def _slug(text: str) -> str:
    from pipeline.report.html import slug

    return slug(text)


# --------------------------------------------------------------------------------------------------
# 11. Data quality
# --------------------------------------------------------------------------------------------------


def data_quality(data: ReportData, page: Page) -> Section:
    s = Section("data-quality", "Data quality", "Files loaded, rows quarantined, events not mapped")
    manifest, quarantine, unmapped = data.manifest, data.quarantine, data.unmapped
    n_read = int(manifest["n_read"].sum() or 0)
    n_q = int(manifest["n_quarantined"].sum() or 0)
    n_dup = int(manifest["n_duplicate"].sum() or 0)
    n_unmapped = int(unmapped["n_events"].sum() or 0)
    parts = [f"{fmt_int(manifest.height)} files, {fmt_int(n_read)} rows read"]
    if n_q:
        top_reason = quarantine.row(0, named=True)["reason"] if quarantine.height else "?"
        parts.append(f"{fmt_pct(n_q / n_read if n_read else 0)} quarantined, mostly {top_reason}")
    else:
        parts.append("none quarantined")
    parts.append(f"{fmt_int(n_dup)} duplicates skipped")
    parts.append(f"{fmt_int(n_unmapped)} events not mapped to a touchpoint" if n_unmapped else "every event mapped")
    s.title = "; ".join(parts)
    s.how = ("Every loaded file is in the manifest with rows read = loaded + duplicates + quarantined. Quarantined "
             "rows were kept out of the analysis for the reason shown (the original text is in raw.quarantine). "
             "Unmapped events load normally but have no touchpoint rule: add one in the touchpoint mapping so they "
             "count in the right stage.")
    body = ""
    if quarantine.height:
        by_reason = quarantine.group_by("reason").agg(pl.col("n_rows").sum()).sort("n_rows", descending=True)
        figure = charts.simple_bars(by_reason["reason"].to_list(), by_reason["n_rows"].to_list(),
                                    title_x="rows quarantined", colour=charts.RED)
        body += page.chart("quarantine", figure, "Quarantined rows by reason")
        body += table(quarantine, [("reason", "Reason", None), ("field", "Field", None), ("n_rows", "Rows", fmt_int),
                                   ("n_files", "Files", fmt_int), ("example", "Example", None)])
        body += page.csv("quarantine", quarantine, "Download quarantine by reason (CSV)")
    if unmapped.height:
        body += table(unmapped, [("event_name", "Unmapped event", None), ("n_events", "Events", fmt_int),
                                 ("n_users", "People", fmt_int)], caption="Events without a touchpoint rule")
        body += page.csv("unmapped_events", unmapped, "Download unmapped events (CSV)")
    body += table(manifest, [("path", "File", None), ("format", "Format", None), ("n_read", "Read", fmt_int),
                             ("n_loaded", "Loaded", fmt_int), ("n_duplicate", "Duplicates", fmt_int),
                             ("n_quarantined", "Quarantined", fmt_int), ("loaded_at", "Loaded at (UTC)", None)],
                  caption="Load manifest", max_rows=50)
    body += page.csv("manifest", manifest, "Download the manifest (CSV)")
    s.body = body
    return s


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


SECTIONS: tuple[Callable[[ReportData, Page], Section], ...] = (
    kpis, journey_map, funnel, paths_sankey, transitions, dropoffs, effort, attribution, value, segments, personas,
    experiments, data_quality,
)
NAMES = {
    kpis: ("kpis", "Headline KPIs"), journey_map: ("journey-map", "Journey map"), funnel: ("funnel", "Stage funnel"),
    paths_sankey: ("paths", "Top paths"), transitions: ("transitions", "Transition graph"),
    dropoffs: ("dropoffs", "Drop-off points"), effort: ("effort", "Touchpoints to purchase"),
    attribution: ("attribution", "Attribution"), value: ("value", "Customer value"), segments: ("segments", "Segments"),
    personas: ("personas", "Personas"), experiments: ("experiments", "Experiments & before/after"),
    data_quality: ("data-quality", "Data quality"),
}


def build_section(fn: Callable[[ReportData, Page], Section], data: ReportData, page: Page) -> Section:
    """Run one section; a failure becomes a one-line error in that section only."""
    anchor, nav = NAMES[fn]
    state = (len(page.blocks), page.n_charts)
    try:
        section = fn(data, page)
    except Exception as exc:  # noqa: BLE001 - reported in the page, the rest of the report still renders
        del page.blocks[state[0]:]
        page.n_charts = state[1]
        return Section(anchor, nav, "", error=_one_line(exc))
    section.nav = nav
    return section
