"""HTML for the report: escaping, number formatting, tables, data blocks and the page shell.

Pure functions on strings and polars frames; reads and writes nothing. The rules every section
follows:

* Every string that came from data (event names, URLs, campaigns, channels) goes through
  :func:`esc` before it reaches HTML, and through :func:`plot_text` before it reaches a plotly
  label (plotly renders a subset of HTML in its SVG text, so ``<b>`` in an event name would be
  drawn as bold; escaped, it is drawn as the characters ``<b>``).
* Data reaches the page's scripts only as JSON in ``<script type="application/json">`` blocks,
  serialised by :func:`script_json`, which escapes ``<``, ``>``, ``&`` and the two JavaScript line
  separators, so ``</script>`` or ``<!--`` inside a value cannot end or alter the block.
* The page runs exactly two scripts, plotly.js and :data:`REPORT_JS`, and a Content-Security-Policy
  lists their SHA-256 hashes: a script that escaped every other defence still would not run. There
  is no inline event handler anywhere; the report's script binds its handlers itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import hashlib
import html
import json
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import polars as pl

_CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥"}


# --------------------------------------------------------------------------------------------------
# Escaping
# --------------------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Text for an HTML element or a quoted attribute: ``& < > " '`` become entities."""
    return html.escape("" if value is None else str(value), quote=True)


def plot_text(value: Any) -> str:
    """A label for plotly: ``&``, ``<`` and ``>`` as entities, which plotly draws as those characters."""
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_UNSAFE_RE = re.compile("[<>&\u2028\u2029]")


def escape_json_for_script(text: str) -> str:
    """JSON text made safe inside ``<script>``: the characters only occur in string literals, where
    their ``\\uXXXX`` escapes mean the same, so the JSON is unchanged for ``JSON.parse``."""
    return _SCRIPT_UNSAFE_RE.sub(lambda m: _SCRIPT_UNSAFE[m.group(0)], text)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def script_json(obj: Any) -> str:
    """``obj`` as JSON that can sit inside a ``<script>`` element (see the module docstring)."""
    return escape_json_for_script(json.dumps(obj, default=_json_default, ensure_ascii=False, allow_nan=False))


def data_block(block_id: str, json_text: str) -> str:
    """A JSON data block; ``json_text`` must come from :func:`script_json` or
    :func:`escape_json_for_script`. ``block_id`` is one of our own slugs."""
    _check_id(block_id)
    return f'<script type="application/json" id="{block_id}">{json_text}</script>'


def _check_id(block_id: str) -> None:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", block_id):
        raise ValueError(f"element id {block_id!r} must be a slug made by the report itself")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt_int(value: Any) -> str:
    return "–" if _missing(value) else f"{round(float(value)):,}"


def fmt_num(value: Any, digits: int = 1) -> str:
    return "–" if _missing(value) else f"{float(value):,.{digits}f}"


def fmt_pct(value: Any, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage: 0.3812 -> '38.1%'."""
    if _missing(value):
        return "–"
    v = 100 * float(value)
    if 0 < abs(v) < 10 ** -digits:
        return f"<{10 ** -digits:g}%"
    return f"{v:.{digits}f}%"


def fmt_pp(value: Any) -> str:
    """A difference of two shares in percentage points, signed."""
    return "–" if _missing(value) else f"{100 * float(value):+.1f} pp"


def fmt_change(value: Any) -> str:
    """A relative change: 0.12 -> '+12%'."""
    if _missing(value):
        return "–"
    v = 100 * float(value)
    return f"{v:+.0f}%" if abs(v) >= 10 else f"{v:+.1f}%"


def fmt_money(value: Any, currency: str | None = "EUR", digits: int | None = None) -> str:
    if _missing(value):
        return "–"
    v = float(value)
    if digits is None:
        digits = 0 if abs(v) >= 1000 else 2
    symbol = _CURRENCY_SYMBOLS.get((currency or "").upper())
    number = f"{abs(v):,.{digits}f}"
    sign = "-" if v < 0 else ""
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency or ''}".rstrip()


def fmt_duration(seconds: Any) -> str:
    if _missing(seconds):
        return "–"
    s = float(seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 36 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def fmt_p(value: Any) -> str:
    if _missing(value):
        return "–"
    v = float(value)
    return "p < 0.001" if v < 0.001 else f"p = {v:.3f}"


# --------------------------------------------------------------------------------------------------
# Tables and blocks
# --------------------------------------------------------------------------------------------------


def table(
    frame: pl.DataFrame,
    columns: Sequence[tuple[str, str, Any]] | None = None,
    *,
    caption: str | None = None,
    max_rows: int = 30,
    row_classes: Iterable[str] | None = None,
) -> str:
    """An HTML table: ``columns`` are (column, header, formatter or None); every cell escaped."""
    if columns is None:
        columns = [(c, c, None) for c in frame.columns]
    classes = list(row_classes) if row_classes is not None else []
    head = "".join(
        f'<th class="{"num" if _is_numeric(frame, c) else ""}">{esc(h)}</th>' for c, h, _ in columns
    )
    rows = []
    for i, row in enumerate(frame.head(max_rows).iter_rows(named=True)):
        cells = []
        for c, _, formatter in columns:
            value = row.get(c)
            text = formatter(value) if formatter else ("–" if value is None else str(value))
            cells.append(f'<td class="{"num" if _is_numeric(frame, c) else ""}">{esc(text)}</td>')
        cls = f' class="{esc(classes[i])}"' if i < len(classes) and classes[i] else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    more = (
        f'<p class="note">Showing {max_rows:,} of {frame.height:,} rows; the CSV has them all.</p>'
        if frame.height > max_rows else ""
    )
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f"</table></div>{more}")


def _is_numeric(frame: pl.DataFrame, column: str) -> bool:
    return column in frame.columns and frame.schema[column].is_numeric()


def csv_text(frame: pl.DataFrame) -> str:
    """The frame as CSV for a download link, text cells neutralised for spreadsheets."""
    from pipeline.export import neutralise_frame

    return neutralise_frame(flatten_for_csv(frame)).write_csv()


def flatten_for_csv(frame: pl.DataFrame) -> pl.DataFrame:
    """Lists and structs as JSON text, decimals as floats: what a CSV cell can hold."""
    exprs = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, pl.List | pl.Array | pl.Struct):
            exprs.append(pl.col(name).map_elements(lambda v: json.dumps(_plain(v), default=_json_default),
                                                   return_dtype=pl.String))
        elif isinstance(dtype, pl.Decimal):
            exprs.append(pl.col(name).cast(pl.Float64))
        else:
            exprs.append(pl.col(name))
    return frame.select(exprs) if exprs else frame


def _plain(value: Any) -> Any:
    if isinstance(value, pl.Series):
        return value.to_list()
    return value


def download_button(block_id: str, filename: str, label: str = "Download the data (CSV)") -> str:
    _check_id(block_id)
    return (
        f'<button type="button" class="csv" data-csv="{block_id}" data-filename="{esc(filename)}">'
        f"{esc(label)}</button>"
    )


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------

REPORT_JS = r"""(function () {
  "use strict";
  function parse(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }
  var template = parse("report-template");
  var config = {responsive: true, displaylogo: false,
                modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"]};
  var charts = document.querySelectorAll("div.chart[data-figure]");
  var drawn = 0, failed = 0;
  charts.forEach(function (div) {
    var spec = parse(div.getAttribute("data-figure"));
    if (!spec) { failed += 1; return; }
    spec.layout = spec.layout || {};
    spec.layout.template = template;
    try {
      Plotly.newPlot(div, spec.data, spec.layout, config);
      drawn += 1;
    } catch (err) {
      failed += 1;
      div.textContent = "This chart could not be drawn: " + err;
    }
  });
  document.body.setAttribute("data-charts-drawn", String(drawn));
  document.body.setAttribute("data-charts-failed", String(failed));
  document.querySelectorAll("button.csv[data-csv]").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = parse(button.getAttribute("data-csv"));
      var blob = new Blob(["\ufeff" + text], {type: "text/csv;charset=utf-8"});
      var url = URL.createObjectURL(blob);
      var link = document.createElement("a");
      link.href = url;
      link.download = button.getAttribute("data-filename") || "data.csv";
      document.body.appendChild(link);
      link.click();
      link.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
    });
  });
})();"""

CSS = """
:root{--ink:#1d2433;--muted:#5b6475;--line:#e3e6ec;--bg:#f6f7f9;--card:#fff;--accent:#2457c5;
--bad:#c0392b;--good:#1e8449;--warn:#b9770e;--badbg:#fdecea;--goodbg:#e9f7ef}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:var(--ink);background:var(--bg)}
header.top{background:#17203a;color:#fff;padding:22px 32px 18px}
header.top h1{margin:0 0 4px;font-size:24px}
header.top p{margin:0;color:#c9d1e6}
nav.toc{position:sticky;top:0;z-index:10;background:#fff;border-bottom:1px solid var(--line);
padding:8px 32px;display:flex;flex-wrap:wrap;gap:4px 14px;font-size:13px}
nav.toc a{color:var(--accent);text-decoration:none}
main{max-width:1240px;margin:0 auto;padding:20px 32px 60px}
section.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:18px 22px;
margin:18px 0;box-shadow:0 1px 2px rgba(0,0,0,.03)}
section.card h2{margin:0 0 2px;font-size:19px}
section.card .kicker{margin:0 0 10px;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.06em}
details.how{margin:6px 0 10px;color:var(--muted);font-size:13.5px}
details.how summary{cursor:pointer;color:var(--accent)}
.chart{width:100%;min-height:320px}
.note{color:var(--muted);font-size:13px}
.error{color:var(--bad);background:var(--badbg);padding:8px 12px;border-radius:6px}
.table-wrap{overflow-x:auto;margin:8px 0}
table{border-collapse:collapse;width:100%;font-size:13.5px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:#fafbfc;font-weight:600;color:#39414f}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.flag td{background:var(--badbg)}
button.csv{font:inherit;font-size:13px;border:1px solid var(--line);background:#fff;color:var(--accent);
border-radius:6px;padding:4px 10px;cursor:pointer;margin:6px 8px 0 0}
button.csv:hover{background:#eef3fd}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:12px;margin:10px 0}
.kpi{border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:#fff}
.kpi .label{font-size:12.5px;color:var(--muted)}
.kpi .value{font-size:24px;font-weight:650;font-variant-numeric:tabular-nums}
.kpi .delta{font-size:13px}
.up{color:var(--good)}.down{color:var(--bad)}.flat{color:var(--muted)}
.sig{font-size:11.5px;color:var(--muted)}
.jmap{display:grid;gap:0;border:1px solid var(--line);border-radius:8px;overflow:hidden;font-size:13.5px}
.jmap>div{padding:8px 10px;border-right:1px solid var(--line);border-bottom:1px solid var(--line);background:#fff}
.jmap .rowhead{background:#fafbfc;font-weight:600;color:#39414f}
.jmap .stagehead{background:#17203a;color:#fff;font-weight:650;text-align:center}
.jmap .stagehead small{display:block;font-weight:400;color:#c9d1e6}
.jmap .big{font-size:18px;font-weight:650;font-variant-numeric:tabular-nums}
.bar{height:6px;background:#e8ecf5;border-radius:3px;margin-top:4px}
.bar>span{display:block;height:6px;border-radius:3px;background:var(--accent)}
.bar.bad>span{background:var(--bad)}
.chip{display:inline-block;border:1px solid var(--line);border-radius:12px;padding:0 8px;margin:2px 2px 0 0;
font-size:12px;background:#f7f9fc;white-space:nowrap}
.drop{color:var(--bad);font-weight:600}
.dropcell{background:var(--badbg)!important}
.legend-drop{color:var(--bad);font-weight:600}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:16px}
@media (max-width:900px){.grid2{grid-template-columns:1fr}}
footer{color:var(--muted);font-size:12.5px;text-align:center;padding:20px}
"""


def csp_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def page(
    *,
    title: str,
    subtitle: str,
    nav: Sequence[tuple[str, str]],
    body: str,
    footer: str,
    plotly_js: str,
    template_json: str,
) -> str:
    """The whole document. ``body``/``footer`` are HTML built from escaped parts; ``nav`` holds
    (anchor slug, label) pairs; ``plotly_js`` and :data:`REPORT_JS` are the only scripts."""
    if "</script" in plotly_js.lower():
        raise ValueError("plotly.js contains '</script' and cannot be inlined")
    policy = (
        "default-src 'none'; "
        f"script-src {csp_hash(plotly_js)} {csp_hash(REPORT_JS)}; "
        "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    links = "".join(f'<a href="#{esc(anchor)}">{esc(label)}</a>' for anchor, label in nav)
    return (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>'
        f'<nav class="toc" aria-label="Sections">{links}</nav>'
        f"<main>{body}</main><footer>{footer}</footer>"
        + data_block("report-template", template_json)
        + f"<script>{plotly_js}</script><script>{REPORT_JS}</script></body></html>\n"
    )
