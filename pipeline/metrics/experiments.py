"""A/B experiments from an event property, and before/after comparisons of two periods.

Reads ``staging.stg_events`` / ``stg_touchpoints`` / ``stg_sessions`` through
``sql/analysis/experiment_variants.sql`` (one row per variant), ``experiment_period_kpis.sql``
(KPIs of one period), ``conversion_units.sql`` / ``abandonment_stages.sql`` (user conversion and
stage reach) and, for funnel steps, ``pipeline.metrics.funnel`` with
``experiment_funnel_periods.sql``; writes only temp tables.

Experiment: a user's variant is the value of the properties key ``variant_key`` on their first event
that carries it (optionally only events named ``assignment_event``); a user converts when the goal
comes at or after that assignment. Per variant: conversion with Wilson 95% bounds; versus the control
the absolute lift (with a Wald 95% interval of the difference), the relative lift and a pooled
two-proportion z-test (p-values Benjamini-Hochberg adjusted over the non-control variants). The
sample-ratio-mismatch check is a chi-square goodness-of-fit of the users per variant against an
equal split (or ``weights``); ``sample_ratio_mismatch`` is true when its p-value < 0.001.

Before/after: each period is given as dates ``[first day, last day]`` (both included). Rates are
compared with the pooled two-proportion z-test and a Wald interval of the difference; means with
Welch's t-test (from the per-period mean, standard deviation and count) and the Welch interval. The
p-values of all rows are Benjamini-Hochberg adjusted together; ``is_significant`` is p_adjusted < alpha.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
from scipy import stats as sps

from pipeline.db import Database, load_sql
from pipeline.metrics import stats
from pipeline.metrics.conversion import MetricError, add_rate, as_timestamp, prepare_units, resolve_goal

SRM_ALPHA = 0.001
Period = tuple[dt.date | dt.datetime | str, dt.date | dt.datetime | str]


# -- A/B experiments ------------------------------------------------------------------------------
def experiment(
    db: Database,
    variant_key: str,
    *,
    control: str | None = None,
    weights: Mapping[str, float] | Sequence[float] | None = None,
    goal: str = "purchase",
    assignment_event: str | None = None,
    level: float = 0.95,
) -> pl.DataFrame:
    """One row per variant (control first, then by name); the SRM columns repeat on every row.

    ``control`` defaults to a variant named 'control' if there is one, else the first by name.
    ``weights`` are the expected traffic shares (a mapping variant -> weight, or one weight per
    variant in name order); variants named in ``weights`` but absent from the data get a row of
    zeros, which is itself a sample ratio mismatch.
    """
    if not variant_key:
        raise MetricError("give the properties key that holds the variant (--variant-key)")
    goal_name, goal_kind = resolve_goal(db, goal)
    counts = db.query(load_sql("analysis/experiment_variants.sql"), {
        "variant_key": variant_key, "assignment_event": assignment_event, "goal": goal_name, "goal_kind": goal_kind,
    })
    if counts.height == 0:
        raise MetricError(f"no event carries the property {variant_key!r}"
                          + (f" on events named {assignment_event!r}" if assignment_event else ""))
    expected = _weights(counts["variant"].to_list(), weights)
    missing = sorted(set(expected) - set(counts["variant"].to_list()))
    if missing:
        counts = pl.concat([counts, pl.DataFrame({"variant": missing}).with_columns(
            *(pl.lit(0, counts.schema[c]).alias(c) for c in counts.columns if c != "variant"))])
    variants = sorted(counts["variant"].to_list())
    if control is None:
        control = "control" if "control" in variants else variants[0]
    elif control not in variants:
        import difflib

        close = difflib.get_close_matches(control, variants, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; variants: {', '.join(variants)}"
        raise MetricError(f"control {control!r} is not a variant{hint}")
    counts = counts.with_columns((pl.col("variant") == control).alias("is_control")).sort(
        pl.col("is_control").not_(), "variant")
    frame = add_rate(counts, "n_converted", "n_users", "conversion_rate", level)

    x = frame["n_converted"].cast(pl.Float64).to_numpy()
    n = frame["n_users"].cast(pl.Float64).to_numpy()
    xc, nc = x[0], n[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        p, pc = x / n, xc / nc
        lift = p - pc
        z_crit = sps.norm.ppf(0.5 + level / 2)
        se = np.sqrt(p * (1 - p) / n + pc * (1 - pc) / nc)
        relative = np.where(pc > 0, lift / pc, np.nan)
    z, p_value = stats.two_proportion_test(x, n, xc, nc)
    is_control = frame["is_control"].to_numpy()
    for arr in (lift, se, relative, z, p_value):
        arr[is_control] = np.nan
    adjusted = stats.benjamini_hochberg(p_value)

    observed = n
    shares = np.array([expected[v] for v in frame["variant"].to_list()])
    chi2, srm_p = (sps.chisquare(observed, f_exp=shares * observed.sum()) if len(observed) > 1 and observed.sum() > 0
                   else (np.nan, np.nan))
    frame = frame.with_columns(
        pl.Series("absolute_lift", lift), pl.Series("absolute_lift_low", lift - z_crit * se),
        pl.Series("absolute_lift_high", lift + z_crit * se), pl.Series("relative_lift", relative),
        pl.Series("z", z), pl.Series("p_value", p_value), pl.Series("p_adjusted", adjusted),
        pl.Series("expected_share", shares),
        pl.Series("observed_share", observed / observed.sum() if observed.sum() else np.full(len(observed), np.nan)),
        pl.lit(float(chi2)).alias("srm_chi2"), pl.lit(float(srm_p)).alias("srm_p_value"),
        pl.lit(bool(srm_p < SRM_ALPHA) if not np.isnan(srm_p) else False).alias("sample_ratio_mismatch"),
        pl.col("revenue").cast(pl.Float64),
    )
    floats = [c for c, t in frame.schema.items() if t == pl.Float64]
    return frame.with_columns(pl.col(c).fill_nan(None) for c in floats).select(
        "variant", "is_control", "n_users", "n_converted", "conversion_rate", "conversion_rate_low",
        "conversion_rate_high", "absolute_lift", "absolute_lift_low", "absolute_lift_high", "relative_lift", "z",
        "p_value", "p_adjusted", "revenue", "revenue_per_user", "n_switched", "expected_share", "observed_share",
        "srm_chi2", "srm_p_value", "sample_ratio_mismatch",
    )


def _weights(variants: Sequence[str], weights: Mapping[str, float] | Sequence[float] | None) -> dict[str, float]:
    """Expected shares per variant (summing to 1)."""
    names = sorted(variants)
    if weights is None:
        return {v: 1 / len(names) for v in names}
    if isinstance(weights, Mapping):
        unknown = sorted(set(names) - set(weights))
        if unknown:
            raise MetricError(f"weights do not name the variant(s) {', '.join(unknown)} seen in the data")
        given = {str(k): float(v) for k, v in weights.items()}
    else:
        values = [float(w) for w in weights]
        if len(values) != len(names):
            raise MetricError(f"{len(values)} weights for {len(names)} variants ({', '.join(names)})")
        given = dict(zip(names, values, strict=True))
    if any(w <= 0 for w in given.values()):
        raise MetricError("weights must be positive")
    total = sum(given.values())
    return {k: w / total for k, w in given.items()}


def parse_weights(text: str) -> dict[str, float] | list[float]:
    """``"control=50,treatment=50"`` -> mapping, ``"1,1,2"`` -> list (variants in name order)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        if all("=" in p for p in parts):
            return {k.strip(): float(v) for k, v in (p.split("=", 1) for p in parts)}
        return [float(p) for p in parts]
    except ValueError:
        raise MetricError(f"weights {text!r} must look like control=50,treatment=50 or 1,1") from None


# -- before / after -------------------------------------------------------------------------------
def parse_period(text: str) -> tuple[dt.date, dt.date]:
    """``"2025-01-01:2025-01-31"`` -> (first day, last day), both included."""
    first, sep, last = text.partition(":")
    try:
        a, b = dt.date.fromisoformat(first.strip()), dt.date.fromisoformat(last.strip())
    except ValueError:
        a = b = None
    if not sep or a is None or b is None:
        raise MetricError(f"period {text!r} must look like 2025-01-01:2025-01-31 (first and last day)")
    if b < a:
        raise MetricError(f"period {text!r} ends before it starts")
    return a, b


def _bounds(period: Period) -> tuple[dt.datetime, dt.datetime]:
    """[first day 00:00, day after the last day 00:00) for dates; datetimes are taken as they are."""
    start, end = as_timestamp(period[0], "period start"), as_timestamp(period[1], "period end")
    if start is None or end is None:
        raise ValueError(f"period {period!r} needs a start and an end")
    if not isinstance(period[1], dt.datetime) and not (isinstance(period[1], str) and "T" in period[1]):
        end = end + dt.timedelta(days=1)
    if end <= start:
        raise MetricError(f"period {period[0]}..{period[1]} is empty")
    return start, end


def period_kpis(db: Database, period: Period) -> pl.DataFrame:
    """metric, kind, n_successes, n, mean, sd of one period (session KPIs, user conversion, stages)."""
    start, end = _bounds(period)
    params = prepare_units(db, level="session", start=start, end=end)
    sessions = db.query(load_sql("analysis/experiment_period_kpis.sql"), {"purchase_event": params["purchase_event"]})
    prepare_units(db, level="user", start=start, end=end)
    users = db.query(
        "select 'user_conversion_rate' as metric, 'rate' as kind, count(*) filter (where is_converted) as n_successes, "
        "count(*) as n, cast(null as double) as mean, cast(null as double) as sd from metric_units"
    )
    return pl.concat([sessions, users], how="vertical_relaxed")


def _stage_reach(db: Database, period: Period) -> pl.DataFrame:
    from pipeline.metrics.conversion import prepare_breakdown

    start, end = _bounds(period)
    prepare_units(db, level="user", start=start, end=end)
    prepare_breakdown(db, "all")
    counts = db.query(load_sql("analysis/abandonment_stages.sql"),
                      {"by": "all", "level": "user", "start": start, "end": end})
    return counts.sort("stage_order").select(
        (pl.lit("stage_reach:") + pl.col("stage")).alias("metric"), pl.lit("rate").alias("kind"),
        pl.col("n_reached").alias("n_successes"), pl.col("n_units").alias("n"),
        pl.lit(None, pl.Float64).alias("mean"), pl.lit(None, pl.Float64).alias("sd"),
    )


def _funnel_steps(db: Database, before: Period, after: Period, steps: str | Sequence[str],
                  mode: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    from pipeline.metrics import funnel

    try:
        spec = funnel.funnel_spec(db, steps, mode=mode, scope="session")
    except funnel.FunnelError as exc:
        raise MetricError(str(exc)) from None
    units = funnel.funnel_units(db, spec)
    (b0, b1), (a0, a1) = _bounds(before), _bounds(after)
    db.register("metric_funnel_units", units)
    try:
        counts = db.query(load_sql("analysis/experiment_funnel_periods.sql"), {
            "before_start": b0, "before_end": b1, "after_start": a0, "after_end": a1, "n_steps": spec.n_steps,
        })
    finally:
        db.unregister("metric_funnel_units")
    labels = spec.step_labels()
    names = [f"funnel_step_{i}:{labels[i - 1]}" if i > 1 else f"funnel_entry:{labels[0]}"
             for i in range(1, spec.n_steps + 1)]

    def side(period: str) -> pl.DataFrame:
        part = counts.filter(pl.col("period") == period).sort("step_index")
        return pl.DataFrame({
            "metric": names, "kind": "rate", "n_successes": part["n_successes"].cast(pl.Int64),
            "n": part["n"].cast(pl.Int64),
        }).with_columns(pl.lit(None, pl.Float64).alias("mean"), pl.lit(None, pl.Float64).alias("sd"))

    return side("before"), side("after")


def compare_periods(
    db: Database,
    before: Period,
    after: Period,
    *,
    funnel_steps: str | Sequence[str] | None = None,
    funnel_mode: str = "ordered",
    alpha: float = 0.05,
    level: float = 0.95,
) -> pl.DataFrame:
    """Every KPI of ``before`` against ``after``: session and user conversion, cart and checkout
    abandonment (session level), average order value, revenue per session, then the stage reach
    (share of the period's users reaching each stage) or, given ``funnel_steps``, every step of that
    funnel at session scope (``pipeline.metrics.funnel``; step 1 as the share of sessions entering,
    step k as conversion from step 1).

    Columns: metric, kind ('rate' | 'mean'), before_n, before_value, after_n, after_value,
    difference (after - before) with its interval, relative_change, test, statistic, p_value,
    p_adjusted (Benjamini-Hochberg over all rows) and is_significant.
    """
    left = period_kpis(db, before)
    right = period_kpis(db, after)
    if funnel_steps is None:
        left = pl.concat([left, _stage_reach(db, before)], how="vertical_relaxed")
        right = pl.concat([right, _stage_reach(db, after)], how="vertical_relaxed")
    else:
        fb, fa = _funnel_steps(db, before, after, funnel_steps, funnel_mode)
        left = pl.concat([left, fb], how="vertical_relaxed")
        right = pl.concat([right, fa], how="vertical_relaxed")
    joined = left.join(right, on=["metric", "kind"], how="full", suffix="_after", coalesce=True,
                       maintain_order="left")
    return _compare(joined, alpha, level)


def _compare(joined: pl.DataFrame, alpha: float, level: float) -> pl.DataFrame:
    kind = joined["kind"].to_numpy()
    is_rate = kind == "rate"

    def col(name: str) -> np.ndarray:
        return joined[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    n1, n2 = np.nan_to_num(col("n")), np.nan_to_num(col("n_after"))
    x1, x2 = col("n_successes"), col("n_successes_after")
    m1, m2, s1, s2 = col("mean"), col("mean_after"), col("sd"), col("sd_after")
    z_crit = sps.norm.ppf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = x1 / n1, x2 / n2
        v1 = np.where(is_rate, p1, m1)
        v2 = np.where(is_rate, p2, m2)
        diff = v2 - v1
        # rates: Wald interval of the difference; means: Welch
        se_rate = np.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
        q1, q2 = s1**2 / n1, s2**2 / n2
        se_mean = np.sqrt(q1 + q2)
        df = (q1 + q2) ** 2 / (q1**2 / (n1 - 1) + q2**2 / (n2 - 1))
        t_crit = sps.t.ppf(0.5 + level / 2, df)
        half = np.where(is_rate, z_crit * se_rate, t_crit * se_mean)
        relative = np.where(v1 != 0, diff / v1, np.nan)
        t_stat = diff / se_mean
        t_p = 2 * sps.t.sf(np.abs(t_stat), df)
    z, z_p = stats.two_proportion_test(x2, n2, x1, n1)
    statistic = np.where(is_rate, z, t_stat)
    p_value = np.where(is_rate, z_p, t_p)
    adjusted = stats.benjamini_hochberg(p_value)
    frame = pl.DataFrame({
        "metric": joined["metric"], "kind": joined["kind"],
        "before_n": n1.astype(np.int64), "before_value": v1, "after_n": n2.astype(np.int64), "after_value": v2,
        "difference": diff, "difference_low": diff - half, "difference_high": diff + half,
        "relative_change": relative, "test": np.where(is_rate, "two_proportion_z", "welch_t"),
        "statistic": statistic, "p_value": p_value, "p_adjusted": adjusted,
    })
    frame = frame.with_columns(pl.col(c).fill_nan(None) for c, t in frame.schema.items() if t == pl.Float64)
    return frame.with_columns(pl.col("p_adjusted").lt(alpha).fill_null(False).alias("is_significant"))
