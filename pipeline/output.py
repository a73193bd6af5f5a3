"""Printing results: ``--format table|csv|json`` for every analysis command.

Reads polars frames or dicts; writes to standard output only. JSON is an array of row objects keyed
by column name (or one object where the result is not a table); a table is a rich table on a
terminal and plain aligned text otherwise.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
from typing import Any, Literal

import polars as pl

Format = Literal["table", "csv", "json"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)


def to_json(obj: Any) -> str:
    if isinstance(obj, pl.DataFrame):
        obj = obj.to_dicts()
    return json.dumps(obj, default=_jsonable, ensure_ascii=False)


def emit(frame: pl.DataFrame, fmt: Format, title: str | None = None) -> None:
    if fmt == "json":
        sys.stdout.write(to_json(frame) + "\n")
    elif fmt == "csv":
        sys.stdout.write(frame.write_csv())
    else:
        print_table(frame, title)


def print_table(frame: pl.DataFrame, title: str | None = None) -> None:
    """A rich table on a terminal; plain aligned lines otherwise (cron, pipes)."""
    cells = [[_cell(v) for v in row] for row in frame.iter_rows()]
    if not sys.stdout.isatty():
        widths = [max([len(name)] + [len(r[i]) for r in cells]) for i, name in enumerate(frame.columns)]
        if title:
            sys.stdout.write(title + "\n")
        for row in [list(frame.columns), *cells]:
            sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_lines=False)
    for name in frame.columns:
        table.add_column(Text(name), justify="right" if frame.schema[name].is_numeric() else "left")
    for row in cells:
        table.add_row(*(Text(c) for c in row))  # Text: user strings are never read as rich markup
    Console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
