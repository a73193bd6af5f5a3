"""The Spark engine builds the same tables as DuckDB.

* The sample (data/sample/*.csv.gz, 97k events) is ingested once, built with DuckDB
  (``pipeline.build.build``) and with Spark (``pipeline.engines.spark.build_spark``, ``local[2]``) from
  that same ``raw.events``; every model ``discover_models()`` returns must give equal tables.
* Literal journeys prove the session rules equal on both engines: a gap of exactly the timeout stays
  in the session and one minute more starts a new one, source session ids (interleaving, and events
  without one falling back to inactivity), and a fractional timeout (DuckDB counts whole minutes).
* A literal query proves the transpilation rewrites (ordered lists, ``date_diff`` boundaries, full
  regex match, ``arg_min`` over nulls, fractional ``epoch``, division) give DuckDB's answers.

Tables are compared with polars ``equals`` after sorting on the grain key. Only these dtype
differences are normalised (``NORMALISED`` lists those seen; ``-s`` prints them):
  * integer widths and scale-0 decimals -> Int64: DuckDB sums integers into HUGEINT (polars
    Decimal(38, 0)) where Spark gives bigint (stg_users.n_events, n_purchases);
  * decimals of scale 2 -> Decimal(18, 2): DuckDB sums decimal(18,2) into decimal(38,2), Spark into
    decimal(28,2) (every revenue sum);
  * timestamps -> UTC-naive microseconds (both engines already give that: Spark reads DuckDB's
    timestamps as TIMESTAMP_NTZ).
Any other dtype difference fails the test.

PySpark is required, not optional here: CI installs ``journeys[spark]``; without it these tests fail
saying so. Spark runs in local[2] with 2 shuffle partitions, no UI, and a C1-only JIT (short-lived
JVM: about half the CPU time of the default JIT).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import polars as pl
import pytest

from pipeline import config
from pipeline.build import build, discover_models
from pipeline.db import Database
from pipeline.engines import spark as spark_engine
from pipeline.ingest import ingest_files
from tests.conftest import REPO, load_events, make_journeys

pytestmark = pytest.mark.slow

SAMPLE_FILES = sorted((REPO / "data" / "sample").glob("*.csv.gz"))
TEST_CONF = {
    "spark.ui.enabled": "false",
    "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
}
# The grain key of each model (its header's "one row per ..."); other models sort on every column.
GRAIN = {
    "staging.stg_identity": ["anonymous_id"],
    "staging.stg_events": ["event_id"],
    "staging.stg_sessions": ["session_key"],
    "staging.stg_touchpoints": ["user_key", "user_step_index"],
    "staging.stg_users": ["user_key"],
    "staging.stg_stage_visits": ["user_key", "entry_step_index"],
    "staging.stg_user_stages": ["user_key", "stage"],
    "staging.stg_customers": ["user_key"],
    "marts.mart_customers": ["user_key"],
    "marts.mart_user_value": ["user_key"],
    "marts.mart_journey_map": ["stage"],
}
NORMALISED: dict[str, str] = {}  # "layer.table.column" -> "duckdb dtype -> spark dtype"


@pytest.fixture(scope="module")
def spark():
    if not spark_engine.spark_available():
        pytest.fail(f"the Spark parity tests need pyspark and sqlglot: {spark_engine.INSTALL_HINT}")
    session = spark_engine.create_session("local[2]", shuffle_partitions=2, conf=TEST_CONF)
    yield session
    session.stop()


def _model_names() -> list[str]:
    return [f"{layer}.{Path(m).stem}" for layer, models in discover_models().items() for m in models]


def _integer_like(dtype: pl.DataType) -> bool:
    return dtype.is_integer() or (isinstance(dtype, pl.Decimal) and dtype.scale == 0)


def _target(dtype: pl.DataType) -> pl.DataType:
    if _integer_like(dtype):
        return pl.Int64()
    if isinstance(dtype, pl.Decimal):
        return pl.Decimal(18, 2)
    if isinstance(dtype, pl.Datetime):
        return pl.Datetime("us")
    return dtype


def _normalise(frame: pl.DataFrame) -> pl.DataFrame:
    columns = []
    for name, dtype in frame.schema.items():
        column = pl.col(name)
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
            column = column.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        if isinstance(dtype, pl.Decimal) and dtype.scale not in (0, 2):
            raise AssertionError(f"column {name}: decimal scale {dtype.scale}, expected 2 (money) or 0 (a sum)")
        columns.append(column.cast(_target(dtype)))
    return frame.select(columns)


def assert_same_table(name: str, duck: pl.DataFrame, spark: pl.DataFrame, key: list[str] | None = None) -> None:
    assert spark.columns == duck.columns, f"{name}: columns differ"
    for column in duck.columns:
        a, b = duck.schema[column], spark.schema[column]
        if a != b:
            assert _target(a) == _target(b), f"{name}.{column}: DuckDB {a} vs Spark {b} is not a known normalisation"
            NORMALISED[f"{name}.{column}"] = f"{a} -> {b}"
    has_grain = key is not None or name in GRAIN
    key = key or GRAIN.get(name, duck.columns)
    duck_n, spark_n = _normalise(duck).sort(key, nulls_last=True), _normalise(spark).sort(key, nulls_last=True)
    if has_grain:
        assert duck_n.select(key).is_duplicated().sum() == 0, f"{name}: grain key {key} is not unique"
    assert duck_n.height == spark_n.height, f"{name}: {duck_n.height} rows on DuckDB, {spark_n.height} on Spark"
    if not duck_n.equals(spark_n):
        diffs = [c for c in duck_n.columns if not duck_n[c].equals(spark_n[c])]
        c = diffs[0]
        where = duck_n[c].ne_missing(spark_n[c]) if duck_n[c].dtype == spark_n[c].dtype else pl.lit(True)
        example = (duck_n.filter(where).head(2).to_dicts(), spark_n.filter(where).head(2).to_dicts())
        raise AssertionError(f"{name}: columns {diffs} differ; first rows DuckDB/Spark: {example}")


# -- the sample ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_builds(spark, tmp_path_factory):
    folder = tmp_path_factory.mktemp("spark_sample")
    db = Database(folder / "sample.duckdb")
    ingest_files(db, SAMPLE_FILES)
    cfg = config.defaults()
    started = time.perf_counter()
    build(db, cfg, "full")
    duck_seconds = time.perf_counter() - started
    started = time.perf_counter()
    summary, runner = spark_engine.build_spark(db, cfg, spark=spark, workdir=folder / "spark", load_into_db=False)
    spark_seconds = time.perf_counter() - started
    print(f"\nsample build: DuckDB {duck_seconds:.1f} s, Spark {spark_seconds:.1f} s {summary.seconds}")
    yield db, summary, runner
    db.close()


def test_every_model_is_equal_on_the_sample(sample_builds):
    db, summary, runner = sample_builds
    names = _model_names()
    assert set(summary.tables) == set(names)
    assert (summary.n_events, summary.n_users, summary.n_sessions, summary.n_unmapped_events) == (
        97_484, 6_000, 19_832, 0)
    for name in names:
        assert_same_table(name, db.table(name), runner.table(name))
    print("normalised dtypes (DuckDB -> Spark):", NORMALISED)


# -- literal journeys: the session rules --------------------------------------------------------------

JOURNEYS = {
    # gaps of exactly 30 min (same session: a new one needs *more* than the timeout), then 31 min
    "u_boundary": [("page_view", 0), ("view_item", 30), ("add_to_cart", 61)],
    # 30.5 min: more than 30 (a new session); not more than 30.5 unless the timeout counts whole minutes
    "u_fraction": [("page_view", 0), ("view_item", 30.5), ("view_item", 40.75)],
    # source sessions interleave: s1 is one event between s2's first and its return 200 minutes later
    "u_source": [
        ("page_view", 0, {"session_id": "s2"}),
        ("view_item", 1, {"session_id": "s1"}),
        ("view_item", 200, {"session_id": "s2"}),
        ("purchase", 201, {"session_id": "s2", "revenue": 12.5}),
    ],
    # events without a source id fall back to inactivity next to ones with an id
    "u_mixed": [
        ("page_view", 0, {"session_id": "m1", "device": "mobile"}),
        ("view_item", 20),
        ("add_to_cart", 55),
        ("purchase", 56, {"session_id": "m1", "revenue": 9.99}),
    ],
    # identity stitching: the anonymous visit joins u7's journey
    "visit": [
        ("page_view", 0, {"user_id": None, "anonymous_id": "a1", "source": "google", "medium": "cpc"}),
        ("sign_up", 300, {"user_id": "u7", "anonymous_id": "a1"}),
        ("purchase", 305, {"user_id": "u7", "anonymous_id": "a2", "revenue": 20.0}),
    ],
}


@pytest.mark.parametrize(
    ("session_source", "timeout_minutes", "boundary_sessions"),
    [
        ("inactivity", 30, [1, 1, 2]),
        ("source", 30, [1, 1, 2]),
    ],
)
def test_session_rules_are_equal_on_literal_journeys(
    spark, tmp_path, session_source, timeout_minutes, boundary_sessions
):
    db = Database(tmp_path / "literal.duckdb")
    load_events(db, make_journeys(JOURNEYS))
    cfg = config.defaults()
    cfg["sessions"]["session_source"] = session_source
    cfg["sessions"]["timeout_minutes"] = timeout_minutes
    build(db, cfg, "full")
    on_duckdb = {name: db.table(name) for name in _model_names()}
    # as `journeys build --engine spark` does: the tables are loaded back into the DuckDB file
    _, runner = spark_engine.build_spark(db, cfg, spark=spark, workdir=tmp_path / "spark", load_into_db=True)
    for name, duck in on_duckdb.items():
        assert_same_table(name, duck, runner.table(name))
        assert_same_table(name, duck, db.table(name))
    assert build(db, cfg).mode == "up_to_date"  # the Spark build is logged like a DuckDB one

    events = runner.table("staging.stg_events").sort("event_id")
    sessions = dict(zip(events["event_id"], events["session_index"], strict=True))
    assert [sessions[f"u_boundary-{i}"] for i in range(3)] == boundary_sessions
    assert [sessions[f"u_fraction-{i}"] for i in range(3)] == [1, 2, 2]
    if session_source == "source":
        assert [sessions[f"u_source-{i}"] for i in range(4)] == [1, 2, 1, 1]  # s2 opens, s1 inside it
        assert [sessions[f"u_mixed-{i}"] for i in range(4)] == [1, 2, 3, 1]
    else:
        assert [sessions[f"u_source-{i}"] for i in range(4)] == [1, 1, 2, 2]
        assert [sessions[f"u_mixed-{i}"] for i in range(4)] == [1, 1, 2, 2]
        # a session spanning source sessions s2 and s1 keeps the first event's (s2), on both engines
        source_ids = runner.table("staging.stg_sessions").sort("session_key").select("session_key", "source_session_id")
        assert source_ids.filter(pl.col("session_key").str.starts_with("u_")).rows() == [
            ("u_boundary:1", None), ("u_boundary:2", None), ("u_fraction:1", None), ("u_fraction:2", None),
            ("u_mixed:1", "m1"), ("u_mixed:2", "m1"), ("u_source:1", "s2"), ("u_source:2", "s2"),
        ]
    assert set(events.filter(pl.col("event_id").str.starts_with("visit"))["user_key"]) == {"u7"}
    db.close()


# -- the rewrites, one expression each ---------------------------------------------------------------

REWRITES = """
with events as (
    select
        user_id,
        ts,
        event_name,
        revenue,
        case when event_name = 'view_item' then null else event_name end as maybe_name
    from raw.events
),

final as (
    select
        user_id,
        list(maybe_name order by ts desc) as names_latest_first,
        list(event_name order by revenue nulls first, ts) as names_by_revenue,
        list(event_name order by ts) filter (where event_name = 'nothing') as no_names,
        string_agg(event_name, '>' order by ts) as path,
        arg_min(maybe_name, ts) as first_named,
        arg_max(maybe_name, ts) as last_named,
        date_diff('minute', min(ts), max(ts)) as minute_boundaries,
        date_diff('hour', min(ts), max(ts)) as hour_boundaries,
        date_diff('day', min(ts), max(ts)) as day_boundaries,
        date_diff('month', min(ts), max(ts)) as month_boundaries,
        epoch(max(ts)) - epoch(min(ts)) as span_seconds,
        sum(revenue) / count(*) as revenue_per_event,
        sum(revenue) / 3 as revenue_thirds,
        count(*) / 3 as thirds,
        bool_or(regexp_full_match(event_name, 'view|page')) as any_full_match,
        bool_or(regexp_full_match(event_name, $pattern)) as any_param_match,
        count(*) filter (where ts - lag_ts > interval ($gap) second) as n_long_gaps
    from (select *, lag(ts) over (partition by user_id order by ts) as lag_ts from events)
    group by user_id
)

select * from final
"""


def test_rewrites_give_duckdb_answers(spark, tmp_path):
    t = dt.datetime(2025, 1, 31, 23, 58, 50)
    frame = make_journeys({
        # 23:58:50 -> 00:01:10 next day, next month: 3 minute boundaries in 2 min 20 s
        "w1": [("view_item", 0, {"revenue": None}), ("page_view", 0.5, {"revenue": 3.0}),
               ("add_to_cart", 1.25), ("purchase", 2 + 1 / 3, {"revenue": 10.01})],
        "w2": [("page_view", 0.0125), ("view_item", 90)],
    }, start=t)
    db = Database(tmp_path / "rewrites.duckdb")
    load_events(db, frame)
    runner = spark_engine.SparkRunner(spark, db, tmp_path / "spark")
    runner.export_raw()
    params = {"pattern": "purchase|add_to_.*", "gap": 45.5}
    duck = db.query(REWRITES, params)
    on_spark = runner.query(REWRITES, params)
    assert_same_table("rewrites", duck, on_spark, key=["user_id"])
    w1 = duck.filter(pl.col("user_id") == "w1").to_dicts()[0]
    assert w1["names_latest_first"] == ["purchase", "add_to_cart", "page_view", None]
    assert (w1["minute_boundaries"], w1["day_boundaries"], w1["month_boundaries"]) == (3, 1, 1)
    assert w1["first_named"] == "page_view" and w1["no_names"] is None
    db.close()


def test_hash_is_refused_and_params_become_escaped_literals(spark):
    columns = {"raw__events": ["event_id"]}
    with pytest.raises(spark_engine.SparkEngineError, match="md5"):
        spark_engine.to_spark_sql(spark_engine.parse_model("select hash(event_id) as h from raw.events"), {}, columns)
    spark.range(1).selectExpr("'e1' as event_id").createOrReplaceTempView("raw__events")
    tree = spark_engine.parse_model("select event_id, $path as p, $n * 2 as n, $flag as flag from raw.events")
    params = {"path": "C:\\it's \\n 'x'.csv", "n": 2.5, "flag": True}
    row = spark.sql(spark_engine.to_spark_sql(tree, params, columns)).collect()[0].asDict()
    assert row == {"event_id": "e1", "p": params["path"], "n": 5.0, "flag": True}
