"""End to end on data/sample/: ingest every file, build, and recover the planted behaviours.

The planted answers and their exact definitions are in pipeline.simulate.PLANTED and
data/sample/README.md; tolerances are binomial standard errors of the planted rate.
"""

from __future__ import annotations

import math

import pytest

from pipeline import config
from pipeline.build import build
from pipeline.db import Database, load_sql
from pipeline.ingest import ingest_files
from pipeline.paths import AS_PREPARED, LEVELS, SCOPES, PathOptions, loops, prepare_steps, transitions
from pipeline.simulate import PLANTED
from tests.conftest import REPO

SAMPLE_FILES = sorted((REPO / "data" / "sample").glob("*.csv.gz"))


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    db = Database(tmp_path_factory.mktemp("e2e") / "sample.duckdb")
    results = ingest_files(db, SAMPLE_FILES)
    summary = build(db, config.defaults())
    yield db, results, summary
    db.close()


def _se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def test_everything_loads_and_sessions_match_the_source(sample):
    db, results, summary = sample
    assert len(results) == 13 and all(r.status == "loaded" for r in results)
    assert sum(r.n_loaded for r in results) == 97_484 and sum(r.n_quarantined for r in results) == 0
    assert (summary.n_events, summary.n_users, summary.n_sessions, summary.n_unmapped_events) == (
        97_484, 6_000, 19_832, 0)
    # the 30-minute inactivity rule recovers the generator's session ids exactly
    mismatched = db.scalar(
        "select count(*) from (select session_key from staging.stg_events group by session_key "
        "having count(distinct source_session_id) <> 1)"
    )
    assert mismatched == 0
    assert db.scalar("select count(distinct source_session_id) from staging.stg_events") == 19_832
    again = ingest_files(db, SAMPLE_FILES)
    assert all(r.status == "already_loaded" for r in again)


PROSPECT_SESSIONS = """
with first_purchase as (
    select user_key, min(ts) as first_purchase_at
    from staging.stg_events where event_name = 'purchase' group by user_key
),
carts as (
    select session_key, bool_or(event_name = 'add_to_cart') as has_cart
    from staging.stg_events group by session_key
)
select s.session_key, s.channel, s.device, s.has_purchase, c.has_cart
from staging.stg_sessions as s
join carts as c using (session_key)
left join first_purchase as f using (user_key)
where f.first_purchase_at is null or s.started_at <= f.first_purchase_at
"""


def test_planted_channel_conversion_is_recovered(sample):
    db, *_ = sample
    rates = db.query(
        f"select channel, count(*) as n, avg(cast(has_purchase as double)) as rate from ({PROSPECT_SESSIONS}) "
        "group by channel"
    )
    planted = PLANTED["channel_conversion"]["session_conversion_rate"]
    got = {r["channel"]: (r["n"], r["rate"]) for r in rates.iter_rows(named=True)}
    assert set(got) == set(planted)
    for channel, p in planted.items():
        n, rate = got[channel]
        assert abs(rate - p) <= 3.5 * _se(p, n), (channel, rate, p, n)
    ratio = got["Paid Social"][1] / got["Paid Search"][1]
    assert abs(ratio - PLANTED["channel_conversion"]["paid_social_over_paid_search"]) < 0.15  # delta SE ~0.057


def test_planted_cart_abandonment_is_recovered(sample):
    db, *_ = sample
    n, abandoned = db.query(
        f"select count(*) as n, avg(cast(not has_purchase as double)) as rate from ({PROSPECT_SESSIONS}) "
        "where has_cart"
    ).row(0)
    p = PLANTED["cart_abandonment"]["abandonment_rate"]
    assert n > 3000 and abs(abandoned - p) <= 3 * _se(p, n)


def test_planted_mobile_checkout_loop_is_recovered_by_path_mining(sample):
    db, *_ = sample
    by_device = db.query(
        "select device, count(*) as n, avg(cast(n_checkouts >= 2 as double)) as loop_rate from ("
        "  select session_key, any_value(device) as device, "
        "  count(*) filter (where event_name = 'begin_checkout') as n_checkouts "
        "  from staging.stg_events group by session_key) "
        "where n_checkouts >= 1 group by device"
    )
    got = {r["device"]: (r["n"], r["loop_rate"]) for r in by_device.iter_rows(named=True)}
    for device, p in PLANTED["checkout_loop"]["loop_rate"].items():
        n, rate = got[device]
        tolerance = 3 * _se(p, n) if p else 0.0
        assert abs(rate - p) <= tolerance, (device, rate, p)
    # the path-mining loop view finds the same sessions: begin_checkout > view_cart > begin_checkout
    found = loops(db, PathOptions(scope="session", level="event"))
    row = found.filter(found["loop_path"] == "begin_checkout > view_cart > begin_checkout").row(0, named=True)
    n_mobile, mobile_rate = got["mobile"]
    assert row["n_journeys"] == round(n_mobile * mobile_rate)


def test_transitions_without_cleaning_skip_the_preparation_and_agree_with_it(sample):
    """Journeys asked for without cleaning take their edges straight from stg_touchpoints; every
    scope and level gives the rows of transitions.sql on the prepared journeys, and no journey_steps
    table is made."""
    db, *_ = sample
    for scope in SCOPES:
        for level in LEVELS:
            options = PathOptions(scope=scope, level=level)  # type: ignore[arg-type]
            with Database(db.path) as fresh:  # a connection of its own: no temp tables yet
                direct = transitions(fresh, options)
                assert not fresh.scalar("select count(*) from duckdb_tables() where table_name = 'journey_steps'")
            prepare_steps(db, options)
            prepared = db.query(load_sql("analysis/transitions.sql"), AS_PREPARED)
            assert direct.height > 10, (scope, level)
            assert direct.equals(prepared), (scope, level)
