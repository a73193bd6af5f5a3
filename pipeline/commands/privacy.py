"""CLI: ``journeys forget USER_ID...`` (right to erasure).

Reads the database, the config and ``JOURNEYS_PSEUDONYM_KEY``; writes the database (through
``pipeline.privacy.forget``, under the run lock) and rewrites the report/export files that exist in
``--out`` and ``--exports``. Never prints the ids it erases (output and logs stay free of them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands.common import DEFAULT_DB, ConfigOption, DbOption, JsonFlag, UsageError, app, load_config
from pipeline.output import to_json


@app.command()
def forget(
    user_ids: Annotated[
        list[str] | None,
        typer.Argument(help="User ids (or anonymous ids) to erase; '-' reads them from standard input, one a line."),
    ] = None,
    db: DbOption = Path(DEFAULT_DB),
    out: Annotated[
        Path, typer.Option("--out", help="Report folder: report.html there is written again if it exists.")
    ] = Path("reports"),
    exports: Annotated[
        Path, typer.Option("--exports", help="Export folder: the export files there are written again.")
    ] = Path("exports"),
    no_build: Annotated[
        bool, typer.Option("--no-build", help="Do not rebuild now (the next build is a full one anyway).")
    ] = False,
    no_compact: Annotated[
        bool, typer.Option("--no-compact", help="Keep the database file (erased bytes may stay in free blocks).")
    ] = False,
    config: ConfigOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Erase users everywhere (raw, quarantine, staging, marts, report, exports) and keep them out.

    Also erases the anonymous ids stitched to them. Their keyed hashes go to raw.forgotten, so rows of
    theirs in files loaded later (or again) are dropped and counted as n_forgotten. Needs
    JOURNEYS_PSEUDONYM_KEY (the forgotten list holds keyed hashes, never the ids).
    Example: JOURNEYS_PSEUDONYM_KEY=... journeys forget customer-42 customer-77 --db data/journeys.duckdb
    Example: cut -d, -f1 erasure_requests.csv | journeys forget -
    """
    import sys

    from pipeline.privacy import PrivacyError
    from pipeline.privacy import forget as run_forget

    ids = list(user_ids or [])
    if ids == ["-"]:
        ids = [line.strip() for line in sys.stdin if line.strip()]
    if not ids:
        raise UsageError("name at least one user id (or '-' to read them from standard input)")
    cfg = load_config(config)
    from pipeline.run import RunLocked

    try:
        summary = run_forget(
            db, ids, cfg, report_dir=out, export_dir=exports, rebuild=not no_build, compact=not no_compact
        )
    except RunLocked as exc:
        typer.echo(f"locked: {exc}", err=True)
        raise typer.Exit(3) from None
    except PrivacyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(to_json(summary.as_dict()) if as_json else summary.line())
