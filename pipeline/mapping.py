"""The mapping files analysts edit as data, checked before any model runs.

Reads the five mapping CSVs (channel groups, touchpoint rules, channel touchpoints, touchpoint
stages, stages) through DuckDB; writes nothing. A missing column, an unknown touchpoint or stage, a
bad number, a value listed twice that must name one row (a priority, a touchpoint, a stage) or an
invalid regex is a ``ConfigError`` naming the file, the row and the value, with the closest valid
name.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError
from pipeline.db import Database, DatabaseError

COLUMNS = {
    "channel_groups": ("priority", "channel", "source_regex", "medium_regex"),
    "touchpoint_rules": ("priority", "touchpoint", "event_name_regex", "page_regex"),
    "channel_touchpoints": ("channel", "touchpoint"),
    "touchpoint_stages": ("touchpoint", "stage"),
    "stages": ("stage", "stage_order", "phase"),
}
PHASES = ("before_purchase", "during_purchase", "after_purchase")
REGEX_COLUMNS = ("source_regex", "medium_regex", "event_name_regex", "page_regex")


def _hint(value: str, options: list[str]) -> str:
    close = difflib.get_close_matches(value, options, n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def read_mapping(db: Database, name: str, path: Path) -> list[dict[str, str | None]]:
    if not path.is_file():
        raise ConfigError(f"mapping.{name}: file {path} does not exist")
    try:
        frame = db.query("select * from read_csv($path, all_varchar = true, header = true)", {"path": str(path)})
    except DatabaseError as exc:
        raise ConfigError(f"mapping.{name}: {path} is not a readable CSV: {exc}") from None
    missing = [c for c in COLUMNS[name] if c not in frame.columns]
    if missing:
        raise ConfigError(f"mapping.{name}: {path} lacks column(s) {', '.join(missing)}")
    return frame.select(COLUMNS[name]).to_dicts()


def validate_mappings(db: Database, paths: Mapping[str, Path]) -> None:
    tables = {name: read_mapping(db, name, paths[name]) for name in COLUMNS}
    stages = [r["stage"] for r in tables["stages"]]
    touchpoints = [r["touchpoint"] for r in tables["touchpoint_stages"]]

    def where(name: str, row: int) -> str:
        return f"mapping.{name}: {paths[name]} row {row + 2}"  # +1 header, +1 one-based

    for name, rows in tables.items():
        for i, row in enumerate(rows):
            for column in COLUMNS[name]:
                value = row[column]
                if value is None and column not in ("source_regex", "medium_regex", "page_regex"):
                    raise ConfigError(f"{where(name, i)}: {column} is empty")
                if column in ("priority", "stage_order") and not str(value).lstrip("-").isdigit():
                    raise ConfigError(f"{where(name, i)}: {column} must be a whole number, got {value!r}")
                if column in REGEX_COLUMNS and value is not None:
                    try:
                        db.scalar("select regexp_matches('', $pattern)", {"pattern": value})
                    except DatabaseError as exc:
                        raise ConfigError(f"{where(name, i)}: {column} {value!r} is not a valid regex: {exc}") from None
            if name in ("touchpoint_rules", "channel_touchpoints") and row["touchpoint"] not in touchpoints:
                raise ConfigError(
                    f"{where(name, i)}: unknown touchpoint {row['touchpoint']!r} (not in touchpoint_stages)"
                    + _hint(str(row["touchpoint"]), touchpoints)
                )
            if name == "touchpoint_stages" and row["stage"] not in stages:
                raise ConfigError(
                    f"{where(name, i)}: unknown stage {row['stage']!r}" + _hint(str(row["stage"]), stages)
                )
            if name == "stages" and row["phase"] not in PHASES:
                raise ConfigError(f"{where(name, i)}: phase {row['phase']!r} must be one of {', '.join(PHASES)}")
    # Values that must name one row. "The first rule by priority" must be one rule: of two rules
    # with one priority that both match, the build would pick either, so a full and a day build
    # could map an event differently. A touchpoint has one stage, a stage one order.
    unique = (("channel_groups", "priority"), ("touchpoint_rules", "priority"),
              ("touchpoint_stages", "touchpoint"), ("stages", "stage"))
    for name, key in unique:
        seen: dict[Any, int] = {}
        for i, row in enumerate(tables[name]):
            value = int(str(row[key])) if key == "priority" else row[key]  # '070' is priority 70
            if value in seen:
                raise ConfigError(
                    f"{where(name, i)}: {key} {value!r} is also the {key} of row {seen[value] + 2}; "
                    f"give each row its own {key}"
                )
            seen[value] = i
