"""The HTML report: one self-contained file (plotly inlined, no network needed).

Reads the built tables (read-only); writes ``<out>/report.html`` and a dated copy, each through a
temporary file renamed into place, so a reader never sees a half-written report.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import tempfile
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
import polars as pl

from pipeline.db import Database


def _table_html(frame: pl.DataFrame, caption: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
        for row in frame.iter_rows()
    )
    return (
        f"<table><caption>{html.escape(caption)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_html(db: Database) -> str:
    manifest = db.query(
        "select path, n_read, n_loaded, n_duplicate, n_quarantined, loaded_at from raw.manifest order by file_id"
    )
    quarantine = db.query(
        "select reason, field, count(*) as n_rows from raw.quarantine group by reason, field order by n_rows desc"
    )
    per_day = db.query(
        "select cast(started_at as date) as day, count(*) as n_sessions, "
        "count(*) filter (where has_purchase) as n_purchase_sessions "
        "from staging.stg_sessions group by day order by day"
    )
    by_channel = db.query(
        "select channel, count(*) as n_sessions, avg(cast(has_purchase as double)) as conversion_rate, "
        "sum(revenue) as revenue from staging.stg_sessions group by channel order by n_sessions desc"
    )
    figure = go.Figure(go.Scatter(x=per_day["day"].to_list(), y=per_day["n_sessions"].to_list(), name="sessions"))
    figure.update_layout(title="Sessions per day", height=320, margin=dict(l=40, r=20, t=40, b=30))
    chart = pio.to_html(figure, include_plotlyjs=True, full_html=False)
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Journeys report</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px}"
        "table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ddd;padding:4px 8px}"
        "caption{text-align:left;font-weight:600}</style></head><body>"
        f"<h1>Journeys report</h1><p>Generated {html.escape(generated)}</p>"
        + chart
        + _table_html(by_channel, "Sessions and conversion by channel")
        + _table_html(manifest, "Files loaded")
        + _table_html(quarantine, "Quarantined rows by reason")
        + "</body></html>"
    )


def write_report(db: Database, out: Path) -> Path:
    text = build_html(db)
    target = out / "report.html"
    atomic_write(target, text)
    atomic_write(out / f"report-{dt.date.today().isoformat()}.html", text)
    return target
