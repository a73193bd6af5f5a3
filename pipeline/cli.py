"""The ``journeys`` command line: a thin layer over the package's functions.

Reads arguments, the config file and the environment (``JOURNEYS_DB``); prints results. Exit codes:
0 ok, 1 handled failure (a file rejected, a missing table, a bad config), 2 usage error. Errors are
one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands.common import (
    DEFAULT_DB,
    ConfigOption,
    DbOption,
    FormatOption,
    JsonFlag,
    UsageError,
    app,
    check_format,
    load_config,
    open_db,
)
from pipeline.output import emit, print_table, to_json

_state = {"debug": False}


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False) -> None:
    _state["debug"] = debug or os.environ.get("JOURNEYS_DEBUG") == "1"


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the files to.")] = Path("data/sample"),
    users: Annotated[int, typer.Option(min=1, help="Number of users.")] = 3000,
    days: Annotated[int, typer.Option(min=1, help="Days of traffic.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same bytes.")] = 42,
    file_format: Annotated[str, typer.Option("--file-format", help="csv.gz | parquet")] = "csv.gz",
) -> None:
    """Generate a clickstream with planted behaviours.

    Example: journeys simulate --users 3000 --days 90 --seed 42 --out data/sample
    """
    from pipeline.simulate import simulate as run_simulation
    from pipeline.simulate import write_sample

    if file_format not in ("csv.gz", "parquet"):
        raise UsageError(f"--file-format must be csv.gz or parquet, not {file_format!r}")
    frame = run_simulation(users=users, days=days, seed=seed)
    files = write_sample(frame, out, fmt=file_format)  # type: ignore[arg-type]
    typer.echo(f"wrote {frame.height:,} events of {users:,} users to {len(files)} files in {out}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files to load (CSV/TSV, Parquet, NDJSON; .gz ok).")],
    db: DbOption = Path(DEFAULT_DB),
    source_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="auto | canonical | ga4 | segment | snowplow | rees46 (auto detects each file's format "
            "from its columns/keys; see docs/adapters.md)",
        ),
    ] = "auto",
    column_map: Annotated[
        str | None, typer.Option("--map", help="Column names, e.g. ts=timestamp,event_name=event")
    ] = None,
    epoch_unit: Annotated[str, typer.Option("--epoch-unit", help="auto | s | ms | us | ns")] = "auto",
    config: ConfigOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Load event files into the database, quarantining bad rows.

    Example: journeys ingest data/sample/*.csv.gz --db data/journeys.duckdb
    Example: journeys ingest exports/events_20250106.json --format ga4
    """
    from pipeline.ingest import FORMATS, ingest_files, parse_column_map

    if source_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {source_format!r}")
    if epoch_unit not in ("auto", "s", "ms", "us", "ns"):
        raise UsageError(f"--epoch-unit must be auto, s, ms, us or ns, not {epoch_unit!r}")
    try:
        mapping = parse_column_map(column_map)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if mapping and source_format not in ("auto", "canonical"):
        raise UsageError(f"--map applies to --format canonical, not {source_format}")
    cfg = load_config(config)
    with open_db(db, memory_limit=cfg["engine"]["memory_limit"]) as database:
        results = ingest_files(
            database, paths, fmt=source_format, column_map=mapping, epoch_unit=epoch_unit,  # type: ignore[arg-type]
            future_tolerance_hours=cfg["ingest"]["future_tolerance_hours"], privacy_settings=cfg["privacy"],
        )
    rows = [r.as_dict() for r in results]
    totals = {
        k: sum(int(r[k]) for r in rows) for k in ("n_read", "n_loaded", "n_duplicate", "n_quarantined", "n_forgotten")
    }
    n_rejected = sum(r.status == "rejected" for r in results)
    if as_json:
        typer.echo(to_json({"files": rows, "totals": {**totals, "n_files": len(rows), "n_rejected": n_rejected}}))
    else:
        import polars as pl

        frame = pl.DataFrame(rows).select(
            "path", "status", "format", "n_read", "n_loaded", "n_duplicate", "n_quarantined", "seconds"
        )
        print_table(frame, title="ingest")
        typer.echo(
            f"{len(rows)} files: read {totals['n_read']:,}, loaded {totals['n_loaded']:,}, "
            f"duplicate {totals['n_duplicate']:,}, quarantined {totals['n_quarantined']:,}, "
            f"forgotten {totals['n_forgotten']:,}, rejected {n_rejected}"
        )
        for r in results:
            if r.status == "rejected":
                typer.echo(f"error: {r.message}", err=True)
    if n_rejected:
        raise typer.Exit(1)


@app.command()
def build(
    db: DbOption = Path(DEFAULT_DB),
    config: ConfigOption = None,
    full_refresh: Annotated[
        bool, typer.Option("--full-refresh", help="Rebuild everything instead of only the users new events touch.")
    ] = False,
    engine: Annotated[
        str,
        typer.Option("--engine", help="duckdb | spark (spark: the same models on PySpark, always a full build; "
                     "needs the 'spark' extra of journeys: pyspark 4, sqlglot, Java 17+)"),
    ] = "duckdb",
    spark_master: Annotated[
        str | None,
        typer.Option("--spark-master", help="Spark master URL (default local[*]): spark://host:7077, yarn, "
                     "k8s://..., or Spark Connect sc://host:15002. Parquet goes to $JOURNEYS_SPARK_DIR "
                     "(default <db>.spark/), which the cluster must be able to read and write."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build staging, paths and marts tables from the loaded events.

    Example: journeys build --db data/journeys.duckdb --json
    Example: journeys build --engine spark --spark-master sc://spark-connect:15002
    """
    from pipeline.build import build as run_build
    from pipeline.commands.common import check_choice
    from pipeline.engines import ENGINES

    check_choice("--engine", engine, ENGINES)
    if spark_master is not None and engine != "spark":
        raise UsageError("--spark-master needs --engine spark")
    cfg = load_config(config)
    with open_db(db, memory_limit=cfg["engine"]["memory_limit"]) as database:
        if engine == "spark":
            from pipeline.engines.spark import DEFAULT_MASTER, build_spark

            summary, _ = build_spark(database, cfg, master=spark_master or DEFAULT_MASTER, stop_session=True)
        else:
            summary = run_build(database, cfg, "full" if full_refresh else "auto")
    if as_json:
        typer.echo(to_json(summary.as_dict()))
        return
    typer.echo(
        f"events {summary.n_events:,}  users {summary.n_users:,}  sessions {summary.n_sessions:,}  "
        f"unmapped events {summary.n_unmapped_events:,}  ({summary.mode} build)"
    )
    typer.echo("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.seconds.items()))


@app.command()
def sessions(
    db: DbOption = Path(DEFAULT_DB),
    limit: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 20,
    fmt: FormatOption = "table",
) -> None:
    """Show sessions (newest first).

    Example: journeys sessions --limit 5 --format json
    """
    with open_db(db, read_only=True) as database:
        frame = database.query(
            "select * from staging.stg_sessions order by started_at desc, session_key limit $limit",
            {"limit": limit},
        )
    emit(frame, check_format(fmt))


@app.command()
def report(
    db: DbOption = Path(DEFAULT_DB),
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html (and a copy dated by the data).")] = Path(
        "reports"
    ),
    config: ConfigOption = None,
) -> None:
    """Write the self-contained HTML report (works offline; open it in any browser).

    Writes <out>/report.html and <out>/report-<last day of data>.html, each atomically.
    Example: journeys report --db data/sample.duckdb --out reports
    """
    from pipeline.report import write_report

    cfg = load_config(config)  # [engine] memory_limit
    with open_db(db, read_only=True, memory_limit=cfg["engine"]["memory_limit"]) as database:
        if sys.stderr.isatty():
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            with Progress(SpinnerColumn(), TextColumn("report: {task.description}"), TimeElapsedColumn(),
                          transient=True) as progress:
                task = progress.add_task("starting", total=None)
                path = write_report(database, out, on_section=lambda name: progress.update(task, description=name))
        else:
            path = write_report(database, out)  # quiet in cron and pipes
    typer.echo(f"wrote {path}")


@app.command()
def run(
    landing: Annotated[Path, typer.Option("--landing", help="Folder where new files arrive.")] = Path("data/landing"),
    db: DbOption = Path(DEFAULT_DB),
    out: Annotated[Path, typer.Option("--out", help="Report folder.")] = Path("reports"),
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the report.")] = False,
    config: ConfigOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The scheduled batch: load new files from --landing, rebuild, refresh the report.

    Exit codes: 0 ok, 1 a file was rejected or the run failed, 3 another run holds the lock.
    Example (cron): */15 * * * * cd /srv/journeys && .venv/bin/journeys run --landing /data/landing
    """
    from pipeline.run import RunLocked, batch_run

    cfg = load_config(config)
    try:
        summary = batch_run(db, landing, cfg, None if no_report else out)
    except RunLocked as exc:
        typer.echo(f"locked: {exc}", err=True)
        raise typer.Exit(3) from None
    typer.echo(to_json(summary.as_dict()) if as_json else summary.line())
    for message in summary.messages:
        typer.echo(f"error: {message}", err=True)
    if summary.status != "ok":
        raise typer.Exit(1)


# Command groups in pipeline/commands/, registered on `app` when imported.
for _module in ("paths", "value", "metrics", "funnels", "export", "privacy"):
    importlib.import_module(f"pipeline.commands.{_module}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turn known errors into one line and an exit code."""
    try:
        app(args=argv, standalone_mode=True)
    except SystemExit:
        raise
    except UsageError as exc:
        typer.echo(f"usage error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # every failure is one clear line; --debug shows the traceback
        if _state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)

