"""Incremental builds give the same tables as a full rebuild: 30 daily batches with late and
duplicate events (real DuckDB files, the simulator's data)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipeline import config
from pipeline.build import build, discover_models
from pipeline.db import Database
from pipeline.ingest import ingest_files
from pipeline.simulate import simulate
from tests.conftest import make_journeys

GRAIN = {
    "staging.stg_identity": ["anonymous_id"],
    "staging.stg_events": ["event_id"],
    "staging.stg_sessions": ["session_key"],
    "staging.stg_users": ["user_key"],
    "staging.stg_touchpoints": ["user_key", "user_step_index"],
    "staging.stg_stage_visits": ["user_key", "entry_step_index"],
    "staging.stg_user_stages": ["user_key", "stage"],
    "staging.stg_customers": ["user_key"],
}


def _batches(tmp_path) -> list:
    events = simulate(users=700, days=30, seed=11).with_columns(pl.col("ts").dt.date().alias("day"))
    days = sorted(events["day"].unique())
    assert len(days) >= 30
    # 5% of events arrive late (two days later); 2% arrive twice (again in the next batch)
    late = events.sample(fraction=0.05, seed=1)["event_id"].implode()
    again = events.sample(fraction=0.02, seed=2)["event_id"].implode()
    files = []
    for i, day in enumerate(days[:30]):
        on_time = events.filter((pl.col("day") == day) & ~pl.col("event_id").is_in(late))
        late_now = events.filter(pl.col("event_id").is_in(late) & (pl.col("day") == days[i - 2])) if i >= 2 else None
        duplicate = events.filter(pl.col("event_id").is_in(again) & (pl.col("day") == days[i - 1])) if i else None
        batch = pl.concat([f for f in (on_time, late_now, duplicate) if f is not None]).drop("day")
        path = tmp_path / f"batch_{i:02d}.parquet"
        batch.write_parquet(path)
        files.append(path)
    return files


def _tables(db: Database) -> dict[str, pl.DataFrame]:
    staging = {f"staging.{m.split('/')[-1].removesuffix('.sql')}" for m in discover_models()["staging"]}
    assert staging == set(GRAIN), "every staging model is compared: give a new one its grain here"
    names = list(GRAIN) + [
        f"{layer}.{m.split('/')[-1].removesuffix('.sql')}"
        for layer, models in discover_models().items() if layer != "staging" for m in models
    ]
    out = {}
    for name in names:
        frame = db.table(name)
        out[name] = frame.sort(GRAIN.get(name, frame.columns), nulls_last=True)
    return out


def test_thirty_incremental_batches_equal_one_full_build(tmp_path):
    files = _batches(tmp_path)
    cfg = config.defaults()
    inc = Database(tmp_path / "incremental.duckdb")
    modes, compacted = [], []
    for path in files:
        ingest_files(inc, [path])
        summary = build(inc, cfg)
        modes.append(summary.mode)
        compacted.append(summary.compacted)
    assert modes[0] == "full" and set(modes[1:]) == {"incremental"}
    # the deleted rows are reclaimed on every 7th incremental build (COMPACT_EVERY); the tables
    # below are equal either way
    assert [i for i, c in enumerate(compacted) if c] == [7, 14, 21, 28]
    assert inc.scalar("select current_setting('max_vacuum_tasks')") == Database(":memory:").scalar(
        "select current_setting('max_vacuum_tasks')")  # the build put the setting back
    full = Database(tmp_path / "full.duckdb")
    ingest_files(full, files)
    assert build(full, cfg, "full").mode == "full"
    got, expected = _tables(inc), _tables(full)
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name].equals(expected[name]), name
    assert got["staging.stg_events"].height > 5000
    # a run with nothing new does nothing; a changed config forces a full build
    assert build(inc, cfg).mode == "up_to_date"
    cfg["sessions"]["timeout_minutes"] = 45
    assert build(inc, cfg).mode == "full"


def test_identity_links_that_later_files_make_or_move_equal_a_full_build(tmp_path):
    # The day build recomputes only the links of anonymous_ids that new events carry with a user_id
    # (pipeline/build.py _updated_identity); every link here must come out as a full build has it.
    def batch(name: str, spec: dict) -> Path:
        frame = make_journeys(spec).with_columns(
            (pl.lit(name + "-") + pl.col("event_id")).alias("event_id"))
        path = tmp_path / f"{name}.parquet"
        frame.write_parquet(path)
        return path

    anon = {"user_id": None}
    files = [
        # a1 browses, then u1 signs in on a1 (a1 -> u1); a3 stays anonymous; u4 has no cookie
        batch("b1", {"a1": [("page_view", 0, {**anon, "anonymous_id": "a1"})],
                     "u1": [("login", 30, {"anonymous_id": "a1"}), ("purchase", 40, {"anonymous_id": "a1"})],
                     "a3": [("page_view", 5, {**anon, "anonymous_id": "a3"})],
                     "u4": [("page_view", 6)]}),
        # a late event: u2 used a1 before u1 did, so a1 moves to u2 (first by time), with 2 links
        batch("b2", {"u2": [("login", 10, {"anonymous_id": "a1"})]}),
        # a3 signs in as u4 (a new link, a3's earlier events move to u4); a1 browses anonymously
        batch("b3", {"u4": [("login", 90, {"anonymous_id": "a3"})],
                     "a1": [("page_view", 95, {**anon, "anonymous_id": "a1"})]}),
        # u1 signs in on a1 again: one more link, the first stays u2's
        batch("b4", {"u1": [("login", 120, {"anonymous_id": "a1"})]}),
        # only u2 is touched: a1 (linked to u2) carries u1's own events too, which stay u1's and
        # must not be copied into the day build's rows of u2's identity
        batch("b5", {"u2": [("page_view", 130)]}),
    ]
    cfg = config.defaults()
    inc = Database(tmp_path / "incremental.duckdb")
    modes = []
    for path in files:
        ingest_files(inc, [path])
        modes.append(build(inc, cfg).mode)
    assert modes == ["full", "incremental", "incremental", "incremental", "incremental"]
    assert inc.query("select anonymous_id, user_id, n_links from staging.stg_identity order by 1").rows() == [
        ("a1", "u2", 4), ("a3", "u4", 1)]
    full = Database(tmp_path / "full.duckdb")
    ingest_files(full, files)
    build(full, cfg, "full")
    got, expected = _tables(inc), _tables(full)
    for name in expected:
        assert got[name].equals(expected[name]), name


def test_incremental_touches_only_affected_users(tmp_path):
    files = _batches(tmp_path)
    db = Database(tmp_path / "j.duckdb")
    ingest_files(db, files[:-1])
    build(db, config.defaults())
    ingest_files(db, files[-1:])
    summary = build(db, config.defaults())
    assert summary.mode == "incremental"
    assert 0 < summary.n_affected_users < summary.n_users / 2


@pytest.mark.parametrize("mode", ["auto", "full"])
def test_failed_build_leaves_previous_tables(tmp_path, mode):
    db = Database(tmp_path / "j.duckdb")
    files = _batches(tmp_path)
    ingest_files(db, files[:3])
    build(db, config.defaults())
    before = db.table("staging.stg_sessions")
    ingest_files(db, files[3:5])
    bad = config.defaults()
    bad["mapping"]["stages"] = str(tmp_path / "missing.csv")
    with pytest.raises(Exception, match="does not exist"):
        build(db, bad, mode)
    assert db.table("staging.stg_sessions").equals(before)


def test_a_ga4_day_reload_that_removes_events_forces_a_full_build(tmp_path):
    import json

    from tests.conftest import REPO

    day = REPO / "tests" / "fixtures" / "adapters" / "ga4" / "events_20250106.json"
    db = Database(tmp_path / "j.duckdb")
    ingest_files(db, [day])
    build(db, config.defaults())
    # GA4 rewrote the day without its scroll events: their users may not be in the new file at all
    lines = [json.loads(x) for x in day.read_text().splitlines() if x.startswith("{") and x.endswith("}")]
    rewrite = tmp_path / "again" / "events_20250106.json"
    rewrite.parent.mkdir()
    rewrite.write_text("".join(json.dumps(x) + "\n" for x in lines if x["event_name"] != "scroll"))
    [result] = ingest_files(db, [rewrite])
    assert result.n_replaced > 0
    assert build(db, config.defaults()).mode == "full"
    assert db.scalar("select count(*) from staging.stg_events where event_name = 'scroll'") == 0
    assert db.scalar("select count(*) from staging.stg_events") == db.scalar("select count(*) from raw.events")
