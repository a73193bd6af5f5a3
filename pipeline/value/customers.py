"""Customer value from the database: historical value, predictive CLV, value by segment, attribution.

Reads the built tables (``staging.stg_events``, ``staging.stg_touchpoints``, ``marts.mart_customers``,
``marts.mart_user_value``) through the queries in ``sql/analysis/clv_*.sql`` and
``sql/analysis/attribution_*.sql``; writes only temp tables for the duration of a request, so it works
on a read-only connection. SQL does the set-based work (the RFM summary per customer, the touches of
each journey, the group-bys); Python fits the models of :mod:`pipeline.value.clv` and
:mod:`pipeline.value.attribution` on those aggregated frames.

Predictive CLV (see ``sql/analysis/clv_rfm.sql`` for the RFM definitions):

* The calibration window ends on ``calibration_end`` (default: the date of the last event in the
  data, never the wall clock); orders after it are the holdout.
* The model time unit is a day or a week (recency and age divided by 7); only ``alpha`` and the
  log-likelihood depend on it, so both units give the same predictions.
* BG/NBD is fitted on every customer of the window, Gamma-Gamma on the customers with at least one
  repeat purchase day of positive value (the model needs positive spend).
* The horizon is a number of months of 30 days, and ``discount_rate`` is per month: month k's
  expected purchases are discounted by ``(1 + d)^k`` (the convention of
  :func:`pipeline.value.clv.clv` and of lifetimes). ``expected_purchases`` counts purchase *days* over
  the whole horizon, undiscounted.
* ``predicted_clv`` is the discounted expected value of future purchases only (excluding what the
  customer already spent); ``net_revenue`` of ``marts.mart_customers`` is the historical part.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import polars as pl

from pipeline.db import Database, DatabaseError, load_sql
from pipeline.value import attribution as attr
from pipeline.value import clv as clv_models

TimeUnit = Literal["day", "week"]
TIME_UNITS: tuple[str, ...] = get_args(TimeUnit)
UNIT_DAYS = {"day": 1, "week": 7}
DAYS_PER_MONTH = 30.0
MAX_HORIZON_MONTHS = 600

Dimension = Literal["stage", "acquisition_channel", "entry_touchpoint", "cohort", "device", "segment"]
DIMENSIONS: tuple[str, ...] = get_args(Dimension)
# CLI name -> column of marts.mart_user_value (the names the SQL's $dimension accepts).
_DIMENSION_COLUMNS = {
    "stage": "furthest_stage",
    "acquisition_channel": "acquisition_channel",
    "entry_touchpoint": "entry_touchpoint",
    "cohort": "first_touch_month",
    "device": "device",
    "segment": "segment",
}

AttributionLevel = Literal["channel", "touchpoint"]
ATTRIBUTION_LEVELS: tuple[str, ...] = get_args(AttributionLevel)
DEFAULT_LOOKBACK_DAYS = 30.0


class CustomerValueError(ValueError):
    """A request that cannot be answered (no customers, a model that cannot be fitted, bad option)."""


# --------------------------------------------------------------------------------------------------
# Historical value
# --------------------------------------------------------------------------------------------------


def _require(db: Database, layer: str, table: str) -> None:
    if not db.has_table(layer, table):
        raise DatabaseError(f"table {layer}.{table} does not exist; run `journeys build` first")


def customers(db: Database) -> pl.DataFrame:
    """``marts.mart_customers``: historical value per customer (refunds netted), by ``user_key``."""
    _require(db, "marts", "mart_customers")
    return db.query("select * from marts.mart_customers order by user_key")


def average_order_value(db: Database) -> float | None:
    """Net revenue per order over every customer (``mart_customers``); None without orders."""
    _require(db, "marts", "mart_customers")
    value = db.scalar(
        "select cast(sum(net_revenue) as double) / nullif(sum(n_orders), 0) from marts.mart_customers"
    )
    return None if value is None else float(value)


# --------------------------------------------------------------------------------------------------
# Predictive CLV
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClvOptions:
    """How the CLV models are fitted and projected (see the module docstring)."""

    calibration_end: dt.date | None = None
    time_unit: TimeUnit = "day"
    horizon_months: int = 12
    discount_rate: float = 0.01

    def __post_init__(self) -> None:
        if self.time_unit not in TIME_UNITS:
            raise CustomerValueError(f"time unit must be one of {', '.join(TIME_UNITS)}, not {self.time_unit!r}")
        if isinstance(self.horizon_months, bool) or not isinstance(self.horizon_months, int) or not (
            1 <= self.horizon_months <= MAX_HORIZON_MONTHS
        ):
            raise CustomerValueError(
                f"horizon must be a whole number of months in 1..{MAX_HORIZON_MONTHS}, got {self.horizon_months!r}"
            )
        if not math.isfinite(self.discount_rate) or not 0 <= self.discount_rate < 1:
            raise CustomerValueError(f"discount rate must be in [0, 1) per month, got {self.discount_rate!r}")

    @property
    def unit_days(self) -> int:
        return UNIT_DAYS[self.time_unit]

    @property
    def units_per_month(self) -> float:
        """Model time units in one month of 30 days (30 days or 30/7 weeks)."""
        return DAYS_PER_MONTH / self.unit_days


@dataclass(frozen=True)
class ClvResult:
    """Fitted models and per-customer predictions (``customers``) of one request."""

    options: ClvOptions
    calibration_end: dt.date
    bgnbd: clv_models.BGNBDFit
    gamma_gamma: clv_models.GammaGammaFit
    customers: pl.DataFrame
    n_spend_customers: int
    seconds: dict[str, float] = field(default_factory=dict)

    def parameters(self) -> dict[str, object]:
        """Fitted parameters, log-likelihoods and the settings, as one flat record."""
        bg, gg = self.bgnbd, self.gamma_gamma
        return {
            "calibration_end": self.calibration_end.isoformat(),
            "time_unit": self.options.time_unit,
            "horizon_months": self.options.horizon_months,
            "discount_rate": self.options.discount_rate,
            "n_customers": bg.n_customers,
            "n_repeat_customers": int((self.customers["frequency"] > 0).sum()),
            "n_spend_customers": self.n_spend_customers,
            "r": bg.r,
            "alpha": bg.alpha,
            "a": bg.a,
            "b": bg.b,
            "bgnbd_log_likelihood": bg.log_likelihood,
            "p": gg.p,
            "q": gg.q,
            "gamma": gg.gamma,
            "gamma_gamma_log_likelihood": gg.log_likelihood,
            "mean_purchase_rate_per_unit": bg.r / bg.alpha,
            "mean_dropout_probability": bg.a / (bg.a + bg.b),
            "mean_spend_per_purchase": gg.p * gg.gamma / (gg.q - 1) if gg.q > 1 else None,
            "mean_p_alive": float(self.customers["p_alive"].mean()),
            "total_expected_purchases": float(self.customers["expected_purchases"].sum()),
            "total_predicted_clv": float(self.customers["predicted_clv"].sum()),
            "new_customer_clv": self.new_customer_clv(),
        }

    def new_customer_clv(self) -> float:
        """Predicted CLV of a customer who has just made a first purchase (x = 0, t_x = 0, T = 0).

        Their conditional expectation is the unconditional E[X(t)] of a new customer, and their spend
        the Gamma-Gamma population mean: the expected value of future purchases a new conversion
        brings, over the same horizon and discounting (the first order itself is not included).
        """
        value = predict_clv(self.bgnbd, self.gamma_gamma, self.options, [0], [0.0], [0.0], [0.0])
        return float(value["predicted_clv"][0])


def data_end_date(db: Database) -> dt.date:
    """The UTC date of the last event in ``staging.stg_events`` (the default calibration end)."""
    _require(db, "staging", "stg_events")
    value = db.scalar("select cast(max(ts) as date) from staging.stg_events")
    if value is None:
        raise CustomerValueError("there are no events; load and build data first")
    return value


def rfm(db: Database, calibration_end: dt.date | None = None, time_unit: TimeUnit = "day") -> pl.DataFrame:
    """Per-customer RFM summary (``sql/analysis/clv_rfm.sql``), one row per customer by ``user_key``."""
    if time_unit not in TIME_UNITS:
        raise CustomerValueError(f"time unit must be one of {', '.join(TIME_UNITS)}, not {time_unit!r}")
    end = calibration_end or data_end_date(db)
    return db.query(load_sql("analysis/clv_rfm.sql"), {"calibration_end": end, "unit_days": UNIT_DAYS[time_unit]})


def predict_clv(
    bgnbd: clv_models.BGNBDFit,
    gamma_gamma: clv_models.GammaGammaFit,
    options: ClvOptions,
    frequency: object,
    recency: object,
    age: object,
    monetary_value: object,
) -> pl.DataFrame:
    """P(alive), expected purchases over the horizon, expected spend and discounted CLV per customer.

    The same sum as :func:`pipeline.value.clv.clv` (period = one month of 30 days, each month's
    expected purchases discounted at its end), evaluated once on a (month, customer) grid so that the
    undiscounted total is available too. A customer with repeat purchases of zero value (no spend
    information) gets the population mean spend, like a customer without repeats.
    """
    x = np.asarray(frequency, dtype=float)
    t_x = np.asarray(recency, dtype=float)
    big_t = np.asarray(age, dtype=float)
    m = np.asarray(monetary_value, dtype=float)
    has_spend = (x > 0) & (m > 0)
    spend = clv_models.expected_spend(gamma_gamma, np.where(has_spend, x, 0.0), np.where(has_spend, m, 0.0))
    months = np.arange(options.horizon_months + 1, dtype=float)
    cumulative = clv_models.expected_purchases(bgnbd, (months * options.units_per_month)[:, None], x, t_x, big_t)
    cumulative = np.atleast_2d(cumulative)
    discount = (1.0 + options.discount_rate) ** -months[1:]
    discounted = discount @ np.diff(cumulative, axis=0)
    return pl.DataFrame(
        {
            "p_alive": clv_models.prob_alive(bgnbd, x, t_x, big_t),
            "expected_purchases": cumulative[-1],
            "expected_spend": np.broadcast_to(spend, x.shape),
            "predicted_clv": np.broadcast_to(spend, x.shape) * discounted,
        }
    )


def fit_clv(db: Database, options: ClvOptions = ClvOptions()) -> ClvResult:
    """Fit BG/NBD and Gamma-Gamma on the RFM summary and predict every customer's value."""
    import time

    started = time.perf_counter()
    end = options.calibration_end or data_end_date(db)
    summary = rfm(db, end, options.time_unit)
    seconds = {"rfm": round(time.perf_counter() - started, 3)}
    if summary.height == 0:
        raise CustomerValueError(f"no customer made a first purchase on or before {end.isoformat()}")
    x = summary["frequency"].cast(pl.Float64).to_numpy()
    t_x = summary["recency"].cast(pl.Float64).to_numpy()
    big_t = summary["age"].cast(pl.Float64).to_numpy()
    m = summary["monetary_value"].cast(pl.Float64).to_numpy()

    started = time.perf_counter()
    try:
        ux, ut, uT, counts = clv_models.compress_rfm(x, t_x, big_t)
        bg = clv_models.fit_bgnbd(ux, ut, uT, weights=counts)
    except ValueError as exc:
        raise CustomerValueError(f"BG/NBD on {summary.height} customers: {exc}") from None
    spend_rows = (x > 0) & (m > 0)
    try:
        gg = clv_models.fit_gamma_gamma(x[spend_rows], m[spend_rows])
    except ValueError as exc:
        raise CustomerValueError(
            f"Gamma-Gamma on {int(spend_rows.sum())} customers with repeat purchases: {exc}"
        ) from None
    if gg.q <= 1:
        raise CustomerValueError(f"Gamma-Gamma gives q = {gg.q:.3g} <= 1: the mean spend is infinite")
    seconds["fit"] = round(time.perf_counter() - started, 3)

    started = time.perf_counter()
    predictions = predict_clv(bg, gg, options, x, t_x, big_t, m)
    seconds["predict"] = round(time.perf_counter() - started, 3)
    table = pl.concat([summary, predictions], how="horizontal").with_columns(
        pl.col("monetary_value").cast(pl.Float64),
        pl.col("first_purchase_value").cast(pl.Float64),
        pl.col("holdout_value").cast(pl.Float64),
    )
    return ClvResult(
        options=options,
        calibration_end=end,
        bgnbd=bg,
        gamma_gamma=gg,
        customers=table,
        n_spend_customers=int(spend_rows.sum()),
        seconds=seconds,
    )


def value_by(
    db: Database, result: ClvResult | None, by: Dimension, segments_path: str | Path | None = None
) -> pl.DataFrame:
    """Historical and expected value per group of ``by`` (``sql/analysis/clv_segments.sql``).

    ``by`` is one of ``stage`` (furthest stage reached), ``acquisition_channel``,
    ``entry_touchpoint``, ``cohort`` (first-touch month), ``device`` or ``segment`` (needs
    ``segments_path``, a CSV with columns ``user_key`` and ``segment``). With ``result`` None the
    expected-value columns are empty (historical value only).
    """
    if by not in DIMENSIONS:
        close = difflib.get_close_matches(str(by), DIMENSIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise CustomerValueError(f"unknown dimension {by!r}{hint} (choose from {', '.join(DIMENSIONS)})")
    if by == "segment" and segments_path is None:
        raise CustomerValueError("value by segment needs a segment mapping file (user_key,segment)")
    _require(db, "marts", "mart_user_value")
    if segments_path is not None:
        path = Path(segments_path)
        if not path.is_file():
            raise CustomerValueError(f"segment mapping {path} does not exist")
        try:
            db.materialize(
                "clv_user_segments", load_sql("analysis/clv_user_segments.sql"), {"segments_path": str(path)},
                temp=True,
            )
        except DatabaseError as exc:
            raise CustomerValueError(
                f"segment mapping {path} must be a CSV with a header and columns user_key, segment: {exc}"
            ) from None
    else:
        db.materialize(
            "clv_user_segments",
            "select cast(null as varchar) as user_key, cast(null as varchar) as segment where false",
            temp=True,
        )
    predictions = (
        result.customers.select("user_key", "p_alive", "expected_purchases", "predicted_clv")
        if result is not None
        else pl.DataFrame(
            schema={"user_key": pl.String, "p_alive": pl.Float64, "expected_purchases": pl.Float64,
                    "predicted_clv": pl.Float64}
        )
    )
    db.register("clv_predictions", predictions)
    try:
        frame = db.query(load_sql("analysis/clv_segments.sql"), {"dimension": _DIMENSION_COLUMNS[by]})
    finally:
        db.unregister("clv_predictions")
    return frame.with_columns(pl.lit(by).alias("dimension"))


# --------------------------------------------------------------------------------------------------
# Attribution from the database
# --------------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhw]?)\s*$")


def parse_lookback(text: str) -> float:
    """``"30d"``, ``"12h"``, ``"2w"`` or a bare number of days -> days (float, > 0)."""
    match = _DURATION.match(str(text))
    if not match:
        raise CustomerValueError(f"lookback {text!r} must look like 30d, 12h or 2w")
    value, unit = float(match.group(1)), match.group(2) or "d"
    days = value * {"d": 1.0, "h": 1 / 24, "w": 7.0}[unit]
    if days <= 0:
        raise CustomerValueError(f"lookback must be > 0, got {text!r}")
    return days


@dataclass(frozen=True)
class AttributionInputs:
    """The frames :mod:`pipeline.value.attribution` takes, built from the database."""

    touches: pl.DataFrame  # journey_id, ts, channel (+ step_index), ordered
    journeys: pl.DataFrame  # journey_id, converted, revenue, conversion_ts


def attribution_inputs(
    db: Database,
    *,
    level: AttributionLevel = "channel",
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    goal: str = "purchase",
) -> AttributionInputs:
    """Touches and journeys per user (see ``sql/analysis/attribution_touches.sql``)."""
    if level not in ATTRIBUTION_LEVELS:
        raise CustomerValueError(f"level must be one of {', '.join(ATTRIBUTION_LEVELS)}, not {level!r}")
    if not lookback_days > 0:
        raise CustomerValueError(f"lookback must be > 0 days, got {lookback_days}")
    _require(db, "staging", "stg_touchpoints")
    touches = db.query(
        load_sql("analysis/attribution_touches.sql"),
        {"level": level, "goal": goal, "lookback_seconds": float(lookback_days) * 86_400.0},
    )
    journeys = db.query(load_sql("analysis/attribution_journeys.sql"), {"goal": goal})
    return AttributionInputs(touches=touches, journeys=journeys)


def attribute_db(
    db: Database,
    models: tuple[str, ...] = ("last",),
    *,
    level: AttributionLevel = "channel",
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    ci: bool = False,
    n_boot: int = 200,
    seed: int = 0,
    goal: str = "purchase",
    half_life_days: float = 7.0,
) -> pl.DataFrame:
    """Attributed conversions and revenue per channel (or touchpoint) for each model, stacked.

    Without ``ci`` the columns are those of :func:`pipeline.value.attribution.attribute`; with ``ci``
    those of :func:`pipeline.value.attribution.bootstrap_ci` (percentile intervals over ``n_boot``
    journey resamples, deterministic for ``seed``).
    """
    for model in models:
        if model not in attr.MODELS:
            close = difflib.get_close_matches(str(model), attr.MODELS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise CustomerValueError(f"unknown attribution model {model!r}{hint}")
    inputs = attribution_inputs(db, level=level, lookback_days=lookback_days, goal=goal)
    # the models run in polars and numpy: at 100M events (16.7M touches) DuckDB otherwise keeps the
    # 4 GB its queries used beside them (the attribution alone peaked at 7.1 GiB under a 7 GB cap, 5.8 GiB since)
    db.release_memory()
    touches = inputs.touches.select("journey_id", "ts", "channel")
    if touches.height == 0:
        raise CustomerValueError("no touches to attribute (no channel steps in the data)")
    if ci:
        out = pl.concat([
            attr.bootstrap_ci(touches, inputs.journeys, model, n_boot=n_boot, seed=seed,  # type: ignore[arg-type]
                              half_life_days=half_life_days)
            for model in models
        ], how="vertical")
    else:  # the touches are sorted and indexed once for every model
        out = attr.attribute_all(touches, inputs.journeys, models, half_life_days=half_life_days)  # type: ignore[arg-type]
    return out.rename({"channel": level}) if level != "channel" else out
