"""Conversion rates on hand-computed literal journeys, the UCI online shoppers sessions against
pandas, and property tests (every rate and bound in [0, 1])."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from pipeline.metrics import stats
from pipeline.metrics.conversion import MetricError, conversion_rates
from pipeline.metrics.segments import Segment
from pipeline.schema import CANONICAL_COLUMNS
from tests.conftest import DATASETS, REPO, load_events, make_journeys

PAID_MOBILE_DE = {"source": "google", "medium": "cpc", "device": "mobile", "country": "DE"}
MAIL_DESKTOP_FR = {"source": "newsletter", "medium": "email", "device": "desktop", "country": "FR"}
DESKTOP_FR = {"device": "desktop", "country": "FR"}
MOBILE_DE = {"device": "mobile", "country": "DE"}
DESKTOP_US = {"device": "desktop", "country": "US"}
SITE = "https://shop.example.com"
DAY = 1440

# T0 = Monday 2025-01-06 09:00. Sessions (a gap of more than 30 minutes starts a new one):
#   u1s1 Paid Search, mobile, DE, lands on /products/1 (product_page), buys 30     -> converts
#   u2s1 Email, desktop, FR, lands on / (landing_page)                             -> no
#   u2s2 (2 days later, 2025-01-08) Direct, desktop, FR, view_item, buys 20        -> converts (returning)
#   u3s1 Direct, mobile, DE, view_item                                             -> no
#   u4s1 Direct, desktop, US, view_item                                            -> no
#   u4s2 (8 days later, 2025-01-14, next week) Direct, desktop, US, view + cart    -> no (returning)
JOURNEYS = {
    "u1_paid_mobile_buys": [
        ("page_view", 0, {**PAID_MOBILE_DE, "page_url": f"{SITE}/products/1"}),
        ("add_to_cart", 1, PAID_MOBILE_DE),
        ("purchase", 2, {**PAID_MOBILE_DE, "revenue": 30.0}),
    ],
    "u2_mail_then_returns_and_buys": [
        ("page_view", 0, {**MAIL_DESKTOP_FR, "page_url": f"{SITE}/"}),
        ("view_item", 2 * DAY, DESKTOP_FR),
        ("purchase", 2 * DAY + 1, {**DESKTOP_FR, "revenue": 20.0}),
    ],
    "u3_direct_mobile_leaves": [("view_item", 0, MOBILE_DE)],
    "u4_returns_next_week_carts": [
        ("view_item", 0, DESKTOP_US),
        ("view_item", 8 * DAY, DESKTOP_US),
        ("add_to_cart", 8 * DAY + 1, DESKTOP_US),
    ],
}


@pytest.fixture
def shop(db, cfg):
    load_events(db, make_journeys(JOURNEYS))
    build(db, cfg)
    return db


def _rates(frame: pl.DataFrame) -> dict[str, tuple[int, int]]:
    return {r["group"]: (r["n_converted"], r["n_units"]) for r in frame.iter_rows(named=True)}


def test_session_conversion_by_every_breakdown(shop):
    overall = conversion_rates(shop)
    row = overall.row(0, named=True)
    # 6 sessions, 2 with a purchase (u1s1, u2s2)
    assert (row["group"], row["n_converted"], row["n_units"]) == ("all", 2, 6)
    assert row["conversion_rate"] == pytest.approx(2 / 6)
    low, high = stats.wilson_interval(2, 6)
    assert (row["conversion_rate_low"], row["conversion_rate_high"]) == (pytest.approx(low), pytest.approx(high))
    assert row["n_purchases"] == 2 and row["revenue"] == 50.0 and row["revenue_per_unit"] == pytest.approx(50 / 6)

    expected = {
        # Paid Search: u1s1 (1/1); Email: u2s1 (0/1); Direct: u2s2 (buys), u3s1, u4s1, u4s2 -> 1/4
        "channel": {"Paid Search": (1, 1), "Email": (0, 1), "Direct": (1, 4)},
        # mobile: u1s1 (buys), u3s1 -> 1/2; desktop: u2s1, u2s2 (buys), u4s1, u4s2 -> 1/4
        "device": {"mobile": (1, 2), "desktop": (1, 4)},
        "country": {"DE": (1, 2), "FR": (1, 2), "US": (0, 2)},
        # only u1s1 and u2s1 have a page_url; the other 4 sessions (u2s2 buys) have none
        "landing_page": {f"{SITE}/products/1": (1, 1), f"{SITE}/": (0, 1), "unknown": (1, 4)},
        # first event step: page_view on /products/ and view_item are product_page, page_view on / landing_page
        "entry_touchpoint": {"product_page": (2, 5), "landing_page": (0, 1)},
        # new = session_index 1: u1s1 (buys), u2s1, u3s1, u4s1; returning: u2s2 (buys), u4s2
        "visitor_type": {"new": (1, 4), "returning": (1, 2)},
        # 01-06: the four first sessions; 01-08: u2s2; 01-14: u4s2
        "day": {"2025-01-06": (1, 4), "2025-01-08": (1, 1), "2025-01-14": (0, 1)},
        "week": {"2025-01-06": (2, 5), "2025-01-13": (0, 1)},
        "month": {"2025-01": (2, 6)},
    }
    for by, groups in expected.items():
        frame = conversion_rates(shop, by=by)
        assert _rates(frame) == groups, by
        low, high = stats.wilson_interval(frame["n_converted"].to_numpy(), frame["n_units"].to_numpy())
        np.testing.assert_allclose(frame["conversion_rate_low"].to_numpy(), low)
        np.testing.assert_allclose(frame["conversion_rate_high"].to_numpy(), high)
    # time groups come in time order, others by size
    assert conversion_rates(shop, by="day")["group"].to_list() == ["2025-01-06", "2025-01-08", "2025-01-14"]
    assert conversion_rates(shop, by="channel")["group"].to_list() == ["Direct", "Email", "Paid Search"]


def test_user_conversion_window_and_goal(shop):
    users = conversion_rates(shop, level="user")
    assert (users["n_converted"][0], users["n_units"][0]) == (2, 4)  # u1, u2 of 4 users
    # user channel = first session's (acquisition): u2 came by Email and bought later
    assert _rates(conversion_rates(shop, level="user", by="channel")) == {
        "Paid Search": (1, 1), "Email": (1, 1), "Direct": (0, 2)}
    # returning = more than one session by the window's end: u2 (buys), u4
    assert _rates(conversion_rates(shop, level="user", by="visitor_type")) == {"new": (1, 2), "returning": (1, 2)}
    # window from 2025-01-07: sessions u2s2 (buys) and u4s2
    assert _rates(conversion_rates(shop, start=dt.date(2025, 1, 7))) == {"all": (1, 2)}
    assert _rates(conversion_rates(shop, level="user", start="2025-01-07", by="channel")) == {"Direct": (1, 2)}
    # the window's start is inclusive: opening it at 09:00 on 01-06, when the four first sessions
    # start, keeps all six sessions with their first steps (entry touchpoints as with no window)
    assert _rates(conversion_rates(shop, start="2025-01-06 09:00", by="entry_touchpoint")) == {
        "product_page": (2, 5), "landing_page": (0, 1)}
    # [01-06, 01-08): the four first sessions
    assert _rates(conversion_rates(shop, start="2025-01-06", end="2025-01-08")) == {"all": (1, 4)}
    # goal = the cart touchpoint (add_to_cart): u1s1 and u4s2; as an event name, the same
    assert _rates(conversion_rates(shop, goal="cart")) == {"all": (2, 6)}
    assert _rates(conversion_rates(shop, goal="add_to_cart", level="user")) == {"all": (2, 4)}
    # a segment as breakdown: users with a mobile session in DE (u1, u3) -> sessions u1s1 (buys), u3s1
    mobile_de = Segment.of("mobile_de", ("device", "eq", "mobile"), ("country", "eq", "DE"))
    assert _rates(conversion_rates(shop, by="segment", segments=[mobile_de])) == {"mobile_de": (1, 2)}


def test_bad_requests_name_the_problem(shop):
    with pytest.raises(MetricError, match="did you mean 'purchase'"):
        conversion_rates(shop, goal="purchas")
    with pytest.raises(MetricError, match="did you mean 'device'"):
        conversion_rates(shop, by="devise")
    with pytest.raises(MetricError, match="level must be one of session, user"):
        conversion_rates(shop, level="visit")  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="window is empty"):
        conversion_rates(shop, start="2025-01-08", end="2025-01-07")
    with pytest.raises(MetricError, match="not a date"):
        conversion_rates(shop, start="last tuesday")


# -- UCI online shoppers intention: one row per real session -------------------------------------
MONTHS = {"Feb": 2, "Mar": 3, "May": 5, "June": 6, "Jul": 7, "Aug": 8, "Sep": 9, "Oct": 10, "Nov": 11, "Dec": 12}


def _uci_events(sessions: pd.DataFrame) -> pl.DataFrame:
    """One page_view per session (plus a purchase a minute later where Revenue is TRUE) in 2017, in
    the session's Month; a Returning_Visitor also gets an earlier session in December 2016, so its
    2017 session has session_index 2. Each row is its own user."""
    n = len(sessions)
    i = np.arange(n)
    start = pd.to_datetime(pd.DataFrame({
        "year": 2017, "month": sessions["Month"].map(MONTHS).to_numpy(), "day": 1 + i % 28, "hour": i % 24,
        "minute": (i // 24) % 60,
    }))
    users = np.array([f"uci{k}" for k in i])
    returning = (sessions["VisitorType"] == "Returning_Visitor").to_numpy()
    bought = sessions["Revenue"].to_numpy()
    prior = pd.Timestamp("2016-12-01") + pd.to_timedelta(i, unit="m")
    parts = [
        pd.DataFrame({"user_id": users, "ts": start, "event_name": "page_view", "revenue": np.nan}),
        pd.DataFrame({"user_id": users[bought], "ts": start[bought] + pd.Timedelta(minutes=1),
                      "event_name": "purchase", "revenue": 1.0}),
        pd.DataFrame({"user_id": users[returning], "ts": prior[returning], "event_name": "page_view",
                      "revenue": np.nan}),
    ]
    frame = pl.from_pandas(pd.concat(parts, ignore_index=True))
    frame = frame.with_columns(
        pl.format("{}-{}", pl.col("user_id"), pl.int_range(pl.len()).over("user_id")).alias("event_id"),
        pl.col("event_name").alias("raw_event_name"),
        pl.col("ts").cast(pl.Datetime("us")),
    )
    return frame.select(
        pl.col(c) if c in frame.columns else pl.lit(None, pl.Utf8).alias(c) for c in CANONICAL_COLUMNS
    )


def test_uci_online_shoppers_rates_match_pandas(db, cfg):
    raw = pd.read_csv(DATASETS / "uci-online-shoppers-intention" / "online_shoppers_intention.csv", sep=";")
    # 'Other' visitors (85 of 12,330 rows) are neither new nor returning: left out of both checks
    sessions = raw[raw["VisitorType"] != "Other"].reset_index(drop=True)
    load_events(db, _uci_events(sessions))
    build(db, cfg)

    new_returning = conversion_rates(db, by="visitor_type", start="2017-01-01")
    expected = sessions.groupby("VisitorType")["Revenue"].agg(["sum", "count"])
    got = {r["group"]: r for r in new_returning.iter_rows(named=True)}
    for label, visitor in (("new", "New_Visitor"), ("returning", "Returning_Visitor")):
        assert got[label]["n_converted"] == expected.loc[visitor, "sum"]
        assert got[label]["n_units"] == expected.loc[visitor, "count"]
        assert got[label]["conversion_rate"] == pytest.approx(sessions.loc[sessions["VisitorType"] == visitor,
                                                                           "Revenue"].mean())
    # 422 / 1,694 new (24.9%) versus 1,470 / 10,551 returning (13.9%)
    assert (got["new"]["n_converted"], got["new"]["n_units"]) == (422, 1694)
    assert (got["returning"]["n_converted"], got["returning"]["n_units"]) == (1470, 10551)
    low, high = stats.wilson_interval(422, 1694)
    assert got["new"]["conversion_rate_low"] == pytest.approx(low)
    assert got["new"]["conversion_rate_high"] == pytest.approx(high)

    by_month = conversion_rates(db, by="month", start="2017-01-01")
    pandas_month = sessions.groupby("Month")["Revenue"].agg(["sum", "count", "mean"])
    pandas_month.index = [f"2017-{MONTHS[m]:02d}" for m in pandas_month.index]
    assert by_month["group"].to_list() == sorted(pandas_month.index)
    for row in by_month.iter_rows(named=True):
        assert row["n_converted"] == pandas_month.loc[row["group"], "sum"]
        assert row["n_units"] == pandas_month.loc[row["group"], "count"]
        assert row["conversion_rate"] == pytest.approx(pandas_month.loc[row["group"], "mean"])
    assert conversion_rates(db, start="2017-01-01")["n_units"][0] == len(sessions)


# -- properties -----------------------------------------------------------------------------------
EVENTS = ("page_view", "view_item", "add_to_cart", "begin_checkout", "purchase", "survey_response")
journey = st.lists(
    st.tuples(st.sampled_from(EVENTS), st.sampled_from((1, 5, 45, 2000)), st.sampled_from(("mobile", "desktop"))),
    min_size=1, max_size=6,
)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(journey, min_size=1, max_size=4))
def test_every_conversion_rate_and_bound_is_in_the_unit_interval(journeys):
    spec = {}
    for u, steps in enumerate(journeys):
        minutes = np.cumsum([gap for _, gap, _ in steps]).tolist()
        spec[f"u{u}"] = [(name, m, {"device": device}) for (name, _, device), m in zip(steps, minutes, strict=True)]
    database = Database(":memory:")
    try:
        load_events(database, make_journeys(spec))
        build(database, config.defaults())
        for level in ("session", "user"):
            total = conversion_rates(database, level=level)["n_units"][0]
            for by in ("device", "week", "segment"):
                goal = "add_to_cart" if by == "week" else "purchase"
                frame = conversion_rates(database, level=level, by=by, goal=goal)
                for column in ("conversion_rate", "conversion_rate_low", "conversion_rate_high"):
                    values = frame[column].drop_nulls().to_numpy()
                    assert ((values >= 0) & (values <= 1)).all()
                assert (frame["conversion_rate_low"] <= frame["conversion_rate"] + 1e-12).all()
                assert (frame["conversion_rate"] <= frame["conversion_rate_high"] + 1e-12).all()
                if by != "segment":  # segments overlap; other breakdowns partition the units
                    assert frame["n_units"].sum() == total
    finally:
        database.close()


def test_conversion_command(tmp_path, cfg):
    path = tmp_path / "cli.duckdb"
    database = Database(path)
    load_events(database, make_journeys(JOURNEYS))
    build(database, cfg)
    database.close()
    run = subprocess.run([sys.executable, "-m", "pipeline", "conversion", "--db", str(path), "--by", "device",
                          "--format", "json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = {r["group"]: r for r in json.loads(run.stdout)}
    assert (rows["mobile"]["n_converted"], rows["mobile"]["n_units"]) == (1, 2)
    bad = subprocess.run([sys.executable, "-m", "pipeline", "conversion", "--db", str(path), "--by", "devise"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "did you mean 'device'" in bad.stderr
    helped = subprocess.run([sys.executable, "-m", "pipeline", "conversion", "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert "Example: journeys conversion" in helped.stdout
