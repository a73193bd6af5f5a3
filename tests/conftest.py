"""Shared test helpers: real DuckDB files in tmp dirs and a declarative journey builder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipeline import config
from pipeline.db import Database
from pipeline.ingest import ensure_raw_tables
from pipeline.schema import CANONICAL_COLUMNS

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DATASETS = SHARED / "datasets"
T0 = dt.datetime(2025, 1, 6, 9, 0, 0)


def make_journeys(spec: dict[str, list[tuple]], start: dt.datetime = T0) -> pl.DataFrame:
    """Canonical events from readable journeys.

    ``{"u1_abandons_cart": [("view_item", 0), ("add_to_cart", 2, {"device": "mobile"})]}``: each step is
    (event_name, minutes after ``start``[, column overrides]); the journey name is the user_id unless an
    override sets user_id/anonymous_id. event_id is ``<journey>-<step index>``.
    """
    rows: list[dict[str, Any]] = []
    for journey, steps in spec.items():
        for i, step in enumerate(steps):
            name, minutes, *rest = step
            row: dict[str, Any] = {c: None for c in CANONICAL_COLUMNS}
            row.update(
                event_id=f"{journey}-{i}", user_id=journey, ts=start + dt.timedelta(minutes=minutes),
                event_name=name, raw_event_name=name,
            )
            if rest:
                row.update(rest[0])
            rows.append(row)
    schema = {c: pl.Utf8 for c in CANONICAL_COLUMNS}
    schema.update(ts=pl.Datetime("us"), revenue=pl.Float64)
    return pl.DataFrame(rows, schema=schema)


def load_events(db: Database, frame: pl.DataFrame) -> None:
    """Put literal canonical rows straight into raw.events (to test one SQL model alone)."""
    ensure_raw_tables(db)
    db.register("literal_events", frame)
    try:
        db.execute(
            "insert into raw.events select " + ", ".join(
                f"cast({c} as {t})" for c, t in CANONICAL_COLUMNS.items()
            # a new file_id per call, as ingest gives each file: (file_id, row_number) is a row's key
            ) + ", (select coalesce(max(file_id), 0) + 1 from raw.events), row_number() over () from literal_events"
        )
    finally:
        db.unregister("literal_events")


@pytest.fixture
def db(tmp_path: Path):
    database = Database(tmp_path / "test.duckdb")
    yield database
    database.close()


@pytest.fixture
def cfg() -> dict:
    return config.defaults()


def write_csv(path: Path, frame: pl.DataFrame) -> Path:
    frame.write_csv(path)
    return path
