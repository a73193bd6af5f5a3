"""Real files: the REES46 October head (through the rees46 adapter) and the MTA attribution subset
(through the canonical adapter's --map), checked against independent pandas computations."""

from __future__ import annotations

import csv
import hashlib

import pandas as pd
import pytest

from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files, parse_column_map
from tests.conftest import DATASETS

REES46 = DATASETS / "rees46-multicat-2019oct-head" / "2019-Oct.csv"
MTA = DATASETS / "mta-attribution-subset" / "attribution_data.csv"
REES46_COLUMNS = ["event_time", "event_type", "product_id", "category_id", "category_code", "brand", "price", "user_id",
                  "user_session"]
NAMES = {"view": "view_item", "cart": "add_to_cart", "remove_from_cart": "remove_from_cart", "purchase": "purchase"}

FUNNEL_SQL = """
with views as (
    select user_key, min(ts) as viewed_at from staging.stg_events where event_name = 'view_item' group by user_key
),
carts as (
    select v.user_key, min(e.ts) as carted_at
    from views as v
    inner join staging.stg_events as e
        on e.user_key = v.user_key and e.event_name = 'add_to_cart' and e.ts >= v.viewed_at
    group by v.user_key
),
purchases as (
    select c.user_key
    from carts as c
    inner join staging.stg_events as e
        on e.user_key = c.user_key and e.event_name = 'purchase' and e.ts >= c.carted_at
    group by c.user_key
)
select (select count(*) from views), (select count(*) from carts), (select count(*) from purchases)
"""


def _pandas_rees46() -> pd.DataFrame:
    """The file read independently: csv module, complete 9-field records only, exact duplicates dropped."""
    with REES46.open(newline="") as handle:
        records = [r for r in csv.reader(handle)][1:]
    frame = pd.DataFrame([r for r in records if len(r) == 9], columns=REES46_COLUMNS, dtype=str)
    frame = frame.drop_duplicates().copy()
    frame["ts"] = pd.to_datetime(frame["event_time"].str.removesuffix(" UTC"))
    frame["event_name"] = frame["event_type"].map(NAMES)
    # event_id as documented in sql/ingest/adapters/rees46.sql: md5 of the nine fields joined by '|'
    frame["event_id"] = ["|".join(r) for r in frame[REES46_COLUMNS].fillna("").itertuples(index=False)]
    frame["event_id"] = frame["event_id"].map(lambda text: hashlib.md5(text.encode()).hexdigest())
    return frame.sort_values(["user_id", "ts", "event_id"])


@pytest.fixture(scope="module")
def rees46(tmp_path_factory):
    db = Database(tmp_path_factory.mktemp("rees46") / "rees46.duckdb")
    [result] = ingest_files(db, [REES46])
    from pipeline import config

    cfg = config.defaults()
    cfg["sessions"]["session_source"] = "source"
    build(db, cfg)
    yield db, result
    db.close()


def test_rees46_loads_everything_but_the_cut_last_line(rees46):
    db, r = rees46
    assert (r.status, r.format, r.n_read, r.n_loaded, r.n_duplicate, r.n_quarantined) == (
        "loaded", "rees46", 17435, 17429, 5, 1)
    [(line, reason, text)] = db.query("select line_number, reason, original_text from raw.quarantine").rows()
    assert (line, reason) == (17436, "malformed_row")  # the header is line 1
    assert text == ("2019-10-01 02:50:00 UTC,view,10900305,2053013555069845885,appliances.kitchen.mixer,elenberg,"
                    "25.71,52040330")
    expected = _pandas_rees46()
    assert len(expected) == r.n_loaded
    ids = db.query("select event_id, user_id, product_id, properties ->> 'category_id' as category_id "
                   "from raw.events order by event_id").rows()
    assert ids == sorted(expected[["event_id", "user_id", "product_id", "category_id"]].itertuples(index=False,
                                                                                                  name=None))


def test_rees46_sessions_match_pandas(rees46):
    db, _ = rees46
    expected = (
        _pandas_rees46().groupby(["user_id", "user_session"])
        .agg(n_events=("ts", "size"), started_at=("ts", "min"), ended_at=("ts", "max"),
             n_purchases=("event_name", lambda s: int((s == "purchase").sum())))
        .reset_index()
    )
    got = db.query("select user_key, source_session_id, n_events, started_at, ended_at, n_purchases "
                   "from staging.stg_sessions").to_pandas()
    assert len(got) == len(expected) == 5067
    key = ["user_id", "user_session"]
    got.columns = [*key, "n_events", "started_at", "ended_at", "n_purchases"]
    merged = expected.merge(got, on=key, suffixes=("", "_got"), how="outer", validate="one_to_one")
    for column in ("n_events", "started_at", "ended_at", "n_purchases"):
        assert (merged[column] == merged[f"{column}_got"]).all(), column


def test_rees46_funnel_by_users_matches_pandas(rees46):
    db, _ = rees46
    frame = _pandas_rees46()
    viewed = frame[frame.event_name == "view_item"].groupby("user_id")["ts"].min().rename("viewed_at")
    carts = frame[frame.event_name == "add_to_cart"].join(viewed, on="user_id", how="inner")
    carted = carts[carts.ts >= carts.viewed_at].groupby("user_id")["ts"].min().rename("carted_at")
    buys = frame[frame.event_name == "purchase"].join(carted, on="user_id", how="inner")
    bought = buys[buys.ts >= buys.carted_at]["user_id"].nunique()
    expected = (len(viewed), len(carted), bought)
    assert db.query(FUNNEL_SQL).row(0) == expected
    assert expected == (4504, 111, 62)


def test_rees46_transitions_match_pandas(rees46):
    db, _ = rees46
    # a session is (user_id, user_session): one user_session of this file carries two user_ids
    frame = _pandas_rees46().sort_values(["user_id", "user_session", "ts", "event_id"])
    frame["next_event"] = frame.groupby(["user_id", "user_session"])["event_name"].shift(-1)
    expected = (frame.dropna(subset=["next_event"]).groupby(["event_name", "next_event"]).size()
                .rename("n").reset_index())
    got = db.query(
        "select event_name, next_event, count(*) as n from (select event_name, lead(event_name) over "
        "(partition by session_key order by session_event_index) as next_event from staging.stg_events) "
        "where next_event is not null group by event_name, next_event"
    ).to_pandas()
    assert sorted(map(tuple, got.itertuples(index=False))) == sorted(map(tuple, expected.itertuples(index=False)))


def test_mta_attribution_subset_loads_through_the_canonical_column_map(db):
    mapping = parse_column_map("user_id=customer_id,ts=time,event_name=interaction,revenue=conversion_value")
    [r] = ingest_files(db, [MTA], fmt="canonical", column_map=mapping)
    frame = pd.read_csv(MTA, dtype={"customer_id": str})
    assert (r.status, r.format, r.n_read, r.n_loaded, r.n_duplicate, r.n_quarantined) == (
        "loaded", "canonical", len(frame), len(frame), 0, 0)
    conversions = db.query(
        "select count(*) as n, count(distinct user_id) as users, sum(revenue) as value from raw.events "
        "where event_name = 'conversion'"
    ).row(0)
    converted = frame[frame.interaction == "conversion"]
    assert conversions[:2] == (len(converted), converted.customer_id.nunique()) == (1838, 1642)
    assert float(conversions[2]) == pytest.approx(converted.conversion_value.sum())
    channels = dict(db.query("select channel, count(*) from raw.events group by channel").rows())
    assert channels == frame.channel.value_counts().to_dict()
