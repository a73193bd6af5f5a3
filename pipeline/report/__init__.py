"""The HTML report: one self-contained file (plotly inlined, no network needed).

Reads the built tables (read-only is enough); writes ``<out>/report.html`` and a copy named after
the data's last day (``report-YYYY-MM-DD.html``), each through a temporary file renamed into place,
so a reader never sees a half-written report.

Modules: :mod:`.data` gathers every number (through the analysis APIs), :mod:`.sections` turns them
into findings, tables and charts, :mod:`.charts` builds the plotly figures, :mod:`.html` escapes,
formats and assembles the page, :mod:`.drilldown` holds the drop-off exploration the notebook uses.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.db import Database
from pipeline.files import atomic_write


@dataclass
class ReportResult:
    html: str
    data_last_day: dt.date
    n_charts: int
    errors: dict[str, str] = field(default_factory=dict)  # section -> one-line error
    seconds: dict[str, float] = field(default_factory=dict)


def render_report(db: Database, *, on_section: Callable[[str], None] | None = None) -> ReportResult:
    """Compute every section and assemble the page (no file is written)."""
    import plotly.offline

    from pipeline.report import charts, html, sections
    from pipeline.report.data import ReportData

    data = ReportData(db)
    page = sections.Page()
    built, seconds = [], {}
    for fn in sections.SECTIONS:
        anchor, nav = sections.NAMES[fn]
        if on_section is not None:
            on_section(nav)
        started = time.perf_counter()
        built.append(sections.build_section(fn, data, page))
        seconds[anchor] = round(time.perf_counter() - started, 3)
    period = data.period
    totals = data.totals
    body = "".join(sections.render(s) for s in built) + "".join(page.blocks)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")  # display only, never in a metric
    footer = (
        f"Journeys report · data {html.esc(period.data_first_day.isoformat())} to "
        f"{html.esc(period.data_last_day.isoformat())} · {html.esc(html.fmt_int(totals['n_events']))} events · "
        f"generated {html.esc(generated)} from {html.esc(Path(db.path).name)}"
    )
    subtitle = (
        f"{html.fmt_int(totals['n_users'])} people, {html.fmt_int(totals['n_sessions'])} sessions, "
        f"{html.fmt_int(totals['n_orders'])} orders, {html.fmt_money(totals['revenue'], data.currency)} revenue · "
        f"{period.data_first_day:%d %b %Y} to {period.data_last_day:%d %b %Y} · "
        f"current period {period.label('current')}"
    )
    text = html.page(
        title="Customer journeys report",
        subtitle=subtitle,
        nav=[(s.anchor, s.nav) for s in built],
        body=body,
        footer=footer,
        plotly_js=plotly.offline.get_plotlyjs(),
        template_json=charts.template_json(),
    )
    return ReportResult(
        html=text, data_last_day=period.data_last_day, n_charts=page.n_charts,
        errors={s.nav: s.error for s in built if s.error is not None}, seconds=seconds,
    )


def build_html(db: Database) -> str:
    return render_report(db).html


def write_report(db: Database, out: Path, *, on_section: Callable[[str], None] | None = None) -> Path:
    """Write ``out/report.html`` and ``out/report-<data's last day>.html``; return the first."""
    result = render_report(db, on_section=on_section)
    out = Path(out)
    target = out / "report.html"
    atomic_write(target, result.html)
    atomic_write(out / f"report-{result.data_last_day.isoformat()}.html", result.html)
    return target
