"""Funnels on literal journeys: every mode, window, per-step window, exclusion and counting rule,
times, intervals, breakdowns, drill-down and why-dropped, each against numbers computed by hand.

Journeys are named after the case they cover; times are minutes after T0 (2025-01-06 09:00 UTC), and
a gap over 30 minutes starts a new session (with its synthetic channel step).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest

from pipeline.build import build
from pipeline.db import Database
from pipeline.metrics.funnel import (
    FunnelError,
    StepRef,
    funnel,
    funnel_dropped,
    funnel_spec,
    funnel_why,
    resolve_step,
    step_values,
)
from pipeline.metrics.stats import benjamini_hochberg, odds_ratio, two_proportion_test, wilson_interval
from tests.conftest import load_events, make_journeys

STEPS = "view_item,add_to_cart,begin_checkout,purchase"
V, C, K, P = "view_item", "add_to_cart", "begin_checkout", "purchase"
DAY = 24 * 60


def _build(db, cfg, journeys: dict) -> Database:
    load_events(db, make_journeys(journeys))
    build(db, cfg)
    return db


def _entered(frame) -> list[int]:
    return frame["n_entered"].to_list()


def _dropped(frame) -> list[int]:
    return frame["n_dropped"].to_list()


def _rates(frame, column: str) -> list[float]:
    return [round(v, 6) for v in frame[column].to_list()]


# -- modes ---------------------------------------------------------------------------------------

MODE_CASES = {
    "u_buys_in_order": [(V, 0), (C, 1), (K, 2), (P, 3)],
    "u_abandons_cart": [(V, 0), (C, 1)],
    "u_views_only": [(V, 0)],
    "u_cart_before_view": [(C, 0), (V, 1)],
    "u_skips_checkout": [(V, 0), (C, 1), (P, 2)],
    "u_loops_back_then_buys": [(V, 0), (C, 1), (V, 2), (C, 3), (K, 4), (P, 5)],
    "u_browses_between_steps": [(V, 0), ("page_view", 1), (C, 2)],
    "u_never_views": [(C, 0), (P, 1)],
    "u_returns_next_session_to_cart": [(V, 0), (C, 60)],  # a channel step (new session) between
}


@pytest.mark.parametrize(
    ("mode", "entered", "dropped", "from_previous", "from_first"),
    [
        # view: 8 journeys (not u_never_views); cart after view: 6; checkout then purchase: buys, loops
        ("ordered", [8, 6, 2, 2], [2, 4, 0, 0], [1, 6 / 8, 2 / 6, 1], [1, 6 / 8, 2 / 8, 2 / 8]),
        # strict: page_view between view and cart breaks u_browses_between_steps; channel steps do not
        ("strict", [8, 5, 2, 2], [3, 3, 0, 0], [1, 5 / 8, 2 / 5, 1], [1, 5 / 8, 2 / 8, 2 / 8]),
        # distinct steps done: 4 buys, 2 abandons, 1 views_only, 2 cart_before_view, 3 skips, 4 loops,
        # 2 browses, 2 never_views, 2 returns
        ("unordered", [9, 8, 3, 2], [1, 5, 1, 0], [1, 8 / 9, 3 / 8, 2 / 3], [1, 8 / 9, 3 / 9, 2 / 9]),
        # did step k: view 8, cart 8, checkout 2, purchase 4 (never_views enters at cart);
        # view then cart: 6; cart then checkout: 2; checkout then purchase: 2; from first = ordered
        ("open", [8, 8, 2, 4], [2, 6, 0, 0], [1, 6 / 8, 2 / 8, 2 / 2], [1, 6 / 8, 2 / 8, 2 / 8]),
        # did k-1 and k: view & cart 7; cart & checkout 2; checkout & purchase 2; view & purchase 3
        ("reach", [8, 8, 2, 4], [1, 6, 0, 0], [1, 7 / 8, 2 / 8, 2 / 2], [1, 7 / 8, 2 / 8, 3 / 8]),
    ],
)
def test_every_mode_on_hand_counted_journeys(db, cfg, mode, entered, dropped, from_previous, from_first):
    _build(db, cfg, MODE_CASES)
    result = funnel(db, STEPS, mode=mode)
    assert result["step_index"].to_list() == [1, 2, 3, 4]
    assert _entered(result) == entered
    assert _dropped(result) == dropped
    assert _rates(result, "conversion_from_previous") == [round(v, 6) for v in from_previous]
    assert _rates(result, "conversion_from_first") == [round(v, 6) for v in from_first]
    labels = [f"any {k} of 4" for k in range(1, 5)] if mode == "unordered" else STEPS.split(",")
    assert result["step"].to_list() == labels


def test_exact_rows_of_a_small_funnel(db, cfg):
    _build(db, cfg, {
        "u_views_carts_buys": [(V, 0), (C, 1), (P, 3)],
        "u_views_carts": [(V, 0), (C, 2)],
        "u_views": [(V, 0)],
    })
    result = funnel(db, "view_item,add_to_cart,purchase")
    assert result.columns == [
        "step_index", "step", "n_entered",
        "conversion_from_previous", "conversion_from_previous_low", "conversion_from_previous_high",
        "conversion_from_first", "conversion_from_first_low", "conversion_from_first_high", "n_dropped",
        "median_seconds_from_previous", "p25_seconds_from_previous", "p75_seconds_from_previous",
        "p90_seconds_from_previous", "median_seconds_from_first", "p25_seconds_from_first",
        "p75_seconds_from_first", "p90_seconds_from_first",
    ]

    def wilson(x, n):
        low, high = wilson_interval(x, n)
        return float(low), float(high)

    none4 = (None, None, None, None)
    expected = [
        (1, V, 3, 1.0, *wilson(3, 3), 1.0, *wilson(3, 3), 1, *none4, *none4),
        # cart 60 s and 120 s after the view: median 90, p25 75, p75 105, p90 114 (linear interpolation)
        (2, C, 2, 2 / 3, *wilson(2, 3), 2 / 3, *wilson(2, 3), 1, 90.0, 75.0, 105.0, 114.0, 90.0, 75.0, 105.0, 114.0),
        (3, P, 1, 1 / 2, *wilson(1, 2), 1 / 3, *wilson(1, 3), 0, *(120.0,) * 4, *(180.0,) * 4),
    ]
    for got, want in zip(result.rows(), expected, strict=True):
        assert got == pytest.approx(want)


def test_strict_in_session_scope_does_not_cross_sessions(db, cfg):
    _build(db, cfg, MODE_CASES)
    result = funnel(db, "view_item,add_to_cart", mode="strict", scope="session")
    # sessions with a view: 8 (u_returns_next_session_to_cart's first session only has the view)
    assert _entered(result) == [8, 4]
    assert funnel_dropped(db, "view_item,add_to_cart", 1, mode="strict", scope="session")["session_key"].to_list() == [
        "u_browses_between_steps:1", "u_cart_before_view:1", "u_returns_next_session_to_cart:1", "u_views_only:1",
    ]


def test_same_timestamp_converts_in_event_id_order(db, cfg):
    _build(db, cfg, {
        "u_same_minute_cart_then_view": [(C, 0), (V, 0)],  # event ids -0 < -1: cart sorts first
        "u_same_minute_view_then_cart": [(V, 0), (C, 0)],
    })
    result = funnel(db, "view_item,add_to_cart")
    assert _entered(result) == [2, 1]
    assert result["median_seconds_from_previous"].to_list() == [None, 0.0]
    assert funnel_dropped(db, "view_item,add_to_cart", 1)["user_key"].to_list() == ["u_same_minute_cart_then_view"]


# -- windows and exclusions ----------------------------------------------------------------------

WINDOW_CASES = {
    "u_views_then_buys_after_window": [(V, 0), (C, 10), (K, 20), (P, 8 * DAY)],
    "u_buys_exactly_at_window": [(V, 0), (C, 10), (K, 20), (P, 7 * DAY)],
    "u_second_attempt_within_window": [(V, 0), (V, 9 * DAY), (C, 9 * DAY + 1), (K, 9 * DAY + 2), (P, 9 * DAY + 3)],
}


def test_conversion_window_from_the_first_step(db, cfg):
    _build(db, cfg, WINDOW_CASES)
    assert _entered(funnel(db, STEPS)) == [3, 3, 3, 3]
    within = funnel(db, STEPS, window="7d")
    assert _entered(within) == [3, 3, 3, 2]  # the 8-day purchase is out; exactly 7 days is in
    # the second attempt converts in 3 minutes; the boundary journey in 7 days
    assert within["median_seconds_from_first"].to_list()[3] == (180 + 7 * DAY * 60) / 2
    assert _entered(funnel(db, STEPS, window=dt.timedelta(days=7))) == [3, 3, 3, 2]


def test_per_step_windows(db, cfg):
    _build(db, cfg, {
        "u_slow_to_cart": [(V, 0), (C, 120)],  # 2 h > 1 h
        "u_views_again_then_carts": [(V, 0), (V, 100), (C, 120)],  # the second view is 20 min before
        "u_slow_to_pay": [(V, 0), (C, 10), (K, 20), (P, 60)],  # 40 min > 30 min
        "u_retries_checkout_then_pays": [(V, 0), (C, 10), (K, 20), (K, 100), (P, 110)],
        "u_slow_checkout_is_fine": [(V, 0), (C, 10), (K, 300), (P, 310)],  # no limit before checkout
    })
    result = funnel(db, STEPS, step_windows="1h,none,30m")
    assert _entered(result) == [5, 4, 3, 2]
    assert _dropped(result) == [1, 1, 1, 0]
    assert _entered(funnel(db, STEPS, step_windows=["1h", None, "30m"], window="2h")) == [5, 4, 2, 1]


EXCLUSION_CASES = {
    "u_chats_between_cart_and_checkout": [(V, 0), (C, 1), ("live_chat_start", 2), (K, 3), (P, 4)],
    "u_chats_then_restarts": [(V, 0), ("live_chat_start", 1), (V, 2), (C, 3), (K, 4), (P, 5)],
    "u_chats_before_viewing": [("live_chat_start", 0), (V, 1), (C, 2), (K, 3), (P, 4)],
    "u_chats_after_buying": [(V, 0), (C, 1), (K, 2), (P, 3), ("live_chat_start", 4)],
    "u_chats_between_checkout_and_purchase": [(V, 0), (C, 1), (K, 2), ("live_chat_start", 3), (P, 4)],
}


@pytest.mark.parametrize(
    ("exclude", "entered"),
    [
        ((), [5, 5, 5, 5]),
        # between any two steps: cart->checkout and checkout->purchase chats stop at 2 and 3;
        # u_chats_then_restarts converts on its clean second attempt
        (("live_chat_start",), [5, 5, 4, 3]),
        (("touchpoint:live_chat",), [5, 5, 4, 3]),
        (("live_chat_start@3-4",), [5, 5, 5, 4]),  # only between checkout and purchase
        (("live_chat_start@1-2",), [5, 5, 5, 5]),  # the restart's second view is after the chat
        (("live_chat_start@2-3", "live_chat_start@3-4"), [5, 5, 4, 3]),
    ],
)
def test_exclusion_steps(db, cfg, exclude, entered):
    _build(db, cfg, EXCLUSION_CASES)
    assert _entered(funnel(db, STEPS, exclude=exclude)) == entered


def test_exclusion_stops_a_journey_at_the_step_before(db, cfg):
    _build(db, cfg, EXCLUSION_CASES)
    dropped = funnel_dropped(db, STEPS, 2, exclude="live_chat_start")
    assert dropped["user_key"].to_list() == ["u_chats_between_cart_and_checkout"]
    assert funnel_dropped(db, STEPS, 3, exclude="live_chat_start")["user_key"].to_list() == [
        "u_chats_between_checkout_and_purchase"
    ]


def test_unordered_exclusion_ends_the_attempt(db, cfg):
    _build(db, cfg, {
        "u_views_chats_then_carts": [(V, 0), ("live_chat_start", 1), (C, 2)],
        "u_views_and_carts": [(V, 0), (C, 2)],
    })
    assert _entered(funnel(db, "view_item,add_to_cart", mode="unordered")) == [2, 2]
    assert _entered(funnel(db, "view_item,add_to_cart", mode="unordered", exclude="live_chat_start")) == [2, 1]


# -- counting ------------------------------------------------------------------------------------

COUNT_CASES = {
    "u_buys_twice": [
        (V, 0), (C, 1), (K, 2), (P, 3), (V, 2 * DAY), (C, 2 * DAY + 1), (K, 2 * DAY + 2), (P, 2 * DAY + 3),
    ],
    "u_buys_then_browses": [(V, 0), (C, 1), (K, 2), (P, 3), (V, DAY)],
    "u_pays_twice_in_one_go": [(V, 0), (C, 1), (K, 2), (P, 3), (P, 4)],  # the second purchase starts nothing new
}


@pytest.mark.parametrize(
    ("scope", "count", "entered"),
    [
        ("user", "users", [3, 3, 3, 3]),
        ("user", "conversions", [5, 4, 4, 4]),  # two purchases of u_buys_twice; a browsing re-entry
        ("session", "sessions", [5, 4, 4, 4]),
        ("session", "users", [3, 3, 3, 3]),
        ("session", "conversions", [5, 4, 4, 4]),
    ],
)
def test_counting_users_sessions_and_conversions(db, cfg, scope, count, entered):
    _build(db, cfg, COUNT_CASES)
    result = funnel(db, STEPS, scope=scope, count=count)
    assert _entered(result) == entered
    assert result["conversion_from_first"].to_list()[-1] == pytest.approx(entered[-1] / entered[0])


def test_conversions_drill_down_names_the_journey_once(db, cfg):
    _build(db, cfg, COUNT_CASES)
    assert funnel_dropped(db, STEPS, 1, count="conversions")["user_key"].to_list() == ["u_buys_then_browses"]


# -- times and intervals -------------------------------------------------------------------------

TIME_CASES = {
    "u_carts_after_1m": [(V, 0), (C, 1), (K, 3)],
    "u_carts_after_2m": [(V, 0), (C, 2), (K, 3)],
    "u_carts_after_3m": [(V, 0), (C, 3), (K, 9)],
    "u_carts_after_4m": [(V, 0), (C, 4)],
    "u_carts_after_10m": [(V, 0), (C, 10)],
}


def test_time_quantiles_by_hand(db, cfg):
    _build(db, cfg, TIME_CASES)
    result = funnel(db, "view_item,add_to_cart,begin_checkout")
    row = {name: result[name].to_list() for name in result.columns}

    def quantiles(since: str, step: int) -> list[float]:
        return [row[f"{q}_seconds_from_{since}"][step - 1] for q in ("p25", "median", "p75", "p90")]

    # cart after view: 60 120 180 240 600 s; linear interpolation at (n-1)q: p90 at 3.6 -> 240 + .6 * 360
    assert quantiles("previous", 2) == pytest.approx([120, 180, 240, 456])
    # checkout after cart: 120 60 360 -> sorted 60 120 360: p25 at .5 -> 90, p75 at 1.5 -> 240, p90 at 1.8 -> 312
    assert quantiles("previous", 3) == pytest.approx([90, 120, 240, 312])
    # checkout after view: 180 180 540
    assert quantiles("first", 3) == pytest.approx([180, 180, 360, 468])
    assert row["median_seconds_from_previous"][0] is None and row["median_seconds_from_first"][0] is None


def test_wilson_bounds_match_stats(db, cfg):
    _build(db, cfg, MODE_CASES)
    result = funnel(db, STEPS)
    entered = np.array(_entered(result))
    previous = np.concatenate([[entered[0]], entered[:-1]])
    low, high = wilson_interval(entered, previous)
    assert result["conversion_from_previous_low"].to_list() == pytest.approx(list(low))
    assert result["conversion_from_previous_high"].to_list() == pytest.approx(list(high))
    low, high = wilson_interval(entered, np.full(4, entered[0]))
    assert result["conversion_from_first_low"].to_list() == pytest.approx(list(low))
    assert result["conversion_from_first_high"].to_list() == pytest.approx(list(high))


# -- breakdowns ----------------------------------------------------------------------------------


def _device_cases() -> dict:
    cases = {}
    for device, buyers in (("desktop", 8), ("mobile", 2), ("tablet", 5)):
        for i in range(10):
            journey = [(V, 0, {"device": device})] + ([(P, 5, {"device": device})] if i < buyers else [])
            cases[f"u_{device}_{'buys' if i < buyers else 'leaves'}_{i}"] = journey
    return cases


def test_breakdown_by_device_with_group_vs_rest_tests(db, cfg):
    _build(db, cfg, _device_cases())
    result = funnel(db, "view_item,purchase", by="device")
    assert result.select("device", "step_index", "n_entered").rows() == [
        ("desktop", 1, 10), ("desktop", 2, 8), ("mobile", 1, 10), ("mobile", 2, 2), ("tablet", 1, 10), ("tablet", 2, 5),
    ]
    z, p = two_proportion_test([8, 2, 5], [10, 10, 10], [7, 13, 10], [20, 20, 20])
    adjusted = benjamini_hochberg(p)
    tests = result.filter(result["step_index"] == 2).select("vs_rest_z", "vs_rest_p_value", "vs_rest_p_adjusted")
    assert tests["vs_rest_z"].to_list() == pytest.approx(list(z))
    assert tests["vs_rest_p_value"].to_list() == pytest.approx(list(p))
    assert tests["vs_rest_p_adjusted"].to_list() == pytest.approx(list(adjusted))
    assert result.filter(result["device"] == "mobile")["vs_rest_z"].n_unique() == 1  # a group-level statistic


def test_breakdown_by_channel_cohort_variant_and_segment(db, cfg):
    google = {"source": "google", "medium": "cpc"}
    _build(db, cfg, {
        "u_search_buyer": [(V, 0, {**google, "properties": json.dumps({"exp_checkout": "B"})}), (P, 5, google)],
        "u_direct_leaver": [(V, 1, {"properties": json.dumps({"exp_checkout": "A"})})],
        "u_february_buyer": [(V, 40_000), (P, 40_005, {"properties": json.dumps({"exp_checkout": "A"})})],
    })
    steps = "view_item,purchase"

    def final(frame, column):
        return dict(zip(frame[column].to_list()[1::2], frame["n_entered"].to_list()[1::2], strict=True))

    assert final(funnel(db, steps, by="channel"), "channel") == {"Direct": 1, "Paid Search": 1}
    assert final(funnel(db, steps, by="cohort"), "cohort") == {"2025-01": 1, "2025-02": 1}
    # the variant is the first value of the property in the journey, wherever it appears
    assert final(funnel(db, steps, by="variant", variant_key="exp_checkout"), "variant") == {"A": 1, "B": 1}
    segments = {"u_search_buyer": "vip", "u_direct_leaver": "vip"}
    assert final(funnel(db, steps, by="segment", segments=segments), "segment") == {"(missing)": 1, "vip": 1}


def test_variant_is_the_first_value_in_each_journey(db, cfg):
    def exp(value):
        return {"properties": json.dumps({"exp": value})}

    _build(db, cfg, {
        # session 1: view, then the third event carries A; session 2 (after 60 min): B first, then C
        "u_two_sessions": [(V, 0), ("page_view", 1), (C, 2, exp("A")), (V, 60, exp("B")), (P, 61, exp("C"))],
        # the value is on the last event of its only session
        "u_late_value": [(V, 0), (C, 1), (P, 2, exp("B"))],
    })
    steps = "view_item,add_to_cart"

    def entered(**options):
        frame = funnel(db, steps, by="variant", variant_key="exp", **options)
        return {(g, s): n for g, s, n in zip(frame["variant"], frame["step"], frame["n_entered"], strict=True)}

    # user journeys: u_two_sessions is A (its first value), u_late_value B; both reach the cart
    assert entered() == {("A", V): 1, ("A", C): 1, ("B", V): 1, ("B", C): 1}
    # session journeys: session 1 of u_two_sessions is A (view, cart), its session 2 B (view only),
    # u_late_value's session B (view, cart). A step joined to the event after its own (index + 2)
    # misses each session's first event and gives other values; joined to the event before it
    # (index + 0), the channel step stands for the first event and the values are the same.
    assert entered(scope="session") == {("A", V): 1, ("A", C): 1, ("B", V): 2, ("B", C): 1}


# -- drill-down and why-dropped ------------------------------------------------------------------


def test_drill_down_ids_are_exact(db, cfg):
    _build(db, cfg, MODE_CASES)
    assert funnel_dropped(db, STEPS, 1)["user_key"].to_list() == ["u_cart_before_view", "u_views_only"]
    assert funnel_dropped(db, STEPS, 2)["user_key"].to_list() == [
        "u_abandons_cart", "u_browses_between_steps", "u_returns_next_session_to_cart", "u_skips_checkout",
    ]
    assert funnel_dropped(db, STEPS, 3).is_empty()
    by_session = funnel_dropped(db, STEPS, 2, scope="session")
    assert by_session.columns == ["session_key", "user_key"]
    assert "u_abandons_cart:1" in by_session["session_key"].to_list()


def test_why_dropped_finds_the_planted_error_page(db, cfg):
    journeys = {}
    for i in range(8):
        journeys[f"u_error_then_drops_{i}"] = [(V, 0), ("error_page", 1), (C, 2)]
    for i in range(2):
        journeys[f"u_error_then_checks_out_{i}"] = [(V, 0), ("error_page", 1), (C, 2), (K, 3)]
    for i in range(2):
        journeys[f"u_clean_then_drops_{i}"] = [(V, 0), (C, 2)]
    for i in range(8):
        journeys[f"u_clean_then_checks_out_{i}"] = [(V, 0), (C, 2), (K, 3)]
    _build(db, cfg, journeys)
    why = funnel_why(db, "view_item,add_to_cart,begin_checkout", 2)
    # error_page is unmapped, so it is both the event and the touchpoint; everything else everybody saw
    counts = why.select("feature_kind", "feature", "n_with", "n_dropped_with", "n_without", "n_dropped_without")
    assert counts.rows() == [
        ("event", "error_page", 10, 8, 10, 2), ("touchpoint", "error_page", 10, 8, 10, 2),
    ]
    ratio, low, high, p = odds_ratio(8, 2, 2, 8)
    assert float(ratio) == 16.0
    assert why["odds_ratio"].to_list() == pytest.approx([16.0, 16.0])
    assert why["odds_ratio_low"].to_list() == pytest.approx([float(low)] * 2)
    assert why["odds_ratio_high"].to_list() == pytest.approx([float(high)] * 2)
    assert why["p_value"].to_list() == pytest.approx([float(p)] * 2)
    assert why["p_adjusted"].to_list() == pytest.approx(list(benjamini_hochberg([float(p)] * 2)))
    assert why["drop_rate_with"].to_list() == [0.8, 0.8] and why["drop_rate_without"].to_list() == [0.2, 0.2]
    assert why["step"].to_list() == [C, C]


def test_why_dropped_sees_only_what_came_before_the_step(db, cfg):
    _build(db, cfg, {
        **{f"u_error_after_cart_drops_{i}": [(V, 0), (C, 1), ("error_page", 2)] for i in range(5)},
        **{f"u_checks_out_{i}": [(V, 0), (C, 1), (K, 2)] for i in range(5)},
    })
    assert funnel_why(db, "view_item,add_to_cart,begin_checkout", 2, min_count=1).is_empty()


# -- steps and options ---------------------------------------------------------------------------


def test_steps_resolve_events_then_touchpoints_then_stages(db, cfg):
    _build(db, cfg, MODE_CASES)
    values = step_values(db)
    assert resolve_step("purchase", values).refs == (StepRef("event", "purchase"),)  # also a touchpoint
    assert resolve_step("cart", values).refs == (StepRef("touchpoint", "cart"),)
    assert resolve_step("Purchase", values).refs == (StepRef("stage", "Purchase"),)
    assert resolve_step("product_page|touchpoint:purchase", values).refs == (
        StepRef("touchpoint", "product_page"), StepRef("touchpoint", "purchase"),
    )
    # touchpoint and stage steps: the Purchase stage (checkout or purchase) also takes u_skips_checkout
    assert _entered(funnel(db, "product_page,cart,stage:Purchase")) == [8, 6, 3]


@pytest.mark.parametrize(
    ("steps", "options", "message"),
    [
        ("view_item,add_to_crt", {}, "unknown step 'add_to_crt': not an event name, touchpoint or stage in the data; "
                                     "did you mean 'add_to_cart'?"),
        ("view_item,stage:purchase", {}, "unknown stage 'purchase' in step 'stage:purchase'; did you mean 'Purchase'?"),
        ("view_item,,purchase", {}, "step 2 is empty"),
        ("view_item|,purchase", {}, "has an empty alternative"),
        ("view_item", {}, "a funnel needs 2 to 30 steps, got 1"),
        (STEPS, {"mode": "sideways"}, "mode must be one of ordered, strict, unordered, open, reach, not 'sideways'"),
        (STEPS, {"scope": "sesion"}, "did you mean 'session'?"),
        (STEPS, {"window": "7x"}, "window must be a duration like 30m, 1h, 7d or none, not '7x'"),
        (STEPS, {"window": "0h"}, "window must be longer than zero"),
        (STEPS, {"step_windows": "1h,2h"}, "step windows need 3 values (one per step after the first), got 2"),
        (STEPS, {"count": "sessions"}, "count sessions needs scope session"),
        (STEPS, {"mode": "unordered", "count": "conversions"}, "count conversions needs mode ordered or strict"),
        (STEPS, {"mode": "reach", "window": "1d"}, "mode reach counts every step at any time"),
        (STEPS, {"mode": "unordered", "step_windows": "1h,1h,1h"}, "mode unordered has no step order"),
        (STEPS, {"mode": "unordered", "exclude": "page_view@1-2"}, "only takes exclusions over the whole funnel"),
        (STEPS, {"exclude": "add_to_cart"}, "exclusion 'add_to_cart': event 'add_to_cart' is also step 2"),
        (STEPS, {"exclude": "page_view@3-9"}, "the range must be a-b with 1 <= a < b <= 4"),
        (STEPS, {"exclude": "page_view@3"}, "write the step range as EVENT@a-b"),
        (STEPS, {"by": "weather"}, "by must be one of channel, device, country, segment, variant, cohort"),
        (STEPS, {"by": "variant"}, "by variant needs variant_key"),
        (STEPS, {"variant_key": "exp"}, "variant_key only applies with by variant"),
        (STEPS, {"by": "segment"}, "by segment needs segments"),
    ],
)
def test_bad_steps_and_options_give_one_clear_error(db, cfg, steps, options, message):
    _build(db, cfg, MODE_CASES)
    with pytest.raises(FunnelError) as err:
        funnel(db, steps, **options)
    assert message in str(err.value)


def test_bad_drill_down_step(db, cfg):
    _build(db, cfg, MODE_CASES)
    with pytest.raises(FunnelError, match="from 1 to 3"):
        funnel_dropped(db, STEPS, 4)
    with pytest.raises(FunnelError, match="from 1 to 3"):
        funnel_why(db, STEPS, 0)


def test_steps_are_bound_values_not_sql(db, cfg):
    _build(db, cfg, {"u_odd_event": [("x'); drop table staging.stg_events; --", 0), (V, 1)]})
    result = funnel(db, "event:x'); drop table staging.stg_events; --,view_item")
    assert _entered(result) == [1, 1]
    assert db.has_table("staging", "stg_events")


def test_runs_on_a_read_only_database(tmp_path, cfg):
    path = tmp_path / "ro.duckdb"
    with Database(path) as writer:
        _build(writer, cfg, MODE_CASES)
    with Database(path, read_only=True) as reader:
        assert _entered(funnel(reader, STEPS, by="device")) == [8, 6, 2, 2]
        assert funnel_spec(reader, STEPS).n_steps == 4
