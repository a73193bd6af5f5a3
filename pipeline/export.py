"""Exports for BI tools: the staging and marts tables and a few analysis outputs as CSV or Parquet.

Reads the built database (read-only is enough: analysis outputs use temp tables only); writes one
file per table into the output folder, each first to a hidden temporary file in that folder and
then renamed into place, so a BI tool polling the folder never reads half a file.

CSV is for spreadsheets too, so every text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return gets a leading apostrophe (a spreadsheet would otherwise run it as a formula:
CSV injection). Numbers, dates and booleans are written as they are; Parquet keeps the data exact
and typed, with no neutralisation (it is not opened by spreadsheets).

Table names are a closed list: the tables of the ``staging`` and ``marts`` layers found in the
catalog (the project's own SQL models), ``raw.manifest`` and ``raw.quarantine`` (data quality), and
the analysis outputs of :data:`ANALYSES`. Identifiers in SQL only ever come from that list and the
catalog; the output path is a bound parameter.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import polars as pl

from pipeline.db import Database
from pipeline.files import atomic_target

ExportFormat = Literal["csv", "parquet"]
EXPORT_FORMATS: tuple[str, ...] = get_args(ExportFormat)
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
CATALOG_LAYERS = ("staging", "marts")
RAW_TABLES = ("manifest", "quarantine")


class ExportError(ValueError):
    """An export that cannot be done as asked (unknown table, bad format, missing build)."""


# --------------------------------------------------------------------------------------------------
# CSV injection
# --------------------------------------------------------------------------------------------------


def neutralise(value: str | None) -> str | None:
    """``'=SUM(A1)'`` -> ``"'=SUM(A1)"``; other values unchanged."""
    if value is not None and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralise_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Every text column with :func:`neutralise` applied (vectorised)."""
    pattern = "^[=+\\-@\t\r]"
    exprs = [
        pl.when(pl.col(name).str.contains(pattern)).then(pl.lit("'") + pl.col(name)).otherwise(pl.col(name))
        .alias(name)
        for name, dtype in frame.schema.items()
        if dtype == pl.String
    ]
    return frame.with_columns(exprs) if exprs else frame


def _neutralise_sql(column: str) -> str:
    quoted = _quote_ident(column)
    return (
        f"case when left({quoted}, 1) in ('=', '+', '-', '@', chr(9), chr(13)) "
        f"then '''' || {quoted} else {quoted} end as {quoted}"
    )


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------------------------------
# What can be exported
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    description: str
    compute: Callable[[Database, dict], pl.DataFrame]  # (db, cache shared by one export run)


def _report_data(name: str) -> Callable[[Database, dict], pl.DataFrame]:
    """A method of :class:`pipeline.report.data.ReportData`; one instance serves a whole export run,
    so results several outputs share (revenue at risk, the CLV fit) are computed once."""

    def compute(db: Database, cache: dict) -> pl.DataFrame:
        from pipeline.report.data import ReportData

        data = cache.setdefault("report_data", ReportData(db))
        return getattr(data, name)()

    return compute


ANALYSES: dict[str, Analysis] = {
    "kpis": Analysis("headline KPIs of the last 4 weeks and the 4 before", _report_data("kpi_table")),
    "journey_map": Analysis("one row per stage: reach, conversion, abandonment, time, satisfaction, revenue",
                            _report_data("journey_map")),
    "stage_funnel": Analysis("users reaching each stage, with Wilson intervals", _report_data("stage_funnel")),
    "transitions": Analysis("touchpoint transition graph (user journeys) with path_start/path_end",
                            _report_data("export_transitions")),
    "path_variants": Analysis("the 200 most frequent session paths", _report_data("export_path_variants")),
    "revenue_at_risk": Analysis("drop-off points ranked by revenue at risk (touchpoint and stage)",
                                _report_data("export_revenue_at_risk")),
    "attribution": Analysis("attributed conversions and revenue per channel, every model",
                            _report_data("attribution")),
    "clv_predictions": Analysis("per customer: BG/NBD + Gamma-Gamma predicted value",
                                _report_data("export_clv_predictions")),
    "value_by_segment": Analysis("historical and predicted value by channel, cohort and stage",
                                 _report_data("export_value_by")),
    "conversion_by_segment": Analysis("session conversion and cart abandonment by channel and device",
                                      _report_data("export_conversion_by")),
}


@dataclass(frozen=True)
class Exportable:
    name: str  # what the user types and the file stem
    kind: Literal["table", "analysis"]
    qualified: str  # layer.table for tables, the analysis name otherwise


def exportables(db: Database) -> list[Exportable]:
    """Every name :func:`export` accepts, tables first (catalog order), then analyses."""
    rows = db.query(
        "select table_schema, table_name from information_schema.tables "
        "where (table_schema in ('staging', 'marts') or (table_schema = 'raw' and table_name in "
        "('manifest', 'quarantine'))) and table_type = 'BASE TABLE' "
        "order by case table_schema when 'staging' then 1 when 'marts' then 2 else 3 end, table_name"
    )
    found = [Exportable(t, "table", f"{s}.{t}") for s, t in rows.iter_rows()]
    return found + [Exportable(name, "analysis", name) for name in ANALYSES]


def resolve(db: Database, names: Iterable[str]) -> list[Exportable]:
    """``["all"]`` or table/analysis names (``stg_events`` or ``staging.stg_events``) -> Exportables."""
    known = exportables(db)
    if not any(e.kind == "table" and e.qualified.startswith("staging.") for e in known):
        raise ExportError(f"{db.path} has no staging tables; run `journeys build` first")
    wanted = list(names)
    if wanted == ["all"] or "all" in wanted:
        return known
    by_name = {e.name: e for e in known} | {e.qualified: e for e in known}
    out = []
    for name in wanted:
        if name not in by_name:
            close = difflib.get_close_matches(name, sorted(by_name), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ExportError(f"unknown table {name!r}{hint} (see `journeys export --list`)")
        if by_name[name] not in out:
            out.append(by_name[name])
    return out


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportResult:
    name: str
    path: str | None  # None when the table could not be computed (``error`` says why)
    n_rows: int
    seconds: float
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "path": self.path, "n_rows": self.n_rows, "seconds": self.seconds,
                "error": self.error}


def export_one(db: Database, item: Exportable, fmt: ExportFormat, out_dir: Path,
               cache: dict | None = None) -> ExportResult:
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    started = time.perf_counter()
    target = Path(out_dir) / f"{item.name}.{fmt}"
    with atomic_target(target) as tmp:
        if item.kind == "table":
            n_rows = _copy_table(db, item.qualified, fmt, tmp)
        else:
            frame = ANALYSES[item.name].compute(db, {} if cache is None else cache)
            n_rows = frame.height
            _write_frame(frame, fmt, tmp)
    return ExportResult(item.name, str(target), n_rows, round(time.perf_counter() - started, 3))


def export(
    db: Database,
    names: Iterable[str],
    fmt: ExportFormat,
    out_dir: Path,
    *,
    on_start: Callable[[Exportable], None] | None = None,
) -> list[ExportResult]:
    """Write each requested table to ``out_dir/<name>.<fmt>``; ``on_start`` is told before each.

    With ``all``, an analysis that cannot be computed on this data (say, CLV without repeat buyers)
    is skipped and reported in its result's ``error``; the other files are still written. A table
    named explicitly raises instead.
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    names = list(names)
    items = resolve(db, names)
    everything = "all" in names
    results, cache = [], {}
    for item in items:
        if on_start is not None:
            on_start(item)
        started = time.perf_counter()
        try:
            results.append(export_one(db, item, fmt, out_dir, cache))
        except Exception as exc:
            if not everything or item.kind != "analysis":
                raise
            message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            results.append(ExportResult(item.name, None, 0, round(time.perf_counter() - started, 3), message))
    return results


def _copy_table(db: Database, qualified: str, fmt: ExportFormat, tmp: Path) -> int:
    layer, _, table = qualified.partition(".")
    if not db.has_table(layer, table):  # the name came from the catalog; this guards a race with a build
        raise ExportError(f"table {qualified} does not exist; run `journeys build` first")
    columns = db.query(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = $layer and table_name = $table order by ordinal_position",
        {"layer": layer, "table": table},
    )
    source = f"{_quote_ident(layer)}.{_quote_ident(table)}"
    if fmt == "csv":
        select = ", ".join(
            _neutralise_sql(name) if dtype in ("VARCHAR", "JSON") else _quote_ident(name)
            for name, dtype in columns.iter_rows()
        )
        db.execute(f"copy (select {select} from {source}) to $out (format csv, header true)",  # noqa: S608
                   {"out": str(tmp)})
    else:
        db.execute(f"copy (select * from {source}) to $out (format parquet)", {"out": str(tmp)})  # noqa: S608
    return int(db.scalar(f"select count(*) from {source}"))  # noqa: S608


def _write_frame(frame: pl.DataFrame, fmt: ExportFormat, tmp: Path) -> None:
    from pipeline.report.html import flatten_for_csv

    flat = flatten_for_csv(frame) if fmt == "csv" else frame
    if fmt == "csv":
        neutralise_frame(flat).write_csv(tmp)
    else:
        flat.write_parquet(tmp)
