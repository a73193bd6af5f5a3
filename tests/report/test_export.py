"""``journeys export``: every table, CSV injection neutralised, Parquet exact, files renamed into place."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipeline.build import build
from pipeline.db import Database
from pipeline.export import ExportError, export, exportables
from tests.conftest import REPO, load_events, make_journeys

FORMULAS = ["=cmd|' /C calc'!A0", "+SUM(1)", "-1+2", "@HYPERLINK(x)", "\tTAB", "\rCR"]


@pytest.fixture
def built(tmp_path, cfg) -> Path:
    path = tmp_path / "export.duckdb"
    spec = {
        f"u{i}": [("page_view", 0, {"campaign": formula, "page_url": f"https://shop.example/{i}"}),
                  ("view_item", 1), ("add_to_cart", 2),
                  ("purchase", 3, {"revenue": 10.0 + i, "currency": "EUR"})]
        for i, formula in enumerate(FORMULAS)
    }
    with Database(path) as db:
        load_events(db, make_journeys(spec))
        build(db, cfg)
    return path


def test_csv_cells_starting_with_formula_characters_are_neutralised(built, tmp_path):
    out = tmp_path / "out"
    with Database(built, read_only=True) as db:
        results = export(db, ["stg_events", "stg_sessions"], "csv", out)
    assert [Path(r.path).name for r in results] == ["stg_events.csv", "stg_sessions.csv"]
    events = pl.read_csv(out / "stg_events.csv", infer_schema=False)
    campaigns = set(events["campaign"].drop_nulls())
    assert campaigns == {"'" + f for f in FORMULAS}
    revenue = pl.read_csv(out / "stg_events.csv")["revenue"].drop_nulls()
    assert revenue.sum() == pytest.approx(sum(10.0 + i for i in range(len(FORMULAS))))  # numbers untouched
    assert not list(out.glob(".*"))  # no temp file left behind


def test_parquet_keeps_the_data_exact(built, tmp_path):
    with Database(built, read_only=True) as db:
        export(db, ["staging.stg_events"], "parquet", tmp_path)
        expected = db.query("select * from staging.stg_events")
    got = pl.read_parquet(tmp_path / "stg_events.parquet")
    assert set(got["campaign"].drop_nulls()) == set(FORMULAS)
    assert got.height == expected.height


def test_all_exports_tables_and_analyses(built, tmp_path):
    with Database(built, read_only=True) as db:
        names = [e.name for e in exportables(db)]
        results = export(db, ["all"], "csv", tmp_path)
    assert {"stg_events", "stg_sessions", "stg_users", "stg_touchpoints", "mart_customers", "manifest",
            "quarantine", "transitions", "attribution"} <= set(names)
    written = {r.name for r in results if r.error is None}
    skipped = {r.name: r.error for r in results if r.error is not None}
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == sorted(f"{n}.csv" for n in written)
    # six one-order customers: the CLV models cannot be fitted, every table still can
    assert set(skipped) <= {"clv_predictions", "value_by_segment"}, skipped
    assert written >= {n for n in names if n not in skipped}


def test_unknown_table_suggests_a_name(built):
    with Database(built, read_only=True) as db, pytest.raises(ExportError, match="did you mean 'stg_sessions'"):
        export(db, ["stg_sesions"], "csv", Path("/nonexistent"))


def test_cli_export_and_help(built, tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=REPO,
                              check=False)

    done = cli("export", "mart_customers", "--db", str(built), "--format", "parquet", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mart_customers.parquet").is_file()
    bad = cli("export", "nope", "--db", str(built), "--out", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown table" in bad.stderr
    fmt = cli("export", "all", "--db", str(built), "--format", "xlsx", "--out", str(tmp_path))
    assert fmt.returncode == 2 and "csv, parquet" in fmt.stderr
    for command in ("export", "report"):
        assert "Example: journeys " + command in cli(command, "--help").stdout
