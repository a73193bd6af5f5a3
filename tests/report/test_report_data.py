"""The report's revenue at risk values a conversion with the CLV fit of its value section (one fit
per report), and falls back to the average order when CLV cannot be fitted."""

from __future__ import annotations

import polars as pl
import pytest

from pipeline.build import build
from pipeline.db import Database
from pipeline.report.data import ReportData
from pipeline.value import risk
from tests.conftest import load_events, make_journeys

LEVELS = ("touchpoint", "stage")


@pytest.mark.slow
def test_revenue_at_risk_uses_the_value_sections_fit(sample_db):
    with Database(sample_db, read_only=True) as db:
        data = ReportData(db)
        got = data.revenue_at_risk
        assert "clv_result" in data.__dict__  # fitted here, kept for the value section
        # the same rows as revenue at risk fitting CLV for itself
        alone = risk.revenue_at_risk(db, levels=("stage", "touchpoint"), goal="purchase")
        expected = pl.concat([alone.filter(pl.col("level") == level) for level in LEVELS])
        assert got.equals(expected)
        assert set(got["value_basis"]) == {"clv"}
        fitted = risk.conversion_value(db, "clv")
        assert fitted.new_customer_clv and fitted.new_customer_clv > 0
        assert got["value_per_conversion"].unique().to_list() == [pytest.approx(fitted.value)]


def test_revenue_at_risk_without_repeat_buyers_values_the_order(db, cfg):
    paid = {"source": "google", "medium": "cpc"}
    spec = {f"buyer_{i}": [("view_item", 0, paid), ("add_to_cart", 1, paid),
                           ("purchase", 2, {**paid, "revenue": 10.0 + i})] for i in range(3)}
    spec |= {f"leaver_{i}": [("view_item", 0, paid), ("add_to_cart", 1, paid)] for i in range(3)}
    load_events(db, make_journeys(spec))
    build(db, cfg)
    frame = ReportData(db).revenue_at_risk
    # nobody bought twice, so BG/NBD cannot be fitted: a conversion is worth its order, (10+11+12)/3
    assert frame["value_basis"].unique().to_list() == ["aov"]
    assert frame["value_per_conversion"].unique().to_list() == [pytest.approx(11.0)]
    # three leavers at the cart, each with P(purchase | one more step) = 1: 3 x 1 x 11
    cart = frame.filter((pl.col("level") == "touchpoint") & (pl.col("node") == "cart")).row(0, named=True)
    assert cart["n_dropoffs"] == 3 and cart["revenue_at_risk"] == pytest.approx(33.0)
