"""User segments: structured filters from the config, built-in segment families, and membership.

Reads ``staging.stg_users``, ``staging.stg_sessions`` and ``staging.stg_touchpoints`` through
``sql/analysis/segment_base.sql`` (one row per session with its user's attributes); writes only the
temp tables ``metric_segment_base`` and ``metric_segment_members``.

A segment is a set of users: a user belongs when at least one of their sessions satisfies the
filters (``match = 'all'``: every filter, ``'any'``: at least one), user attributes being the same on
each of their sessions. Filters compile to SQL from fixed fragments: the column comes from the
closed list ``pipeline.config.SEGMENT_FIELDS``, the operator from ``SEGMENT_OPS``, and every value
is a bound parameter, so a value is only ever compared, never run. ``ne`` and ``not_in`` also match
a missing (null) attribute; the other operators never match null.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import polars as pl

from pipeline.config import SEGMENT_FIELDS, ConfigError, validate_segment_filter, validate_segments
from pipeline.db import Database, load_sql

Match = Literal["all", "any"]

# The SQL type a field's values are bound as, per field kind.
_SQL_TYPES = {"text": "varchar", "number": "double", "bool": "boolean", "timestamp": "timestamp"}
# Fixed fragments per operator: {col} is a column from SEGMENT_FIELDS, {p} a bound parameter.
_OP_SQL = {
    "eq": "{col} = cast({p} as {t})",
    "ne": "{col} is distinct from cast({p} as {t})",
    "in": "coalesce(list_contains(cast({p} as {t}[]), {col}), false)",
    "not_in": "not coalesce(list_contains(cast({p} as {t}[]), {col}), false)",
    "gt": "{col} > cast({p} as {t})",
    "ge": "{col} >= cast({p} as {t})",
    "lt": "{col} < cast({p} as {t})",
    "le": "{col} <= cast({p} as {t})",
    "contains": "coalesce(contains({col}, cast({p} as {t})), false)",
}
# The column each field reads in metric_segment_base: the field's own name (checked, never the input).
_COLUMNS = {name: name for name in SEGMENT_FIELDS}
VALUE_TIERS = ("none", "low", "mid", "high")


class SegmentError(ValueError):
    """A segment that cannot be used (unknown field or operator, wrong value type, unknown name)."""


@dataclass(frozen=True)
class SegmentFilter:
    field: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        try:
            value = list(self.value) if isinstance(self.value, tuple) else self.value
            checked = validate_segment_filter({"field": self.field, "op": self.op, "value": value}, "segment", "filter")
        except ConfigError as exc:
            raise SegmentError(str(exc).removeprefix("segment: ")) from None
        object.__setattr__(self, "value", tuple(checked["value"]) if isinstance(checked["value"], list)
                           else checked["value"])


@dataclass(frozen=True)
class Segment:
    name: str
    filters: tuple[SegmentFilter, ...]
    match: Match = "all"

    def __post_init__(self) -> None:
        if not self.name:
            raise SegmentError("a segment needs a name")
        if self.match not in ("all", "any"):
            raise SegmentError(f"segment {self.name!r}: match must be 'all' or 'any', not {self.match!r}")
        if not self.filters:
            raise SegmentError(f"segment {self.name!r} has no filters")

    @classmethod
    def of(cls, name: str, *filters: tuple[str, str, Any], match: Match = "all") -> Segment:
        """``Segment.of("mobile_de", ("device", "eq", "mobile"), ("country", "eq", "DE"))``."""
        return cls(name, tuple(SegmentFilter(f, o, v) for f, o, v in filters), match)


def from_config(config: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Segment]:
    """The ``[[segments]]`` of a loaded config (or the raw list), validated, as Segments."""
    raw = config.get("segments", []) if isinstance(config, Mapping) else config
    try:
        checked = validate_segments(list(raw), "segments")
    except ConfigError as exc:
        raise SegmentError(str(exc)) from None
    return [
        Segment(s["name"], tuple(SegmentFilter(f["field"], f["op"], f["value"]) for f in s["filters"]), s["match"])
        for s in checked
    ]


def compile_segments(segments: Sequence[Segment]) -> tuple[str, dict[str, Any]]:
    """SQL selecting (segment, user_key) from ``metric_segment_base`` for each segment, and its params.

    The text is built only from the fixed fragments above, column names from the closed field list
    and parameter names ``$s<i>_name`` / ``$s<i>_f<j>``; every name and value is a bound parameter.
    """
    parts: list[str] = []
    params: dict[str, Any] = {}
    for i, segment in enumerate(segments):
        conditions = []
        for j, f in enumerate(segment.filters):
            column = _COLUMNS[f.field]  # KeyError impossible: SegmentFilter checked the field
            sql_type = _SQL_TYPES[SEGMENT_FIELDS[f.field]]
            param = f"s{i}_f{j}"
            conditions.append("(" + _OP_SQL[f.op].format(col=column, p=f"${param}", t=sql_type) + ")")
            params[param] = list(f.value) if isinstance(f.value, tuple) else f.value
        joiner = " and " if segment.match == "all" else " or "
        params[f"s{i}_name"] = segment.name
        # fixed fragments and closed-list columns only; segment names and values are bound parameters
        where = joiner.join(conditions)
        select = f"select distinct cast($s{i}_name as varchar) as segment, user_key from metric_segment_base where "  # noqa: S608
        parts.append(select + where)
    if not parts:
        return "select cast(null as varchar) as segment, cast(null as varchar) as user_key where false", {}
    return "\nunion all\n".join(parts), params


def as_segment_list(segments: Mapping[str, Segment] | Iterable[Segment] | Segment) -> list[Segment]:
    if isinstance(segments, Segment):
        return [segments]
    items = list(segments.values()) if isinstance(segments, Mapping) else list(segments)
    names = [s.name for s in items]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SegmentError(f"segment names must be unique: {', '.join(duplicates)}")
    return items


def prepare_base(db: Database) -> None:
    db.materialize("metric_segment_base", load_sql("analysis/segment_base.sql"), temp=True)


def prepare_members(db: Database, segments: Sequence[Segment]) -> None:
    """Materialise ``metric_segment_members`` (segment, user_key) for ``segments``."""
    if segments:
        prepare_base(db)
    sql, params = compile_segments(segments)
    db.materialize("metric_segment_members", sql, params, temp=True)


def segment_members(db: Database, segment: Segment | str, config: Mapping[str, Any] | None = None) -> list[str]:
    """The user_keys in ``segment`` (a Segment, or the name of a built-in or configured one), sorted."""
    if isinstance(segment, str):
        known = segments(db, config)
        if segment not in known:
            import difflib

            close = difflib.get_close_matches(segment, list(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise SegmentError(f"unknown segment {segment!r}{hint}")
        segment = known[segment]
    prepare_members(db, [segment])
    return db.query("select user_key from metric_segment_members order by user_key")["user_key"].to_list()


def builtin_segments(db: Database) -> list[Segment]:
    """Segment families from the data: visitor type, first device, acquisition channel, first
    country, value tier. Names look like ``device:mobile``; each family partitions the users with a
    known value."""
    values = db.query(
        "select 'device' as family, first_device as value from staging.stg_users where first_device is not null "
        "union select 'acquisition_channel', acquisition_channel from staging.stg_users "
        "where acquisition_channel is not null "
        "union select 'country', first_country from staging.stg_users where first_country is not null"
    )
    fields = {"device": "first_device", "acquisition_channel": "acquisition_channel", "country": "first_country"}
    result = [Segment.of(f"visitor_type:{v}", ("visitor_type", "eq", v)) for v in ("new", "returning")]
    for family in ("device", "acquisition_channel", "country"):
        for value in sorted(values.filter(pl.col("family") == family)["value"].to_list()):
            result.append(Segment.of(f"{family}:{value}", (fields[family], "eq", value)))
    result += [Segment.of(f"value_tier:{v}", ("value_tier", "eq", v)) for v in VALUE_TIERS]
    return result


def segments(db: Database, config: Mapping[str, Any] | None = None) -> dict[str, Segment]:
    """Every segment by name: the built-in ones, then those of the config (``[[segments]]``).

    The mapping can be passed as ``segments=`` to the breakdown ``by='segment'`` of the conversion
    and abandonment functions. A configured name may not reuse a built-in one.
    """
    result = {s.name: s for s in builtin_segments(db)}
    for s in from_config(config or {}):
        if s.name in result:
            raise SegmentError(f"segment name {s.name!r} is a built-in segment; choose another")
        result[s.name] = s
    return result


def segment_summary(db: Database, chosen: Mapping[str, Segment] | Iterable[Segment], *,
                    level: float = 0.95) -> pl.DataFrame:
    """Per segment: users, share of users, customers, conversion (user level) with Wilson bounds,
    sessions, purchases, revenue and revenue per user. Empty segments are listed with zeros."""
    from pipeline.metrics.conversion import add_rate

    items = as_segment_list(chosen)
    prepare_members(db, items)
    counts = db.query(load_sql("analysis/segment_summary.sql"))
    names = pl.DataFrame({"segment": [s.name for s in items], "_rank": list(range(len(items)))},
                         schema={"segment": pl.Utf8, "_rank": pl.Int64})
    frame = (
        names.join(counts, on="segment", how="left")
        .with_columns(
            pl.col("n_users", "n_customers", "n_sessions", "n_purchases").fill_null(0).cast(pl.Int64),
            pl.col("share_of_users").fill_null(0.0),
            pl.col("revenue").cast(pl.Float64).fill_null(0.0),
        )
        .sort("_rank").drop("_rank")
    )
    frame = add_rate(frame, "n_customers", "n_users", "conversion_rate", level)
    return frame.with_columns(
        pl.when(pl.col("n_users") > 0).then(pl.col("revenue") / pl.col("n_users")).alias("revenue_per_user")
    ).select(
        "segment", "n_users", "share_of_users", "n_customers", "conversion_rate", "conversion_rate_low",
        "conversion_rate_high", "n_sessions", "n_purchases", "revenue", "revenue_per_user",
    )
