"""The same journeys written as canonical CSV, GA4 (NDJSON and Parquet), Segment, Snowplow and REES46
give identical sessions, funnels and transition graphs once loaded and built."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files
from tests.ingest import formats

SESSION_SOURCE_COLUMNS = {"source_session_id"}  # the source's own session id differs by format, by design

FUNNEL_SQL = """
with firsts as (
    select
        user_key,
        min(ts) filter (where event_name = 'view_item') as viewed_at
    from staging.stg_events
    group by user_key
),
carts as (
    select f.user_key, f.viewed_at, min(e.ts) as carted_at
    from firsts as f
    left join staging.stg_events as e
        on e.user_key = f.user_key and e.event_name = 'add_to_cart' and e.ts > f.viewed_at
    group by f.user_key, f.viewed_at
),
purchases as (
    select c.user_key, c.viewed_at, c.carted_at, min(e.ts) as purchased_at
    from carts as c
    left join staging.stg_events as e
        on e.user_key = c.user_key and e.event_name = 'purchase' and e.ts > c.carted_at
    group by c.user_key, c.viewed_at, c.carted_at
)
select
    count(viewed_at) as n_view_item,
    count(carted_at) as n_add_to_cart,
    count(purchased_at) as n_purchase
from purchases
"""

TRANSITIONS_SQL = """
select event_name as from_event, next_event as to_event, count(*) as n
from (
    select
        event_name,
        lead(event_name) over (partition by session_key order by session_event_index) as next_event
    from staging.stg_events
)
where next_event is not null
group by event_name, next_event
order by from_event, to_event
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """One database per format, each with the logical journeys loaded and built (both session modes)."""
    root = tmp_path_factory.mktemp("equivalence")
    users = formats.journeys()
    out: dict[str, dict[str, dict[str, pl.DataFrame]]] = {}
    paths = {}
    for name, (filename, writer) in formats.WRITERS.items():
        folder = root / name
        folder.mkdir()
        paths[name] = writer(users, folder / filename)
    paths["ga4_parquet"] = formats.ga4_parquet(paths["ga4"], root / "events_20250106.parquet")
    from pipeline import config

    for name, path in paths.items():
        db = Database(root / f"{name}.duckdb")
        [result] = ingest_files(db, [path])
        expected_format = "ga4" if name == "ga4_parquet" else name
        assert (result.status, result.format, result.n_quarantined) == ("loaded", expected_format, 0), result
        assert result.n_loaded == sum(len(s.steps) for u in users for s in u.sessions), result
        out[name] = {}
        for mode in ("inactivity", "source"):
            cfg = config.defaults()
            cfg["sessions"]["session_source"] = mode
            build(db, cfg)
            out[name][mode] = {
                "sessions": db.table("staging.stg_sessions").sort("session_key"),
                "funnel": db.query(FUNNEL_SQL),
                "transitions": db.query(TRANSITIONS_SQL),
            }
        db.close()
    return out


FORMATS = ["ga4", "ga4_parquet", "segment", "snowplow", "rees46"]


@pytest.mark.parametrize("mode", ["inactivity", "source"])
@pytest.mark.parametrize("name", FORMATS)
def test_sessions_are_identical_to_the_canonical_load(loaded, name, mode):
    base = formats.NOT_CARRIED.get(name.removesuffix("_parquet"), set()) | SESSION_SOURCE_COLUMNS
    expected = loaded["canonical"][mode]["sessions"]
    got = loaded[name][mode]["sessions"]
    columns = [c for c in expected.columns if c not in base]
    assert got.height == expected.height == 8
    assert got.select(columns).equals(expected.select(columns)), (
        got.select(columns).to_dicts(), expected.select(columns).to_dicts())


@pytest.mark.parametrize("name", FORMATS)
def test_funnels_and_transition_graphs_are_identical(loaded, name):
    for mode in ("inactivity", "source"):
        expected, got = loaded["canonical"][mode], loaded[name][mode]
        assert got["funnel"].equals(expected["funnel"]), (name, mode)
        assert got["transitions"].equals(expected["transitions"]), (name, mode, got["transitions"].to_dicts())


def test_the_expected_answers_themselves(loaded):
    # Hand-counted from formats.journeys(): C1, C2, C4 buy after a cart; C3 carts but removes; C5 only views.
    canonical = loaded["canonical"]["source"]
    assert canonical["funnel"].row(0) == (5, 4, 3)
    edges = {(r["from_event"], r["to_event"]): r["n"] for r in canonical["transitions"].to_dicts()}
    assert edges == {
        ("view_item", "add_to_cart"): 5, ("add_to_cart", "purchase"): 3, ("view_item", "view_item"): 3,
        ("add_to_cart", "remove_from_cart"): 1, ("remove_from_cart", "view_item"): 1, ("view_item", "purchase"): 1,
    }
    sessions = canonical["sessions"].select("session_key", "channel", "n_events", "revenue")
    assert [(k, c, n, float(r)) for k, c, n, r in sessions.rows()] == [
        ("C1:1", "Paid Search", 3, 25.0), ("C2:1", "Paid Social", 3, 0.0), ("C2:2", "Email", 3, 89.0),
        ("C3:1", "Direct", 4, 0.0), ("C4:1", "Organic Search", 3, 34.5), ("C4:2", "Direct", 2, 25.0),
        ("C4:3", "Direct", 1, 0.0), ("C5:1", "Paid Search", 3, 0.0),
    ]
