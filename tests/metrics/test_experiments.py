"""A/B experiments (planted lift, sample ratio mismatch, assignment rules) and before/after
comparisons (a planted change is found significant; every statistic checked by hand or by scipy)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from pipeline.build import build
from pipeline.db import Database
from pipeline.metrics import stats
from pipeline.metrics.conversion import MetricError
from pipeline.metrics.experiments import compare_periods, experiment, parse_period, parse_weights
from tests.conftest import REPO, load_events, make_journeys

DAY = 1440


def _arm(variant: str, n_users: int, n_converting: int, start: int = 0) -> dict[str, list[tuple]]:
    """n_users exposed to ``variant`` (a view_item carrying it); the first n_converting buy a minute later."""
    spec = {}
    for i in range(n_users):
        steps = [("view_item", 0, {"properties": json.dumps({"variant": variant, "experiment": "hero"})})]
        if i < n_converting:
            steps.append(("purchase", 1, {"revenue": 10.0}))
        spec[f"{variant}_{start + i:04d}"] = steps
    return spec


def _build(db, cfg, spec):
    load_events(db, make_journeys(spec))
    build(db, cfg)
    return db


def test_planted_two_arm_lift(db, cfg):
    _build(db, cfg, {**_arm("control", 100, 10), **_arm("treatment", 100, 20)})
    frame = experiment(db, "variant")
    control, treatment = frame.row(0, named=True), frame.row(1, named=True)
    assert (control["variant"], control["is_control"], control["n_users"], control["n_converted"]) == (
        "control", True, 100, 10)
    assert control["absolute_lift"] is None and control["p_value"] is None
    # 20/100 vs 10/100: lift 0.10, relative +100%
    assert treatment["conversion_rate"] == 0.2 and treatment["absolute_lift"] == pytest.approx(0.1)
    assert treatment["relative_lift"] == pytest.approx(1.0)
    # pooled p = 30/200 = 0.15; se = sqrt(0.15 * 0.85 * (1/100 + 1/100)) = 0.0504975; z = 0.1 / se = 1.98030
    z = 0.1 / math.sqrt(0.15 * 0.85 * 0.02)
    assert treatment["z"] == pytest.approx(z) and treatment["z"] == pytest.approx(1.98030, abs=1e-5)
    assert treatment["p_value"] == pytest.approx(2 * sps.norm.sf(z)) and treatment["p_value"] == pytest.approx(
        0.047670, abs=1e-6)
    assert treatment["p_adjusted"] == pytest.approx(treatment["p_value"])  # one comparison
    # Wald interval of the difference: 0.1 +- 1.959964 * sqrt(0.1*0.9/100 + 0.2*0.8/100) = 0.1 +- 0.0980
    half = 1.959964 * math.sqrt(0.09 / 100 + 0.16 / 100)
    assert (treatment["absolute_lift_low"], treatment["absolute_lift_high"]) == (
        pytest.approx(0.1 - half, abs=1e-6), pytest.approx(0.1 + half, abs=1e-6))
    low, high = stats.wilson_interval(20, 100)
    assert (treatment["conversion_rate_low"], treatment["conversion_rate_high"]) == (
        pytest.approx(low), pytest.approx(high))
    # a 100/100 split is no sample ratio mismatch: chi-square 0, p 1
    assert (treatment["srm_chi2"], treatment["srm_p_value"], treatment["sample_ratio_mismatch"]) == (0.0, 1.0, False)
    assert treatment["revenue"] == 200.0 and treatment["revenue_per_user"] == pytest.approx(2.0)


def test_sample_ratio_mismatch(db, cfg):
    _build(db, cfg, {**_arm("control", 500, 50), **_arm("treatment", 400, 40)})
    frame = experiment(db, "variant")
    # expected 450 each: chi2 = 50^2/450 * 2 = 11.111, p = 0.000858 < 0.001 -> flagged
    row = frame.row(0, named=True)
    assert row["srm_chi2"] == pytest.approx(2 * 50**2 / 450)
    assert row["srm_p_value"] == pytest.approx(sps.chi2.sf(2 * 50**2 / 450, 1)) and row["srm_p_value"] < 0.001
    assert frame["sample_ratio_mismatch"].to_list() == [True, True]
    assert frame["observed_share"].to_list() == [pytest.approx(5 / 9), pytest.approx(4 / 9)]
    # planned 5:4 -> exactly as expected
    weighted = experiment(db, "variant", weights={"control": 5, "treatment": 4})
    assert weighted["srm_chi2"][0] == pytest.approx(0.0) and not weighted["sample_ratio_mismatch"][0]
    assert weighted["expected_share"].to_list() == [pytest.approx(5 / 9), pytest.approx(4 / 9)]
    # a planned third arm that never got traffic is a mismatch of its own
    third = experiment(db, "variant", weights={"control": 1, "treatment": 1, "variant_c": 1})
    assert third["variant"].to_list() == ["control", "treatment", "variant_c"]
    assert third["n_users"].to_list() == [500, 400, 0] and third["sample_ratio_mismatch"][0]


def test_assignment_rules(db, cfg):
    spec = {
        **_arm("control", 3, 1),
        **_arm("treatment", 3, 2),
        # bought before seeing the experiment: not a conversion of it
        "early_buyer": [("purchase", 0, {"revenue": 5.0}),
                        ("view_item", 5, {"properties": '{"variant": "treatment"}'})],
        # first assigned control, later tagged treatment: stays in control, counted as switched
        "switcher": [("view_item", 0, {"properties": '{"variant": "control"}'}),
                     ("view_item", 1, {"properties": '{"variant": "treatment"}'}), ("purchase", 2, {"revenue": 1.0})],
        "not_in_test": [("view_item", 0), ("purchase", 1)],
    }
    _build(db, cfg, spec)
    rows = {r["variant"]: r for r in experiment(db, "variant").iter_rows(named=True)}
    assert (rows["control"]["n_users"], rows["control"]["n_converted"], rows["control"]["n_switched"]) == (4, 2, 1)
    assert (rows["treatment"]["n_users"], rows["treatment"]["n_converted"]) == (4, 2)
    assert rows["treatment"]["revenue"] == 20.0  # early_buyer's purchase came before the assignment
    # only view_item events assign here; a page_view-only key gives a clear error
    assert experiment(db, "variant", assignment_event="view_item")["n_users"].sum() == 8
    with pytest.raises(MetricError, match="no event carries the property 'arm'"):
        experiment(db, "arm")
    with pytest.raises(MetricError, match="did you mean 'control'"):
        experiment(db, "variant", control="contrl")
    with pytest.raises(MetricError, match="weights do not name the variant"):
        experiment(db, "variant", weights={"control": 1})
    assert parse_weights("control=50, treatment=50") == {"control": 50.0, "treatment": 50.0}
    assert parse_weights("1,2") == [1.0, 2.0]
    with pytest.raises(MetricError, match="must look like"):
        parse_weights("half,half")


# -- before / after -------------------------------------------------------------------------------
def _period(prefix: str, first_day: int, n_buyers: int, n_checkouts: int, base_value: float) -> dict:
    """100 one-session users over a week: the first 40 add to cart, the first ``n_checkouts`` begin
    checkout, the first ``n_buyers`` buy for base_value + (i mod 3)."""
    spec = {}
    for i in range(100):
        t = (first_day + i % 7) * DAY + i
        steps = [("view_item", t)]
        if i < 40:
            steps.append(("add_to_cart", t + 1))
        if i < n_checkouts:
            steps.append(("begin_checkout", t + 2))
        if i < n_buyers:
            steps.append(("purchase", t + 3, {"revenue": base_value + i % 3}))
        spec[f"{prefix}_{i:03d}"] = steps
    return spec


BEFORE = ("2025-01-06", "2025-01-12")  # week 1: 10 buyers of 100, orders of 10-12
AFTER = ("2025-01-13", "2025-01-19")  # week 2: 30 buyers of 100, orders of 20-22


@pytest.fixture
def two_weeks(db, cfg):
    return _build(db, cfg, {**_period("before", 0, 10, 20, 10.0), **_period("after", 7, 30, 35, 20.0)})


def test_before_after_finds_the_planted_change(two_weeks):
    frame = compare_periods(two_weeks, BEFORE, AFTER)
    rows = {r["metric"]: r for r in frame.iter_rows(named=True)}
    assert list(rows)[:6] == ["session_conversion_rate", "cart_abandonment_rate", "checkout_abandonment_rate",
                              "average_order_value", "revenue_per_session", "user_conversion_rate"]
    conv = rows["session_conversion_rate"]
    assert (conv["before_n"], conv["before_value"], conv["after_n"], conv["after_value"]) == (100, 0.1, 100, 0.3)
    assert conv["difference"] == pytest.approx(0.2)
    z, p = stats.two_proportion_test(30, 100, 10, 100)
    assert conv["statistic"] == pytest.approx(float(z)) and conv["p_value"] == pytest.approx(float(p))
    half = 1.959964 * math.sqrt(0.1 * 0.9 / 100 + 0.3 * 0.7 / 100)
    assert (conv["difference_low"], conv["difference_high"]) == (
        pytest.approx(0.2 - half, abs=1e-6), pytest.approx(0.2 + half, abs=1e-6))
    assert conv["is_significant"] and conv["relative_change"] == pytest.approx(2.0)
    # carts: 30 of 40 abandoned before, 10 of 40 after; checkouts: 10 of 20, then 5 of 35
    assert (rows["cart_abandonment_rate"]["before_value"], rows["cart_abandonment_rate"]["after_value"]) == (0.75, 0.25)
    assert (rows["checkout_abandonment_rate"]["before_n"], rows["checkout_abandonment_rate"]["after_n"]) == (20, 35)
    assert rows["checkout_abandonment_rate"]["after_value"] == pytest.approx(5 / 35)
    # order values: Welch's t-test must agree with scipy on the raw orders
    before_orders = np.array([10.0 + i % 3 for i in range(10)])
    after_orders = np.array([20.0 + i % 3 for i in range(30)])
    welch = sps.ttest_ind(after_orders, before_orders, equal_var=False)
    aov = rows["average_order_value"]
    assert (aov["before_value"], aov["after_value"]) == (pytest.approx(10.9), pytest.approx(21.0))
    assert aov["test"] == "welch_t" and aov["statistic"] == pytest.approx(welch.statistic)
    assert aov["p_value"] == pytest.approx(welch.pvalue)
    ci = welch.confidence_interval(0.95)
    assert (aov["difference_low"], aov["difference_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    per_session = sps.ttest_ind(np.concatenate([after_orders, np.zeros(70)]),
                                np.concatenate([before_orders, np.zeros(90)]), equal_var=False)
    assert rows["revenue_per_session"]["p_value"] == pytest.approx(per_session.pvalue)
    # stage reach of the period's users: Consideration (carts) 40% in both weeks, Purchase 20% -> 35%
    assert (rows["stage_reach:Consideration"]["before_value"], rows["stage_reach:Consideration"]["after_value"]) == (
        0.4, 0.4)
    assert rows["stage_reach:Consideration"]["p_value"] == pytest.approx(1.0)
    assert not rows["stage_reach:Consideration"]["is_significant"]
    # Benjamini-Hochberg over every row's p-value, in row order
    np.testing.assert_allclose(frame["p_adjusted"].to_numpy(), stats.benjamini_hochberg(frame["p_value"].to_numpy()))


def test_before_after_funnel_steps(two_weeks):
    frame = compare_periods(two_weeks, BEFORE, AFTER, funnel_steps="add_to_cart,purchase")
    rows = {r["metric"]: r for r in frame.iter_rows(named=True)}
    # entry: 40 of 100 sessions add to cart in each week; then 10 of 40 buy before, 30 of 40 after
    entry, step = rows["funnel_entry:add_to_cart"], rows["funnel_step_2:purchase"]
    assert (entry["before_value"], entry["after_value"]) == (0.4, 0.4)
    assert (step["before_n"], step["before_value"], step["after_n"], step["after_value"]) == (40, 0.25, 40, 0.75)
    assert step["is_significant"]
    assert not any(m.startswith("stage_reach") for m in rows)


def test_period_parsing():
    assert [str(d) for d in parse_period("2025-01-06:2025-01-12")] == ["2025-01-06", "2025-01-12"]
    with pytest.raises(MetricError, match="must look like"):
        parse_period("2025-01-06")
    with pytest.raises(MetricError, match="ends before it starts"):
        parse_period("2025-01-12:2025-01-06")


def test_experiment_and_compare_commands(tmp_path, cfg):
    path = tmp_path / "cli.duckdb"
    database = Database(path)
    _build(database, cfg, {**_arm("control", 20, 2), **_arm("treatment", 20, 6)})
    database.close()
    run = subprocess.run([sys.executable, "-m", "pipeline", "experiment", "--db", str(path), "--variant-key",
                          "variant", "--weights", "control=1,treatment=1", "--format", "csv"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    table = pl.read_csv(run.stdout.encode())
    assert table["variant"].to_list() == ["control", "treatment"] and table["n_converted"].to_list() == [2, 6]
    missing = subprocess.run([sys.executable, "-m", "pipeline", "experiment", "--db", str(path)],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert missing.returncode == 2 and "--variant-key" in missing.stderr
    compare = subprocess.run([sys.executable, "-m", "pipeline", "compare", "--db", str(path), "--before",
                              "2025-01-01:2025-01-05", "--after", "2025-01-06:2025-01-06", "--format", "json"],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert compare.returncode == 0, compare.stderr
    first = json.loads(compare.stdout)[0]
    assert (first["metric"], first["before_n"], first["after_n"], first["after_value"]) == (
        "session_conversion_rate", 0, 40, 0.2)
    bad = subprocess.run([sys.executable, "-m", "pipeline", "compare", "--db", str(path), "--before", "January",
                          "--after", "2025-01-06:2025-01-06"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 2 and "must look like" in bad.stderr
