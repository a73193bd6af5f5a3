"""Effort to purchase, non-linear journeys, channel mix and path drivers on hand-computed cases;
transitions on the real REES46 sample against an independent pandas computation."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from pipeline.build import build
from pipeline.db import load_sql
from pipeline.ingest import ingest_files
from pipeline.paths import (
    PathOptions,
    backtracking,
    backward_transitions,
    channel_mix,
    effort_histogram,
    effort_summary,
    loops,
    path_drivers,
    stage_matrix,
    touchpoints_to_goal,
    transitions,
)
from pipeline.report.data import ReportData
from tests.conftest import DATASETS, load_events, make_journeys

PAID = {"source": "google", "medium": "cpc"}
MAIL = {"source": "newsletter", "medium": "email"}


@pytest.fixture
def journeys(db, cfg):
    load_events(db, make_journeys({
        "u1_two_sessions_two_channels": [("page_view", 0, PAID), ("view_item", 1, PAID), ("view_item", 300, MAIL),
                                         ("add_to_cart", 301, MAIL), ("purchase", 302, MAIL)],
        "u2_quick_buyer": [("view_item", 0), ("purchase", 1)],
        "u3_never_buys": [("view_item", 0)],
        "u4_goes_back": [("view_item", 0), ("add_to_cart", 1), ("view_item", 2), ("add_to_cart", 3),
                         ("begin_checkout", 4), ("purchase", 5)],
    }))
    build(db, cfg)
    return db


def test_touchpoints_to_purchase_by_hand(journeys):
    per_user = touchpoints_to_goal(journeys, PathOptions())
    rows = {r["user_key"]: r for r in per_user.iter_rows(named=True)}
    assert set(rows) == {"u1_two_sessions_two_channels", "u2_quick_buyer", "u4_goes_back"}
    u1 = rows["u1_two_sessions_two_channels"]
    # paid_search, landing_page, product_page | email, product_page, cart | purchase
    assert (u1["n_touchpoints"], u1["n_sessions"], u1["n_channels"]) == (6, 2, 2)
    assert u1["days_to_goal"] == pytest.approx(302 / 1440)
    assert u1["acquisition_channel"] == "Paid Search"
    u2 = rows["u2_quick_buyer"]
    assert (u2["n_touchpoints"], u2["n_sessions"], u2["n_channels"]) == (2, 1, 1)  # direct, product_page
    summary = effort_summary(per_user)
    overall = summary.filter(summary["group"] == "all").row(0, named=True)
    # u4: direct, product_page, cart, product_page, cart, checkout | purchase -> 6 as well
    assert rows["u4_goes_back"]["n_touchpoints"] == 6
    assert overall["n_converted"] == 3 and overall["n_touchpoints_median"] == 6  # of 2, 6, 6
    hist = effort_histogram(per_user)
    assert hist.rows() == [(2, 1, pytest.approx(1 / 3)), (6, 2, pytest.approx(2 / 3))]


def test_stage_backtracking_and_matrix(journeys):
    options = PathOptions(scope="user")
    back = backtracking(journeys, options)
    assert (back["n_journeys"], back["n_backtracking"]) == (4, 1)
    assert back["backtracking_share"] == 0.25 and back["conversion_rate_backtracking"] == 1.0
    assert backward_transitions(journeys, options).rows() == [("Consideration", "Interest", 1, 1)]
    matrix = {(r["from_stage"], r["to_stage"]): r for r in stage_matrix(journeys, options).iter_rows(named=True)}
    # u4: Interest(0) > Consideration(1) > Interest(2) > Consideration(3) > Purchase(4..5) > end
    assert matrix[("Consideration", "Interest")]["is_backward"] is True
    assert matrix[("Purchase", "path_end")]["n_transitions"] == 3
    # Interest -> Consideration: u1 (300 min in Interest across its two sessions) and u4 twice (60 s each)
    assert matrix[("Interest", "Consideration")]["n_transitions"] == 3
    assert matrix[("Interest", "Consideration")]["median_seconds_in_stage"] == 60


def test_loops(journeys):
    frame = loops(journeys, PathOptions(scope="user", level="event"))
    assert frame.select("loop_path", "n_loops", "n_journeys", "conversion_rate").rows() == [
        ("add_to_cart > view_item > add_to_cart", 1, 1, 1.0),
        ("view_item > add_to_cart > view_item", 1, 1, 1.0),
    ]


def test_loops_by_device_by_hand(db, cfg):
    mobile, desktop = {"device": "mobile"}, {"device": "desktop"}
    load_events(db, make_journeys({
        # direct, product_page, cart, product_page, cart: both loops
        "u_m1": [("view_item", 0, mobile), ("add_to_cart", 1, mobile), ("view_item", 2, mobile),
                 ("add_to_cart", 3, mobile)],
        # at product_page three times in a row: one session at the node, and a repeat is not a loop
        "u_m2": [("view_item", 0, mobile), ("view_item", 1, mobile), ("view_item", 2, mobile)],
        "u_d1": [("view_item", 0, desktop), ("add_to_cart", 1, desktop), ("view_item", 2, desktop)],
        "u_d2": [("add_to_cart", 0, desktop), ("purchase", 1, desktop)],  # at cart, no loop
    }))
    build(db, cfg)
    frame = ReportData(db).loops_by_device
    assert frame.rows() == [
        ("cart > product_page > cart", "desktop", 2, 0, 0.0),
        ("cart > product_page > cart", "mobile", 1, 1, 1.0),
        ("product_page > cart > product_page", "desktop", 1, 1, 1.0),
        ("product_page > cart > product_page", "mobile", 2, 1, 0.5),
    ]
    # the top loop is the one in the most journeys (two against one)
    top = db.query(load_sql("analysis/loop_devices.sql"), {"top": 1})
    assert set(top["loop_path"]) == {"product_page > cart > product_page"}


def test_channel_mix(journeys):
    frame = channel_mix(journeys, PathOptions(scope="user"))
    assert frame.select("journey_kind", "n_journeys", "n_converted").rows() == [
        ("cross_channel", 1, 1), ("single_channel", 3, 2)]
    assert 0 <= frame["p_value"][0] <= 1


def test_path_drivers_find_the_planted_subpath(db, cfg):
    spec = {}
    for i in range(20):  # with chat: 15 of 20 buy
        steps = [("view_item", 0), ("live_chat_start", 1), ("add_to_cart", 2)]
        spec[f"chat_{i}"] = steps + ([("purchase", 3)] if i < 15 else [])
    for i in range(20):  # without chat: 5 of 20 buy
        steps = [("view_item", 0), ("add_to_cart", 2)]
        spec[f"plain_{i}"] = steps + ([("purchase", 3)] if i < 5 else [])
    load_events(db, make_journeys(spec))
    build(db, cfg)
    drivers = path_drivers(db, PathOptions(scope="user", level="event"), min_journeys=5)
    row = drivers.filter(drivers["ngram"] == "view_item > live_chat_start").row(0, named=True)
    assert (row["n_converted_with"], row["n_abandoned_with"]) == (15, 5)
    assert row["odds_ratio"] == pytest.approx(9.0)  # (15*15)/(5*5)
    assert row["lift"] == pytest.approx(1.5)  # 0.75 / 0.5
    assert row["p_adjusted"] < 0.01
    plain = drivers.filter(drivers["ngram"] == "view_item > add_to_cart").row(0, named=True)
    assert plain["odds_ratio"] == pytest.approx(1 / 9)
    assert "purchase" not in " ".join(drivers["ngram"])  # the goal itself is never a driver


def test_rees46_transitions_match_pandas(tmp_path, cfg):
    from pipeline.db import Database

    source = DATASETS / "rees46-multicat-2019oct-head" / "2019-Oct.csv"
    db = Database(tmp_path / "rees.duckdb")
    [result] = ingest_files(db, [source], column_map={"ts": "event_time", "event_name": "event_type",
                                                      "session_id": "user_session"})
    assert result.n_quarantined == 1 and result.n_read == 17435  # the cut-off last line
    cfg["sessions"]["session_source"] = "source"
    build(db, cfg)
    ours = transitions(db, PathOptions(scope="session", level="event"))

    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    frame = frame[frame["user_session"] != ""]  # the truncated line
    frame["ts"] = pd.to_datetime(frame["event_time"].str.replace(" UTC", ""))
    key = ["user_id", "event_time", "event_type", "user_session", "product_id"]
    frame = frame.drop_duplicates(key)
    # same tie rule as staging: ts, then the event id (md5 of the identifying fields, see typed_events.sql)
    frame["event_id"] = [
        hashlib.md5("|".join([u, "", t.strftime("%Y-%m-%dT%H:%M:%S.%f"), e, s, "", p, ""]).encode()).hexdigest()
        for u, t, e, s, p in zip(frame.user_id, frame.ts, frame.event_type, frame.user_session, frame.product_id,
                                 strict=True)
    ]
    # a journey is one user's session: the sample has one user_session shared by two user_ids
    frame = frame.sort_values(["user_id", "user_session", "ts", "event_id"])
    frame["prev"] = frame.groupby(["user_id", "user_session"])["event_type"].shift(1).fillna("path_start")
    edges = frame.groupby(["prev", "event_type"]).size()
    last = frame.groupby(["user_id", "user_session"])["event_type"].last().value_counts()
    expected = {(a, b): n for (a, b), n in edges.items()}
    expected.update({(a, "path_end"): n for a, n in last.items()})
    got = {(r["from_node"], r["to_node"]): r["n_transitions"] for r in ours.iter_rows(named=True)}
    assert got == expected
    n_sessions = len(frame.groupby(["user_id", "user_session"]))
    assert sum(n for (a, _), n in expected.items() if a == "path_start") == n_sessions == 5067
    db.close()
