"""CLI: ``journeys export TABLE|all --format csv|parquet --out DIR`` (tables for BI tools).

Reads the built database read-only through ``pipeline.export``; writes one file per table into
``--out`` (each to a temp file, then renamed). A progress bar shows on a terminal only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands.common import DEFAULT_DB, DbOption, JsonFlag, UsageError, app, open_db
from pipeline.output import print_table, to_json


@app.command()
def export(
    tables: Annotated[
        list[str] | None,
        typer.Argument(help="Tables to export (e.g. stg_sessions mart_customers attribution), or 'all'."),
    ] = None,
    db: DbOption = Path(DEFAULT_DB),
    file_format: Annotated[str, typer.Option("--format", help="csv | parquet")] = "csv",
    out: Annotated[Path, typer.Option("--out", help="Folder to write <table>.<format> files to.")] = Path("exports"),
    list_tables: Annotated[bool, typer.Option("--list", help="List the tables that can be exported.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Export staging/marts tables and analysis outputs as CSV or Parquet for BI tools.

    CSV text cells starting with = + - @ (or a tab/CR) get a leading apostrophe so spreadsheets do not
    run them as formulas. Each file is written to a temp file and renamed, so readers never see half a file.

    Example: journeys export all --format parquet --out exports/
    Example: journeys export stg_sessions mart_customers --format csv --out exports/
    """
    from pipeline.export import EXPORT_FORMATS, ExportError, exportables
    from pipeline.export import export as run_export

    if file_format not in EXPORT_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, not {file_format!r}")
    with open_db(db, read_only=True) as database:
        if list_tables:
            import polars as pl

            rows = [{"name": e.name, "kind": e.kind, "source": e.qualified} for e in exportables(database)]
            print_table(pl.DataFrame(rows), title="exportable tables")
            return
        if not tables:
            raise UsageError("name the tables to export, or 'all' (see --list)")
        try:
            results = _run(database, tables, file_format, out, run_export)
        except ExportError as exc:
            raise UsageError(str(exc)) from None
    failed = [r for r in results if r.error is not None]
    if as_json:
        typer.echo(to_json([r.as_dict() for r in results]))
    else:
        for r in results:
            if r.error is None:
                typer.echo(f"wrote {r.path} ({r.n_rows:,} rows, {r.seconds:.2f}s)")
    for r in failed:
        typer.echo(f"error: {r.name} not exported: {r.error}", err=True)
    if failed:
        raise typer.Exit(1)


def _run(database, tables, file_format, out, run_export):
    if not sys.stderr.isatty():
        return run_export(database, tables, file_format, out)  # quiet in cron and pipes
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pipeline.export import resolve

    items = resolve(database, tables)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=True) as progress:
        task = progress.add_task("export", total=len(items))

        def started(item) -> None:
            progress.update(task, description=f"export {item.name}", completed=items.index(item))

        results = run_export(database, [i.qualified for i in items], file_format, out, on_start=started)
        progress.update(task, completed=len(items))
    return results
