"""Statistics shared by the metric modules: intervals, tests, multiple-testing correction.

Pure functions on numbers or numpy arrays (vectorised); reads and writes nothing. scipy supplies
the distributions; the formulas are the textbook ones named in each docstring.
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def wilson_interval(successes, trials, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (Wilson 1927); NaN where trials == 0."""
    x = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    z = sps.norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        low, high = np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)
    empty = n == 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def two_proportion_test(x1, n1, x2, n2) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided pooled two-proportion z-test; returns (z, p_value), NaN where undefined."""
    x1, n1, x2, n2 = (np.asarray(v, dtype=float) for v in (x1, n1, x2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (x1 + x2) / (n1 + n2)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (x1 / n1 - x2 / n2) / se
    p = 2 * sps.norm.sf(np.abs(z))
    return z, p


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1); NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q)
    ranked = q[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    result = np.empty(m)
    result[order] = np.minimum(adjusted, 1.0)
    out[ok] = result
    return out


def odds_ratio(a, b, c, d) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Odds ratio of a 2x2 table [[a, b], [c, d]] with a Woolf 95% interval and a chi-square p-value.

    a: exposed and outcome, b: exposed and no outcome, c: unexposed and outcome, d: unexposed and no
    outcome. Haldane's +0.5 correction is applied where a cell is zero, so the ratio stays finite.
    Returns (odds_ratio, ci_low, ci_high, p_value).
    """
    a, b, c, d = (np.asarray(v, dtype=float) for v in (a, b, c, d))
    zero = (a == 0) | (b == 0) | (c == 0) | (d == 0)
    a2, b2, c2, d2 = (np.where(zero, v + 0.5, v) for v in (a, b, c, d))
    ratio = (a2 * d2) / (b2 * c2)
    se = np.sqrt(1 / a2 + 1 / b2 + 1 / c2 + 1 / d2)
    low, high = np.exp(np.log(ratio) - 1.959964 * se), np.exp(np.log(ratio) + 1.959964 * se)
    n = a + b + c + d
    with np.errstate(invalid="ignore", divide="ignore"):
        chi2 = n * (a * d - b * c) ** 2 / ((a + b) * (c + d) * (a + c) * (b + d))
    p = sps.chi2.sf(chi2, 1)
    return ratio, low, high, p


def chi_square_independence(table) -> tuple[float, float, int]:
    """Pearson chi-square test of independence on a contingency table: (statistic, p_value, dof)."""
    result = sps.chi2_contingency(np.asarray(table, dtype=float), correction=False)
    return float(result.statistic), float(result.pvalue), int(result.dof)
