"""Conversion rates at session and user level, by a breakdown, with Wilson 95% intervals.

Reads ``staging.stg_sessions`` and ``staging.stg_touchpoints`` through ``sql/analysis/conversion_units.sql``
(one row per session or user) and ``sql/analysis/conversion_rates.sql`` (counts per group); writes
only the temp tables ``metric_units`` and ``metric_segment_members`` for the duration of a request,
so it works on a read-only connection. The helpers here (levels, breakdowns, windows, goals,
rate columns) are shared by the other metric modules.

Semantics: a session converts when it has a goal step (default: the ``purchase`` event); a user
converts when one of their sessions in the window does. The window ``[start, end)`` selects the
sessions that start in it. Breakdown attributes are the session's own, or for a user those of their
first session in the window (so ``channel`` is the acquisition channel). ``visitor_type`` is
``new`` for a session with ``session_index = 1`` (else ``returning``); a user is ``returning`` when
they have had more than one session by the end of the window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from pipeline.db import Database, load_sql
from pipeline.metrics import stats

Level = Literal["session", "user"]
LEVELS: tuple[str, ...] = ("session", "user")
TIME_BREAKDOWNS: tuple[str, ...] = ("day", "week", "month")
BREAKDOWNS: tuple[str, ...] = (
    "all", "channel", "device", "country", "landing_page", "entry_touchpoint", "visitor_type",
    *TIME_BREAKDOWNS, "segment",
)
DEFAULT_EVENTS = {"cart_event": "add_to_cart", "checkout_event": "begin_checkout", "purchase_event": "purchase"}
DEFAULT_WINDOW_DAYS = 7.0
# Unit tables kept for reuse (Database.materialize_request): the report asks for five (sessions and
# users of two periods, all sessions), in alternation. One row per unit: at 10M events the biggest
# (all 2.0M sessions) holds 0.49 GB in memory.
UNITS_KEPT = 5

Timestamp = dt.datetime | dt.date | str | None


class MetricError(ValueError):
    """A request that cannot be answered as asked (unknown level, breakdown, goal); says why."""


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        import difflib

        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise MetricError(f"{name} must be one of {', '.join(choices)}, not {value!r}{hint}")
    return value


def as_timestamp(value: Timestamp, name: str = "date") -> dt.datetime | None:
    """A window bound: a datetime (naive UTC), a date (its midnight) or an ISO string; None stays None."""
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    try:
        return as_timestamp(dt.datetime.fromisoformat(str(value)), name)
    except ValueError:
        raise MetricError(f"{name} {value!r} is not a date (YYYY-MM-DD) or timestamp") from None


def resolve_goal(db: Database, goal: str) -> tuple[str, str]:
    """(goal, 'event' | 'touchpoint'): an event name first, then a touchpoint; else a clear error.

    The canonical commerce events (add_to_cart, begin_checkout, purchase) are accepted as event
    names even when the data has none, so that a rate of 0 is reported instead of an error.
    """
    from pipeline.paths import PathError, PathOptions, journey_params

    try:
        params = journey_params(db, PathOptions(goal=goal))
    except PathError as exc:
        if goal in DEFAULT_EVENTS.values():
            return goal, "event"
        raise MetricError(str(exc)) from None
    return str(params["goal"]), str(params["goal_kind"])


def prepare_units(
    db: Database,
    *,
    level: str = "session",
    goal: str = "purchase",
    start: Timestamp = None,
    end: Timestamp = None,
    window_days: float = DEFAULT_WINDOW_DAYS,
    events: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Materialise ``metric_units`` (one row per session or user); return the parameters used."""
    check_choice("level", level, LEVELS)
    if window_days < 0:
        raise MetricError(f"window_days must be >= 0, not {window_days}")
    lower, upper = as_timestamp(start, "start"), as_timestamp(end, "end")
    if lower is not None and upper is not None and upper <= lower:
        raise MetricError(f"the window is empty: end {upper} is not after start {lower}")
    goal_name, goal_kind = resolve_goal(db, goal)
    params: dict[str, Any] = {
        "level": level, "start": lower, "end": upper, "goal": goal_name, "goal_kind": goal_kind,
        "window_days": float(window_days), **DEFAULT_EVENTS, **(events or {}),
    }
    db.materialize_request("metric_units", load_sql("analysis/conversion_units.sql"), params, keep=UNITS_KEPT)
    return params


def prepare_breakdown(db: Database, by: str, segments: Any = None) -> list[str]:
    """Check ``by``; materialise ``metric_segment_members`` (empty unless by == 'segment').

    Returns the segment names in their order (for sorting), or [] for other breakdowns.
    """
    check_choice("by", by, BREAKDOWNS)
    from pipeline.metrics import segments as seg

    if by != "segment":
        seg.prepare_members(db, [])
        return []
    chosen = seg.as_segment_list(segments) if segments is not None else seg.builtin_segments(db)
    seg.prepare_members(db, chosen)
    return [s.name for s in chosen]


def add_rate(frame: pl.DataFrame, successes: str, trials: str, name: str, level: float = 0.95) -> pl.DataFrame:
    """Add ``name`` = successes / trials and its Wilson interval ``name_low``, ``name_high``."""
    x = frame[successes].cast(pl.Float64).to_numpy()
    n = frame[trials].cast(pl.Float64).to_numpy()
    low, high = stats.wilson_interval(x, n, level)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, x / np.where(n > 0, n, 1), np.nan)
    return frame.with_columns(
        pl.Series(name, rate, dtype=pl.Float64).fill_nan(None),
        pl.Series(f"{name}_low", low, dtype=pl.Float64).fill_nan(None),
        pl.Series(f"{name}_high", high, dtype=pl.Float64).fill_nan(None),
    )


def sort_groups(frame: pl.DataFrame, by: str, segment_order: Sequence[str], count: str,
                keys: Sequence[str] = ()) -> pl.DataFrame:
    """Time groups in time order, segments in their given order, other groups by size then name."""
    if by in TIME_BREAKDOWNS or by == "all":
        return frame.sort(*keys, "group")
    if by == "segment":
        rank = {name: i for i, name in enumerate(segment_order)}
        return (frame.with_columns(pl.col("group").replace_strict(rank, default=len(rank)).alias("_rank"))
                .sort(*keys, "_rank").drop("_rank"))
    return frame.sort(*keys, count, "group", descending=[*(False for _ in keys), True, False])


def conversion_rates(
    db: Database,
    *,
    level: Level = "session",
    by: str = "all",
    goal: str = "purchase",
    start: Timestamp = None,
    end: Timestamp = None,
    segments: Any = None,
    level_ci: float = 0.95,
) -> pl.DataFrame:
    """Conversion per group: n_units, n_converted, conversion_rate with Wilson bounds, revenue.

    ``by`` is one of ``BREAKDOWNS``; ``segments`` (a mapping or list of ``Segment``) are the
    groups for ``by='segment'`` (default: the built-in segments). ``goal`` is an event name or a
    touchpoint. The window ``[start, end)`` selects sessions by start time.
    """
    prepare_units(db, level=level, goal=goal, start=start, end=end)
    order = prepare_breakdown(db, by, segments)
    counts = db.query(load_sql("analysis/conversion_rates.sql"), {"by": by}).rename({"group_value": "group"})
    frame = add_rate(counts, "n_converted", "n_units", "conversion_rate", level_ci)
    frame = frame.with_columns(
        (pl.col("revenue").cast(pl.Float64) / pl.col("n_units")).alias("revenue_per_unit"),
        pl.lit(level).alias("level"),
        pl.lit(by).alias("by"),
    ).select(
        "level", "by", "group", "n_units", "n_converted", "conversion_rate", "conversion_rate_low",
        "conversion_rate_high", pl.col("n_purchases").cast(pl.Int64), pl.col("revenue").cast(pl.Float64),
        "revenue_per_unit",
    )
    return sort_groups(frame, by, order, "n_units")
