"""What every CLI command shares: the app, the --db/--config/--format options, usage errors.

Reads nothing itself; command modules import from here so that ``pipeline.cli`` stays a thin list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline import config as config_mod
from pipeline.output import Format

DEFAULT_DB = "data/journeys.duckdb"

app = typer.Typer(
    help="Mine customer journeys from clickstream data. Example: journeys ingest data/sample/*.csv.gz",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DbOption = Annotated[
    Path,
    typer.Option("--db", envvar="JOURNEYS_DB", help="DuckDB file (env JOURNEYS_DB).", dir_okay=False),
]
ConfigOption = Annotated[
    Path | None, typer.Option("--config", help="journeys.toml (default: ./journeys.toml if present).")
]
FormatOption = Annotated[str, typer.Option("--format", help="table | csv | json")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


class UsageError(Exception):
    """A bad argument: exit code 2."""


def check_format(value: str) -> Format:
    if value not in ("table", "csv", "json"):
        raise UsageError(f"--format must be table, csv or json, not {value!r}")
    return value  # type: ignore[return-value]


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UsageError(f"{option} must be one of {', '.join(choices)}, not {value!r}")
    return value


def load_config(path: Path | None) -> dict:
    return config_mod.load(path)


def open_db(db: Path, *, read_only: bool = False, memory_limit: str = ""):
    from pipeline.db import Database

    if not read_only:
        from pipeline.privacy import check_output_path

        check_output_path(db)  # never create or write a database in a system folder
    return Database(db, read_only=read_only, memory_limit=memory_limit)
