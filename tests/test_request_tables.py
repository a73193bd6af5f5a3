"""Request temp tables (``Database.materialize_request``) are reused only while query, values and data stay the same."""

from __future__ import annotations

from pipeline.build import build
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
