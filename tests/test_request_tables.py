"""Request temp tables (``Database.materialize_request``) are reused only while query, values and data stay the same."""

from __future__ import annotations

import pytest

from pipeline.build import build
from pipeline.db import DatabaseError
from pipeline.metrics.conversion import prepare_units
from pipeline.paths import PathOptions, prepare_steps
from tests.conftest import load_events, make_journeys


def _units(db) -> list[tuple]:
    return db.query("select unit_id, is_converted from metric_units order by unit_id").rows()


def test_units_are_made_again_after_a_build_and_for_other_values(db, cfg):
    load_events(db, make_journeys({"u1": [("page_view", 0), ("purchase", 5, {"revenue": 10.0})]}))
    build(db, cfg)
    prepare_units(db, level="user")
    assert _units(db) == [("u1", True)]

    # same request, same data: the table is kept (a row added by hand survives: it was not rebuilt)
    db.execute("insert into metric_units (unit_id, is_converted) values ('marker', false)")
    prepare_units(db, level="user")
    assert ("marker", False) in _units(db)

    # other values: made again
    prepare_units(db, level="session")
    assert ("marker", False) not in _units(db) and len(_units(db)) == 1

    # new data and a build: made again, with the new user (literal rows have no manifest entry, so
    # the build is asked to be full)
    load_events(db, make_journeys({"u2": [("page_view", 0)]}))
    prepare_units(db, level="session")
    build(db, cfg, mode="full")
    prepare_units(db, level="session")
    assert len(_units(db)) == 2


def test_journey_steps_follow_the_options(db, cfg):
    load_events(db, make_journeys({"u1": [("page_view", 0), ("view_item", 1), ("purchase", 2, {"revenue": 5.0})]}))
    build(db, cfg)
    prepare_steps(db, PathOptions(scope="user", level="touchpoint"))
    all_steps = db.scalar("select count(*) from journey_steps")
    prepare_steps(db, PathOptions(scope="user", level="event"))
    assert db.scalar("select count(*) from journey_steps") == all_steps - 1  # no channel step at event level
    prepare_steps(db, PathOptions(scope="user", level="touchpoint"))
    assert db.scalar("select count(*) from journey_steps") == all_steps


def _temp_tables(db) -> set[str]:
    return set(db.query("select table_name from duckdb_tables() where temporary")["table_name"].to_list())


def test_kept_requests_come_back_without_being_made_again_and_the_oldest_goes(db, cfg):
    load_events(db, make_journeys({"u1": [("page_view", 0), ("purchase", 5, {"revenue": 10.0})],
                                   "u2": [("page_view", 0), ("page_view", 60)]}))
    build(db, cfg)

    def ask(value: int) -> None:
        db.materialize_request("probe", "select $v as v, 'first' as made", {"v": value}, keep=3)

    def mark() -> None:
        db.execute("update probe set made = 'kept'")

    ask(1)
    mark()
    ask(2)
    mark()
    ask(3)
    assert db.scalar("select v from probe") == 3
    # 1 and 2 are parked: asked again, each comes back as it was (the mark shows it was not made again)
    ask(1)
    assert db.query("select v, made from probe").rows() == [(1, "kept")]
    ask(2)
    assert db.query("select v, made from probe").rows() == [(2, "kept")]
    # a fourth request: three are kept (4 current, 1 and 2 parked), so 3, the least recent, is dropped
    ask(4)
    assert len([t for t in _temp_tables(db) if t.startswith("probe")]) == 3
    ask(3)  # made again; parking 4 pushes out 1, now the least recent
    assert db.query("select v, made from probe").rows() == [(3, "first")]
    ask(2)
    assert db.query("select v, made from probe").rows() == [(2, "kept")]
    ask(1)
    assert db.query("select v, made from probe").rows() == [(1, "first")]
    mark()

    # a build changes the data version: what was parked is dropped, and the request is made again
    build(db, cfg, mode="full")
    ask(1)
    assert db.query("select v, made from probe").rows() == [(1, "first")]
    assert [t for t in _temp_tables(db) if t.startswith("probe")] == ["probe"]


def test_a_failed_request_leaves_no_table_that_passes_for_it(db, cfg):
    load_events(db, make_journeys({"u1": [("page_view", 0)]}))
    build(db, cfg)
    db.materialize_request("probe", "select $v as v", {"v": 1}, keep=2)
    with pytest.raises(DatabaseError):
        db.materialize_request("probe", "select $v::integer as v", {"v": "not a number"}, keep=2)
    assert "probe" not in _temp_tables(db)
    db.materialize_request("probe", "select $v as v", {"v": 1}, keep=2)  # the parked one comes back
    assert db.scalar("select v from probe") == 1


def test_release_memory_drops_the_requests_and_keeps_the_memory_limit(db, cfg):
    load_events(db, make_journeys({"u1": [("page_view", 0), ("purchase", 5, {"revenue": 10.0})]}))
    build(db, cfg)
    default = db.scalar("select current_setting('memory_limit')")
    prepare_units(db, level="user")
    db.execute("insert into metric_units (unit_id, is_converted) values ('marker', false)")
    prepare_units(db, level="session")  # the user units wait under a parked name
    prepare_steps(db, PathOptions(scope="session"))
    temp = "select table_name from duckdb_tables() where temporary"
    assert any("__parked_" in t for t in db.query(temp)["table_name"])
    db.release_memory()
    assert db.query(temp).height == 0
    assert db.scalar("select current_setting('memory_limit')") == default
    # the cache forgot them: the user units are made again, without the row added by hand
    prepare_units(db, level="user")
    assert _units(db) == [("u1", True)]
    db.set_memory_limit("3GB")
    db.release_memory()
    assert db.scalar("select current_setting('memory_limit')") == "2.7 GiB"  # 3 GB, as DuckDB shows it
