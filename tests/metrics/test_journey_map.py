"""The journey map on hand-computed literal journeys; the build model marts.mart_journey_map equals the
function's defaults; time in stage agrees with pipeline.paths.stage_moves."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from pipeline.build import build
from pipeline.db import Database
from pipeline.metrics import stats
from pipeline.metrics.conversion import MetricError
from pipeline.metrics.journey_map import from_mart, journey_map
from pipeline.paths import PathOptions, stage_moves
from tests.conftest import REPO, load_events, make_journeys

PAID = {"source": "google", "medium": "cpc"}
SITE = "https://shop.example.com"

# T0 = 2025-01-06 09:00. Channel steps: u1 paid_search (Awareness), the others direct (Interest).
JOURNEYS = {
    "u1_full_journey": [
        ("view_item", 0, PAID), ("add_to_cart", 2, PAID), ("begin_checkout", 5, PAID),
        ("purchase", 6, {**PAID, "revenue": 40.0}), ("survey_response", 7, {**PAID, "properties": '{"score": 5}'}),
    ],
    "u2_stops_at_cart": [("view_item", 0), ("add_to_cart", 1)],
    "u3_browses": [("page_view", 0, {"page_url": f"{SITE}/"}), ("view_item", 3)],
    "u4_buys_then_reviews": [
        ("view_item", 0), ("add_to_cart", 1), ("begin_checkout", 2), ("purchase", 4, {"revenue": 60.0}),
        ("survey_response", 5, {"properties": '{"score": 3}'}),
        ("review_submitted", 1440, {"properties": '{"rating": 4}'}),  # a day later: a second session
    ],
}


@pytest.fixture
def shop(db, cfg):
    load_events(db, make_journeys(JOURNEYS))
    build(db, cfg)
    return db


def test_journey_map_by_hand(shop):
    frame = journey_map(shop)
    assert frame["stage"].to_list() == ["Awareness", "Interest", "Consideration", "Purchase", "Loyalty"]
    rows = {r["stage"]: r for r in frame.iter_rows(named=True)}
    # reached: Awareness u1; Interest all 4; Consideration u1, u2, u4; Purchase and Loyalty u1, u4
    assert {s: r["n_reached"] for s, r in rows.items()} == {
        "Awareness": 1, "Interest": 4, "Consideration": 3, "Purchase": 2, "Loyalty": 2}
    assert rows["Interest"]["reach_rate"] == 1.0 and rows["Purchase"]["reach_rate"] == 0.5
    # progressed (a later stage after entering): Interest u1, u2, u4 (not u3); Consideration u1, u4;
    # Purchase u1, u4 (surveys are Loyalty); Loyalty is last
    assert {s: r["n_progressed"] for s, r in rows.items()} == {
        "Awareness": 1, "Interest": 3, "Consideration": 2, "Purchase": 2, "Loyalty": 0}
    # abandoned (furthest stage, no purchase): u3 at Interest, u2 at Consideration
    assert {s: r["n_abandoned"] for s, r in rows.items()} == {
        "Awareness": 0, "Interest": 1, "Consideration": 1, "Purchase": 0, "Loyalty": 0}
    assert rows["Interest"]["progression_rate"] == 0.75 and rows["Interest"]["abandonment_rate"] == 0.25
    low, high = stats.wilson_interval(2, 3)
    consideration = rows["Consideration"]
    assert (consideration["progression_rate_low"], consideration["progression_rate_high"]) == (
        pytest.approx(low), pytest.approx(high))
    # visits (channel steps left out): u1 Interest 0-2 min, Consideration 2-5, Purchase 5-7, Loyalty last;
    # u2 Interest 0-1, Consideration last; u3 Interest last; u4 Interest 0-1, Consideration 1-2,
    # Purchase 2-5, Loyalty (survey, then the review a day later: the same visit) last
    # medians: Interest of 120, 60, 60 s; Consideration of 180, 60; Purchase of 120, 180
    assert {s: r["median_seconds_in_stage"] for s, r in rows.items()} == {
        "Awareness": None, "Interest": 60.0, "Consideration": 120.0, "Purchase": 150.0, "Loyalty": None}
    # steps per touchpoint: Interest has direct x4 (u2, u3, u4 twice), product_page x4, landing_page x1
    assert {s: r["top_touchpoints"] for s, r in rows.items()} == {
        "Awareness": "paid_search (1)",
        "Interest": "direct (4), product_page (4), landing_page (1)",
        "Consideration": "cart (3)",
        "Purchase": "checkout (2), purchase (2)",
        "Loyalty": "survey (2), review (1)",
    }
    # revenue of the users who reached the stage: u1 40, u4 60
    assert {s: r["revenue"] for s, r in rows.items()} == {
        "Awareness": 40.0, "Interest": 100.0, "Consideration": 100.0, "Purchase": 100.0, "Loyalty": 100.0}
    # satisfaction of those users: surveys 5 (u1) and 3 (u4), the review 4 (u4)
    assert (rows["Awareness"]["mean_survey_score"], rows["Awareness"]["n_survey_responses"]) == (5.0, 1)
    assert (rows["Awareness"]["mean_review_rating"], rows["Awareness"]["n_reviews"]) == (None, 0)
    assert (rows["Interest"]["mean_survey_score"], rows["Interest"]["mean_review_rating"]) == (4.0, 4.0)


def test_top_n_session_scope_and_goal(shop):
    one = journey_map(shop, top_n=1)
    assert one.filter(pl.col("stage") == "Interest")["top_touchpoints"].to_list() == ["direct (4)"]
    sessions = {r["stage"]: r for r in journey_map(shop, scope="session").iter_rows(named=True)}
    # 5 sessions: u4's review session reaches Interest (direct) and Loyalty and buys nothing, so with
    # the session as the journey it ends at Loyalty without converting
    assert sessions["Interest"]["n_reached"] == 5
    assert (sessions["Loyalty"]["n_reached"], sessions["Loyalty"]["n_abandoned"]) == (3, 1)
    assert sessions["Loyalty"]["revenue"] == 100.0 and sessions["Loyalty"]["mean_review_rating"] == 4.0
    # goal = the cart touchpoint: u1, u2, u4 convert, so only u3 is abandoned (at Interest)
    by_cart = journey_map(shop, goal="cart")
    assert by_cart["n_abandoned"].to_list() == [0, 1, 0, 0, 0]
    with pytest.raises(MetricError, match="scope must be one of"):
        journey_map(shop, scope="visit")  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="top_n must be >= 1"):
        journey_map(shop, top_n=0)


def test_no_survey_or_review_events_give_nulls(db, cfg):
    load_events(db, make_journeys({"u1": [("view_item", 0), ("purchase", 1, {"revenue": 5.0})]}))
    build(db, cfg)
    frame = journey_map(db)
    assert frame["mean_survey_score"].to_list() == [None, None]
    assert frame["mean_review_rating"].to_list() == [None, None]
    assert frame["n_survey_responses"].to_list() == [0, 0]


def test_mart_equals_the_function_defaults(shop):
    mart = shop.table("marts.mart_journey_map")
    frame = journey_map(shop)
    columns = [c for c in mart.columns]
    assert columns == ["stage", "stage_order", "n_reached", "reach_rate", "n_progressed", "progression_rate",
                       "n_abandoned", "abandonment_rate", "median_seconds_in_stage", "top_touchpoints", "revenue",
                       "mean_survey_score", "n_survey_responses", "mean_review_rating", "n_reviews"]
    left = mart.with_columns(pl.col("revenue").cast(pl.Float64), pl.col("stage_order").cast(pl.Int64))
    right = frame.select(columns).with_columns(pl.col("stage_order").cast(pl.Int64))
    assert left.rows() == right.rows()
    # what the report reads: the mart with the intervals, equal to the function's whole frame
    read = from_mart(shop)
    assert read.columns == frame.columns
    assert read.with_columns(pl.col("stage_order").cast(pl.Int64)).rows() == frame.with_columns(
        pl.col("stage_order").cast(pl.Int64)).rows()


def test_time_in_stage_matches_stage_moves(shop):
    moves = stage_moves(shop, PathOptions(scope="user"))
    expected = {r["from_stage"]: r["seconds"] for r in moves.drop_nulls("seconds_in_stage").group_by("from_stage")
                .agg(pl.col("seconds_in_stage").median().alias("seconds")).iter_rows(named=True)}
    got = {r["stage"]: r["median_seconds_in_stage"] for r in journey_map(shop).iter_rows(named=True)
           if r["median_seconds_in_stage"] is not None}
    assert got == expected
    np.testing.assert_allclose(sorted(got.values()), [60.0, 120.0, 150.0])


def test_journey_map_command(tmp_path, cfg):
    path = tmp_path / "cli.duckdb"
    database = Database(path)
    load_events(database, make_journeys(JOURNEYS))
    build(database, cfg)
    database.close()
    run = subprocess.run([sys.executable, "-m", "pipeline", "journey-map", "--db", str(path), "--top", "2",
                          "--format", "json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert [r["n_reached"] for r in rows] == [1, 4, 3, 2, 2]
    assert rows[1]["top_touchpoints"] == "direct (4), product_page (4)"
    bad = subprocess.run([sys.executable, "-m", "pipeline", "journey-map", "--db", str(path), "--scope", "visit"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "scope must be one of user, session" in bad.stderr
