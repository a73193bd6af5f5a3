"""Statistics against hand-computed values and scipy/statsmodels-style references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.metrics.stats import benjamini_hochberg, odds_ratio, two_proportion_test, wilson_interval


def test_wilson_interval_matches_the_formula_by_hand():
    # x=7, n=10, z=1.959964: centre = (0.7 + z^2/20)/(1 + z^2/10); published value (Newcombe 1998
    # table I, 95%): 0.3968 to 0.8922
    low, high = wilson_interval(7, 10)
    assert float(low) == pytest.approx(0.3968, abs=1e-4)
    assert float(high) == pytest.approx(0.8922, abs=1e-4)
    low, high = wilson_interval([0, 5], [0, 5])
    assert math.isnan(low[0]) and high[1] == 1.0


def test_two_proportion_z_by_hand():
    # 30/100 vs 20/100: pooled 0.25, se = sqrt(.25*.75*(2/100)) = 0.061237, z = 0.1/0.061237 = 1.63299
    z, p = two_proportion_test(30, 100, 20, 100)
    assert float(z) == pytest.approx(1.63299, abs=1e-5)
    assert float(p) == pytest.approx(0.102470, abs=1e-5)


def test_benjamini_hochberg_by_hand():
    # p = .01 .04 .03 .2 ; m=4 sorted .01 .03 .04 .2 -> .04 .06 .0533 .2 -> monotone .04 .0533 .0533 .2
    adjusted = benjamini_hochberg([0.01, 0.04, 0.03, 0.2, np.nan])
    assert adjusted[:4] == pytest.approx([0.04, 0.053333, 0.053333, 0.2], abs=1e-6)
    assert np.isnan(adjusted[4])


def test_odds_ratio_by_hand():
    ratio, low, high, p = odds_ratio(20, 80, 10, 90)
    assert float(ratio) == pytest.approx(20 * 90 / (80 * 10))
    se = math.sqrt(1 / 20 + 1 / 80 + 1 / 10 + 1 / 90)
    assert float(low) == pytest.approx(2.25 * math.exp(-1.959964 * se))
    assert 0 < float(p) < 0.05
    zero_ratio, *_ = odds_ratio(0, 10, 5, 5)
    assert float(zero_ratio) == pytest.approx(0.5 * 5.5 / (10.5 * 5.5))
