"""Cart, checkout and stage abandonment at session and user level, by a breakdown, with Wilson bounds.

Reads the staging tables through ``sql/analysis/conversion_units.sql`` (one row per session or
user), ``sql/analysis/abandonment_rates.sql`` (cart and checkout) and
``sql/analysis/abandonment_stages.sql`` (furthest stage); writes only temp tables.

Semantics (the SQL headers give them exactly):

* cart abandonment: of the units with an ``add_to_cart``, those where no purchase completes it.
  Session level: no purchase after the session's first add_to_cart in the same session. User level:
  no purchase within ``window_days`` after the user's first add_to_cart in the window (the purchase
  may fall after the window's end). ``abandonment_rate + completion`` = 1 for the same units.
* checkout abandonment: the same with ``begin_checkout``.
* stage abandonment: of the units that reached stage X, those whose furthest stage is X and that did
  not convert (goal default ``purchase``).

Time groups (``by='day'|'week'|'month'``) place a cart on the day of the unit's first cart event.
``CART_ABANDONMENT_BENCHMARK`` is shown beside cart rates for context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from pipeline.db import Database, load_sql
from pipeline.metrics.conversion import (
    DEFAULT_WINDOW_DAYS,
    Level,
    MetricError,
    Timestamp,
    add_rate,
    check_choice,
    prepare_breakdown,
    prepare_units,
    sort_groups,
)

# Baymard Institute, "Cart Abandonment Rate Statistics" (baymard.com/lists/cart-abandonment-rate):
# the average of 49 studies of documented online shopping cart abandonment rates, 70.19%. A literature
# benchmark for context only; it is not computed from, or compared statistically with, the data.
CART_ABANDONMENT_BENCHMARK = 0.7019
CART_ABANDONMENT_BENCHMARK_SOURCE = "Baymard Institute: average of 49 cart abandonment studies (70.19%)"

KINDS: tuple[str, ...] = ("cart", "checkout", "stage")

COLUMNS = (
    "abandonment_kind", "level", "by", "group", "stage", "n_started", "n_abandoned", "n_completed",
    "abandonment_rate", "abandonment_rate_low", "abandonment_rate_high", "n_incomplete_window", "benchmark_rate",
)


def cart_checkout_abandonment(
    db: Database,
    *,
    level: Level = "session",
    by: str = "all",
    window_days: float = DEFAULT_WINDOW_DAYS,
    start: Timestamp = None,
    end: Timestamp = None,
    segments: Any = None,
    complete_windows_only: bool = False,
    events: dict[str, str] | None = None,
) -> pl.DataFrame:
    """Cart and checkout abandonment per group (rows for kind 'cart' then 'checkout').

    Columns: abandonment_kind, level, by, group, stage (null), n_started (units with the event),
    n_abandoned, n_completed, abandonment_rate with Wilson bounds, n_incomplete_window (user level:
    units whose ``window_days`` reach past the last event of the data; left out of the counts when
    ``complete_windows_only``), benchmark_rate (cart rows: ``CART_ABANDONMENT_BENCHMARK``).
    """
    prepare_units(db, level=level, start=start, end=end, window_days=window_days, events=events)
    order = prepare_breakdown(db, by, segments)
    counts = db.query(load_sql("analysis/abandonment_rates.sql"),
                      {"by": by, "complete_windows_only": complete_windows_only})
    frame = add_rate(counts.rename({"group_value": "group"}), "n_abandoned", "n_started", "abandonment_rate")
    frame = frame.with_columns(
        pl.lit(level).alias("level"),
        pl.lit(by).alias("by"),
        pl.lit(None, pl.Utf8).alias("stage"),
        (pl.col("n_started") - pl.col("n_abandoned")).alias("n_completed"),
        pl.when(pl.col("abandonment_kind") == "cart").then(pl.lit(CART_ABANDONMENT_BENCHMARK))
        .otherwise(None).alias("benchmark_rate"),
    )
    frame = _typed(frame.select(COLUMNS))
    kind_rank = pl.col("abandonment_kind").replace_strict({"cart": 0, "checkout": 1}, return_dtype=pl.Int64)
    frame = frame.with_columns(kind_rank.alias("_kind"))
    return sort_groups(frame, by, order, "n_started", keys=("_kind",)).drop("_kind")


def stage_abandonment(
    db: Database,
    *,
    level: Level = "user",
    by: str = "all",
    goal: str = "purchase",
    start: Timestamp = None,
    end: Timestamp = None,
    segments: Any = None,
) -> pl.DataFrame:
    """Per group and stage (stage order): n_units, n_reached, n_furthest, n_abandoned (furthest stage
    and not converted), abandonment_rate = n_abandoned / n_reached with Wilson bounds, and
    share_of_journeys = n_abandoned / n_units (where the group's journeys end without converting)."""
    params = prepare_units(db, level=level, goal=goal, start=start, end=end)
    order = prepare_breakdown(db, by, segments)
    counts = db.query(load_sql("analysis/abandonment_stages.sql"),
                      {"by": by, "level": level, "start": params["start"], "end": params["end"]})
    frame = add_rate(counts.rename({"group_value": "group"}), "n_abandoned", "n_reached", "abandonment_rate")
    frame = frame.with_columns(
        pl.lit(level).alias("level"), pl.lit(by).alias("by"),
        (pl.col("n_abandoned") / pl.col("n_units")).alias("share_of_journeys"),
    ).select(
        "level", "by", "group", "stage", "stage_order", "n_units", "n_reached", "n_furthest", "n_abandoned",
        "abandonment_rate", "abandonment_rate_low", "abandonment_rate_high", "share_of_journeys",
    )
    if by == "segment":
        rank = {name: i for i, name in enumerate(order)}
        return (frame.with_columns(pl.col("group").replace_strict(rank, default=len(rank)).alias("_rank"))
                .sort("_rank", "stage_order").drop("_rank"))
    return frame.sort("group", "stage_order")


def abandonment(
    db: Database,
    *,
    kinds: Sequence[str] = KINDS,
    level: Level = "session",
    by: str = "all",
    window_days: float = DEFAULT_WINDOW_DAYS,
    goal: str = "purchase",
    start: Timestamp = None,
    end: Timestamp = None,
    segments: Any = None,
    complete_windows_only: bool = False,
) -> pl.DataFrame:
    """Cart, checkout and stage abandonment in one table (``COLUMNS``); stage rows use n_started =
    journeys that reached the stage."""
    for kind in kinds:
        check_choice("kind", kind, KINDS)
    if not kinds:
        raise MetricError("give at least one abandonment kind")
    frames = []
    if "cart" in kinds or "checkout" in kinds:
        both = cart_checkout_abandonment(db, level=level, by=by, window_days=window_days, start=start, end=end,
                                         segments=segments, complete_windows_only=complete_windows_only)
        frames.append(both.filter(pl.col("abandonment_kind").is_in(list(kinds))))
    if "stage" in kinds:
        stages = stage_abandonment(db, level=level, by=by, goal=goal, start=start, end=end, segments=segments)
        frames.append(_typed(stages.with_columns(
            pl.lit("stage").alias("abandonment_kind"),
            pl.col("n_reached").alias("n_started"),
            (pl.col("n_reached") - pl.col("n_abandoned")).alias("n_completed"),
            pl.lit(0, pl.Int64).alias("n_incomplete_window"),
            pl.lit(None, pl.Float64).alias("benchmark_rate"),
        ).select(COLUMNS)))
    return pl.concat(frames)


def _typed(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col("n_started", "n_abandoned", "n_completed", "n_incomplete_window").cast(pl.Int64),
        pl.col("stage").cast(pl.Utf8),
        pl.col("benchmark_rate").cast(pl.Float64),
    )
