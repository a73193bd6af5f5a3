"""Cart, checkout and stage abandonment on hand-computed literal journeys, and properties: every rate
in [0, 1], abandonment + conversion = 1 where they are complements."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from pipeline.metrics import stats
from pipeline.metrics.abandonment import (
    CART_ABANDONMENT_BENCHMARK,
    abandonment,
    cart_checkout_abandonment,
    stage_abandonment,
)
from pipeline.metrics.conversion import MetricError, conversion_rates
from pipeline.metrics.journey_map import journey_map
from pipeline.metrics.segments import Segment
from tests.conftest import REPO, load_events, make_journeys

PAID_MOBILE = {"source": "google", "medium": "cpc", "device": "mobile"}
MOBILE = {"device": "mobile"}
DESKTOP = {"device": "desktop"}
DAY = 1440

# T0 = Monday 2025-01-06 09:00; every journey but u1's is Direct.
#   u1 (Paid Search, mobile): view, cart, checkout, purchase in one session.
#   u2 (desktop): view, cart; never buys.
#   u3 (desktop): s1 view, cart, checkout (no purchase); s2 a day later: view, cart, purchase.
#   u5 (mobile): s1 cart; s2 ten days later: purchase (no cart in s2).
#   u6 (desktop): view, cart, checkout; never buys.
JOURNEYS = {
    "u1_buys_in_one_session": [("view_item", 0, PAID_MOBILE), ("add_to_cart", 1, PAID_MOBILE),
                               ("begin_checkout", 2, PAID_MOBILE), ("purchase", 3, {**PAID_MOBILE, "revenue": 10.0})],
    "u2_abandons_cart": [("view_item", 0, DESKTOP), ("add_to_cart", 1, DESKTOP)],
    "u3_abandons_checkout_buys_next_day": [
        ("view_item", 0, DESKTOP), ("add_to_cart", 1, DESKTOP), ("begin_checkout", 2, DESKTOP),
        ("view_item", DAY, DESKTOP), ("add_to_cart", DAY + 1, DESKTOP),
        ("purchase", DAY + 2, {**DESKTOP, "revenue": 5.0}),
    ],
    "u5_carts_buys_ten_days_later": [("add_to_cart", 0, MOBILE), ("purchase", 10 * DAY, {**MOBILE, "revenue": 7.0})],
    "u6_abandons_checkout": [("view_item", 0, DESKTOP), ("add_to_cart", 1, DESKTOP), ("begin_checkout", 2, DESKTOP)],
}


@pytest.fixture
def shop(db, cfg):
    load_events(db, make_journeys(JOURNEYS))
    build(db, cfg)
    return db


def _counts(frame: pl.DataFrame, kind: str) -> dict[str, tuple[int, int]]:
    part = frame.filter(pl.col("abandonment_kind") == kind)
    return {r["group"]: (r["n_abandoned"], r["n_started"]) for r in part.iter_rows(named=True)}


def test_session_cart_and_checkout_abandonment(shop):
    frame = cart_checkout_abandonment(shop)
    # carts: u1s1 (bought), u2s1, u3s1, u3s2 (bought), u5s1 (bought only in s2), u6s1 -> 4 of 6 abandoned
    # checkouts: u1s1 (bought), u3s1, u6s1 -> 2 of 3 abandoned
    assert _counts(frame, "cart") == {"all": (4, 6)}
    assert _counts(frame, "checkout") == {"all": (2, 3)}
    cart = frame.row(0, named=True)
    assert cart["abandonment_rate"] == pytest.approx(4 / 6) and cart["n_completed"] == 2
    low, high = stats.wilson_interval(4, 6)
    assert (cart["abandonment_rate_low"], cart["abandonment_rate_high"]) == (pytest.approx(low), pytest.approx(high))
    # the literature benchmark (Baymard: 70.19%) is shown beside cart rates only
    assert cart["benchmark_rate"] == CART_ABANDONMENT_BENCHMARK == 0.7019
    assert frame.filter(pl.col("abandonment_kind") == "checkout")["benchmark_rate"].to_list() == [None]

    # mobile: u1s1 (bought), u5s1 -> 1/2; desktop: u2s1, u3s1, u3s2 (bought), u6s1 -> 3/4
    assert _counts(cart_checkout_abandonment(shop, by="device"), "cart") == {"mobile": (1, 2), "desktop": (3, 4)}
    assert _counts(cart_checkout_abandonment(shop, by="channel"), "cart") == {"Paid Search": (0, 1), "Direct": (4, 5)}
    # by the day of the cart: 01-06 the five first sessions (u1 bought), 01-07 u3s2 (bought)
    assert _counts(cart_checkout_abandonment(shop, by="day"), "cart") == {"2025-01-06": (4, 5), "2025-01-07": (0, 1)}
    assert _counts(cart_checkout_abandonment(shop, by="week"), "cart") == {"2025-01-06": (4, 6)}
    # segment: users whose first session was on mobile (u1, u5): carts u1s1 (bought), u5s1
    mobile = Segment.of("mobile_first", ("first_device", "eq", "mobile"))
    assert _counts(cart_checkout_abandonment(shop, by="segment", segments=[mobile]), "cart") == {"mobile_first": (1, 2)}
    by_device = cart_checkout_abandonment(shop, by="device")
    low, high = stats.wilson_interval(by_device["n_abandoned"].to_numpy(), by_device["n_started"].to_numpy())
    np.testing.assert_allclose(by_device["abandonment_rate_low"].to_numpy(), low)
    np.testing.assert_allclose(by_device["abandonment_rate_high"].to_numpy(), high)


def test_cart_and_checkout_abandonment_with_the_shop_s_own_event_names(db, cfg):
    """A shop whose events are named otherwise: the completion is the given purchase event, which is
    neither the goal (purchase, absent here) nor the cart or checkout event."""
    load_events(db, make_journeys({
        # basket, then order_placed in the same session: the cart completes; no checkout event
        "a_orders": [("page_view", 0), ("basket_add", 1), ("order_placed", 2, {"revenue": 9.0})],
        # basket, checkout_start, then nothing: both abandoned
        "b_leaves": [("basket_add", 0), ("checkout_start", 1)],
        # checkout_start before basket_add, then order_placed: the cart and the checkout complete
        "c_orders_later": [("checkout_start", 0), ("basket_add", 1), ("page_view", 2), ("order_placed", 3)],
    }))
    build(db, cfg)
    names = {"cart_event": "basket_add", "checkout_event": "checkout_start", "purchase_event": "order_placed"}
    frame = cart_checkout_abandonment(db, events=names)
    assert _counts(frame, "cart") == {"all": (1, 3)}  # b
    assert _counts(frame, "checkout") == {"all": (1, 2)}  # b (c completes)
    # the canonical names find no cart at all in this shop
    assert cart_checkout_abandonment(db).height == 0


def test_user_level_abandonment_within_n_days(shop):
    week = cart_checkout_abandonment(shop, level="user", window_days=7)
    # first carts: u1 (bought at once), u2 (never), u3 (bought 1 day later), u5 (10 days later), u6 (never)
    assert _counts(week, "cart") == {"all": (3, 5)}
    # first checkouts: u1 (bought), u3 (bought 1 day later), u6 (never)
    assert _counts(week, "checkout") == {"all": (1, 3)}
    # data ends 10 days after T0: every 7-day window is covered
    assert week["n_incomplete_window"].to_list() == [0, 0]
    # 14 days: u5's purchase now completes its cart; half a day: u3's does not
    two_weeks = cart_checkout_abandonment(shop, level="user", window_days=14)
    assert _counts(two_weeks, "cart") == {"all": (2, 5)}
    assert _counts(cart_checkout_abandonment(shop, level="user", window_days=0.5), "cart") == {"all": (4, 5)}
    # no 14-day window is covered by 10 days of data
    assert two_weeks.filter(pl.col("abandonment_kind") == "cart")["n_incomplete_window"].to_list() == [5]
    only_complete = cart_checkout_abandonment(shop, level="user", window_days=14, complete_windows_only=True)
    assert _counts(only_complete, "cart") == {"all": (0, 0)}
    assert only_complete["abandonment_rate"].to_list() == [None, None]
    # a window in time: users with a session from 2025-01-07 on: u3 (first cart in window at s2, bought), u5
    # (s2 has no cart: not an episode)
    assert _counts(cart_checkout_abandonment(shop, level="user", start="2025-01-07"), "cart") == {"all": (0, 1)}


def test_stage_abandonment_session_and_user(shop):
    users = {r["stage"]: r for r in stage_abandonment(shop, level="user").iter_rows(named=True)}
    # reached: Awareness u1 (paid search); Interest all 5; Consideration all 5; Purchase u1, u3, u5, u6
    # abandoned (furthest stage and no purchase): u2 at Consideration, u6 at Purchase
    assert {s: (r["n_abandoned"], r["n_reached"]) for s, r in users.items()} == {
        "Awareness": (0, 1), "Interest": (0, 5), "Consideration": (1, 5), "Purchase": (1, 4)}
    assert users["Purchase"]["n_furthest"] == 4 and users["Purchase"]["share_of_journeys"] == pytest.approx(1 / 5)
    assert users["Purchase"]["abandonment_rate"] == pytest.approx(1 / 4)
    sessions = {r["stage"]: r for r in stage_abandonment(shop, level="session").iter_rows(named=True)}
    # Consideration: u1s1, u2s1, u3s1, u3s2, u5s1, u6s1 reached it; u2s1 and u5s1 end there unconverted
    # Purchase: u1s1, u3s1, u3s2, u5s2, u6s1 reached it; u3s1 and u6s1 end there unconverted
    assert {s: (r["n_abandoned"], r["n_reached"]) for s, r in sessions.items()} == {
        "Awareness": (0, 1), "Interest": (0, 7), "Consideration": (2, 6), "Purchase": (2, 5)}
    # every journey that did not convert is abandoned at exactly one stage: 2 + 3 buyers = 5 users, 4 + 3 = 7
    assert sum(r["n_abandoned"] for r in users.values()) + 3 == 5
    assert sum(r["n_abandoned"] for r in sessions.values()) + 3 == 7
    by_device = stage_abandonment(shop, level="user", by="device").filter(pl.col("stage") == "Purchase")
    # mobile users u1, u5 bought; desktop: u3 bought, u6 abandoned at Purchase
    assert {r["group"]: (r["n_abandoned"], r["n_reached"]) for r in by_device.iter_rows(named=True)} == {
        "desktop": (1, 2), "mobile": (0, 2)}


def test_one_table_for_every_kind(shop):
    frame = abandonment(shop, level="user")
    assert frame["abandonment_kind"].unique(maintain_order=True).to_list() == ["cart", "checkout", "stage"]
    stage_rows = frame.filter(pl.col("abandonment_kind") == "stage")
    assert stage_rows["stage"].to_list() == ["Awareness", "Interest", "Consideration", "Purchase"]
    assert abandonment(shop, kinds=("checkout",))["abandonment_kind"].to_list() == ["checkout"]
    with pytest.raises(MetricError, match="kind must be one of"):
        abandonment(shop, kinds=("basket",))
    with pytest.raises(MetricError, match="window_days must be >= 0"):
        abandonment(shop, window_days=-1)


# -- properties -----------------------------------------------------------------------------------
FUNNEL = ("add_to_cart", "begin_checkout", "purchase")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.sampled_from(("mobile", "desktop"))),
                min_size=1, max_size=6))
def test_abandonment_and_conversion_are_complements(users):
    """One session per user: browse pages, then the funnel up to a depth (0: none, 3: purchase).
    Then every non-buyer with a cart abandoned it and every buyer carted first, so cart abandonment
    + conversion of carting sessions = 1; likewise checkout; and every journey either converts or
    is abandoned at exactly its furthest stage."""
    spec = {}
    for u, (depth, browse, device) in enumerate(users):
        steps = [("view_item", m, {"device": device}) for m in range(browse + 1)]
        steps += [(name, browse + 1 + k, {"device": device}) for k, name in enumerate(FUNNEL[:depth])]
        spec[f"u{u}"] = steps
    database = Database(":memory:")
    try:
        load_events(database, make_journeys(spec))
        build(database, config.defaults())
        converted = conversion_rates(database)["n_converted"][0]
        n_users = len(users)
        for level in ("session", "user"):
            table = abandonment(database, level=level, by="all")
            for kind, minimum in (("cart", 1), ("checkout", 2)):
                row = table.filter(pl.col("abandonment_kind") == kind)
                n_started = sum(d >= minimum for d, _, _ in users)
                if n_started == 0:
                    assert row.height == 0
                    continue
                assert row["n_started"][0] == n_started
                assert row["abandonment_rate"][0] + converted / n_started == pytest.approx(1)
            stage = table.filter(pl.col("abandonment_kind") == "stage")
            assert stage["n_abandoned"].sum() + converted == n_users
            rates = table.select("abandonment_rate", "abandonment_rate_low", "abandonment_rate_high").to_numpy()
            rates = rates[~np.isnan(rates.astype(float))]
            assert ((rates >= 0) & (rates <= 1)).all()
        # the journey map: before the Purchase stage, a user either moves on or stops there
        stages = journey_map(database).filter(pl.col("stage").is_in(["Interest", "Consideration"]))
        for row in stages.iter_rows(named=True):
            assert row["progression_rate"] + row["abandonment_rate"] == pytest.approx(1)
    finally:
        database.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.tuples(st.sampled_from(("view_item", *FUNNEL)), st.sampled_from((1, 40, 3000))),
                         min_size=1, max_size=6), min_size=1, max_size=4),
       st.sampled_from((0.0, 1.0, 7.0)))
def test_every_abandonment_rate_is_in_the_unit_interval(journeys, window_days):
    spec = {f"u{u}": [(name, int(m)) for (name, _), m in zip(steps, np.cumsum([g for _, g in steps]), strict=True)]
            for u, steps in enumerate(journeys)}
    database = Database(":memory:")
    try:
        load_events(database, make_journeys(spec))
        build(database, config.defaults())
        for level in ("session", "user"):
            for by in ("all", "day", "segment"):
                table = abandonment(database, level=level, by=by, window_days=window_days)
                assert (table["n_abandoned"] <= table["n_started"]).all()
                for column in ("abandonment_rate", "abandonment_rate_low", "abandonment_rate_high"):
                    values = table[column].drop_nulls().to_numpy()
                    assert ((values >= 0) & (values <= 1)).all()
    finally:
        database.close()


def test_abandonment_command(tmp_path, cfg):
    path = tmp_path / "cli.duckdb"
    database = Database(path)
    load_events(database, make_journeys(JOURNEYS))
    build(database, cfg)
    database.close()
    run = subprocess.run([sys.executable, "-m", "pipeline", "abandonment", "--db", str(path), "--kind", "cart",
                          "--level", "user", "--window-days", "14", "--format", "json"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert [(r["n_abandoned"], r["n_started"], r["benchmark_rate"]) for r in rows] == [(2, 5, 0.7019)]
    bad = subprocess.run([sys.executable, "-m", "pipeline", "abandonment", "--db", str(path), "--kind", "basket"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "--kind" in bad.stderr
