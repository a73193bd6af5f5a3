"""The canonical event contract (pandera on polars) and how its failures become quarantine rows.

Reads a polars frame of typed candidate rows; writes nothing. Type casts (timestamps, numbers) are
done in SQL before this contract runs (DESIGN.md section 6: cast in SQL, ``coerce=False``); the
contract checks the values: required fields, identity, value forms and future timestamps.
"""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl

# Which quarantine reason a failed check means, and which wins when one row fails several.
_REASON_RANK = {
    "missing_value": 0,
    "missing_identity": 1,
    "invalid_value": 2,
    "future_timestamp": 3,
}


def contract(future_limit: dt.datetime) -> pa.DataFrameSchema:
    """The canonical event as a pandera schema; ``future_limit`` is load time plus the tolerance."""
    text = pl.Utf8
    return pa.DataFrameSchema(
        {
            "row_number": pa.Column(pl.Int64, nullable=False),
            "event_id": pa.Column(text, nullable=False, checks=pa.Check.str_length(1, 256)),
            "user_id": pa.Column(text, nullable=True, checks=pa.Check.str_length(1, 256)),
            "anonymous_id": pa.Column(text, nullable=True, checks=pa.Check.str_length(1, 256)),
            "ts": pa.Column(pl.Datetime("us"), nullable=False, checks=pa.Check.le(future_limit)),
            "event_name": pa.Column(text, nullable=False, checks=pa.Check.str_length(1, 128)),
            "currency": pa.Column(text, nullable=True, checks=pa.Check.str_matches(r"^[A-Z]{3}$")),
            "country": pa.Column(text, nullable=True, checks=pa.Check.str_matches(r"^[A-Z]{2}$")),
        },
        checks=[
            pa.Check(
                lambda data: data.lazyframe.select(
                    pl.col("user_id").is_not_null() | pl.col("anonymous_id").is_not_null()
                ),
                name="missing_identity",
            )
        ],
        strict=False,
    )


def _reason() -> pl.Expr:
    check = pl.col("check")
    return (
        pl.when(check == "not_nullable").then(pl.lit("missing_value"))
        .when(check == "missing_identity").then(pl.lit("missing_identity"))
        .when(check.str.starts_with("less_than_or_equal_to")).then(pl.lit("future_timestamp"))
        .otherwise(pl.lit("invalid_value"))
    )


def contract_failures(frame: pl.DataFrame, future_limit: dt.datetime) -> pl.DataFrame:
    """One row per failing input row: ``row_number``, ``field``, ``reason`` (the first by rank)."""
    empty = pl.DataFrame(schema={"row_number": pl.Int64, "field": pl.Utf8, "reason": pl.Utf8})
    if frame.height == 0:
        return empty
    try:
        contract(future_limit).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
    else:
        return empty
    if cases.filter(pl.col("index").is_null()).height:
        # A schema-level failure (a dtype) without row indexes is a bug in our SQL, not bad data.
        raise RuntimeError(f"canonical contract failed without row indexes: {cases}")
    reasons = cases.select(
        pl.col("index").cast(pl.Int64),
        pl.col("column").fill_null("user_id|anonymous_id").alias("field"),
        _reason().alias("reason"),
    ).with_columns(pl.col("reason").replace_strict(_REASON_RANK, return_dtype=pl.Int32).alias("rank"))
    first = reasons.sort("index", "rank", "field").unique("index", keep="first", maintain_order=True)
    return first.select(
        frame["row_number"].gather(first["index"]).alias("row_number"),
        "field",
        "reason",
    )
