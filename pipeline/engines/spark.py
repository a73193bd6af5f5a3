"""The Spark engine: the same ``sql/`` models on PySpark (``journeys build --engine spark``).

Reads ``raw.events`` of the DuckDB database (exported to Parquet with DuckDB's ``copy``: ingest stays
DuckDB), the mapping seeds named in the config (read through DuckDB exactly as the models read
them, then handed to Spark as temp views) and every ``sql/<layer>/*.sql`` model of
``pipeline.build.discover_models()``. Writes each model as Parquet under
``<workdir>/<layer>/<table>/`` (registered as a temp view for the models after it) and, from
``build_spark(..., load_into_db=True)`` (what the CLI does), loads those tables into the DuckDB
database in one transaction, so every other command reads them as after a DuckDB build.

A model written for DuckDB becomes Spark SQL on the sqlglot AST (never by string edits):

* ``read_csv($x_path, all_varchar = true, header = true)`` becomes the seed view ``seed__x``;
  ``raw.events`` / ``staging.t`` / ... become the temp views ``raw__events`` / ``staging__t``.
* ``$parameters`` become Spark literals built by sqlglot (strings quoted and escaped for Spark,
  floats as ``cast(... as double)`` since a bare ``30.0`` is a decimal in Spark);
  ``interval ($x) minute`` becomes ``interval '30' minute`` with DuckDB's rule that a fractional
  number of minutes/hours/days is truncated.
* Stars are expanded from the views' schemas (sqlglot ``qualify``), so ``* exclude (...)`` and the
  helper column that ``qualify`` leaves behind in Spark never leak into a table.
* Semantics that differ: ``regexp_full_match`` (anchored ``rlike``), ``epoch()`` (fractional
  seconds, not ``unix_timestamp``'s whole ones), ``/`` (DuckDB divides as double, Spark keeps
  decimals), ``date_diff`` (DuckDB counts unit boundaries; Spark counts whole units, so both ends
  are truncated to the unit first), ``arg_min``/``arg_max`` (DuckDB skips rows whose value is null),
  ``list``/``array_agg`` (Spark's ``collect_list`` drops nulls and ignores ``order by``: rebuilt as a
  sorted list of structs), ranking windows (``int`` in Spark, ``bigint`` in DuckDB). ``hash()``
  differs between engines and is refused (use ``md5``). The ``as [not] materialized`` hint on a
  CTE (a DuckDB planning choice) is dropped: it is not Spark syntax.

Spark runs ``local[*]`` by default, or on any master URL (``spark://``, ``yarn``, ``k8s://``) or a
Spark Connect endpoint (``sc://host:15002``). The work folder (``JOURNEYS_SPARK_DIR``, default
``<db file>.spark/`` next to the database) must be a path every executor can read and write: local
disk for ``local[*]``, a shared mount on a cluster.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.db import LAYERS, Database, DatabaseError, load_sql

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession
    from sqlglot import exp as exp_t

    from pipeline.build import BuildSummary

INSTALL_HINT = "install the Spark extra: pip install 'journeys[spark]' (pyspark 4 and sqlglot; Java 17+)"
DEFAULT_MASTER = "local[*]"
WORKDIR_ENV = "JOURNEYS_SPARK_DIR"

# Units whose fractional amounts DuckDB truncates in `interval (x) <unit>` (checked on DuckDB 2.0).
_WHOLE_UNITS = ("DAY", "HOUR", "MINUTE")
_DATE_DIFF_UNITS = ("YEAR", "QUARTER", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND")


class SparkEngineError(DatabaseError):
    """A failure of the Spark engine the user can act on (missing extra, unsupported SQL, Spark error)."""


def _require() -> None:
    # pyspark 4 warns on import that it does not fully support pandas 3; nothing here uses pandas
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    try:
        import pyspark  # noqa: F401
        import sqlglot  # noqa: F401
    except ImportError as exc:
        raise SparkEngineError(f"the Spark engine needs {exc.name}: {INSTALL_HINT}") from None


def spark_available() -> bool:
    try:
        _require()
    except SparkEngineError:
        return False
    return True


def view_name(layer: str, table: str) -> str:
    """The temp view that stands for ``<layer>.<table>`` in Spark (``staging__stg_events``)."""
    return f"{layer}__{table}"


def seed_view_name(param: str) -> str:
    """The temp view of the seed bound to ``$<name>_path`` (``seed__channel_groups``)."""
    return "seed__" + param.removesuffix("_path")


# -- transpilation --------------------------------------------------------------------------------


def parse_model(sql: str) -> exp_t.Expression:
    """Parse one DuckDB model (one ``select``) into a sqlglot tree."""
    _require()
    import sqlglot
    from sqlglot.errors import ParseError

    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except ParseError as exc:
        raise SparkEngineError(f"sqlglot cannot parse the model: {str(exc).splitlines()[0]}") from None
    if len(statements) != 1:
        raise SparkEngineError(f"a model is one select; found {len(statements)} statements")
    return statements[0]


def seed_params(tree: exp_t.Expression) -> list[str]:
    """The ``$x_path`` parameters a model reads as CSV seeds (``read_csv($x_path, ...)``)."""
    from sqlglot import exp

    found = []
    for node in tree.find_all(exp.ReadCSV):
        name = _seed_param(node)
        if name not in found:
            found.append(name)
    return found


def _seed_param(node: exp_t.ReadCSV) -> str:
    from sqlglot import exp

    if not isinstance(node.this, exp.Placeholder) or not node.this.name.endswith("_path"):
        raise SparkEngineError(f"read_csv must read a $<name>_path parameter, not {node.this.sql('duckdb')}")
    options = {}
    for option in node.expressions:
        if not isinstance(option, exp.EQ):
            raise SparkEngineError(f"unsupported read_csv option {option.sql('duckdb')}")
        options[option.this.name.lower()] = option.expression.sql("duckdb").lower()
    if options != {"all_varchar": "true", "header": "true"}:
        raise SparkEngineError(
            f"read_csv(${node.this.name}, ...) must use exactly all_varchar = true, header = true "
            "(the form the Spark engine reproduces)"
        )
    return node.this.name


def _literal(name: str, value: Any) -> exp_t.Expression:
    """A Spark literal for one of our own parameter values (config values and file paths)."""
    from sqlglot import exp

    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return exp.Literal.number(str(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SparkEngineError(f"parameter ${name} = {value!r} is not a finite number")
        # DuckDB binds a Python float as DOUBLE; a bare 30.0 would be a decimal in Spark.
        return exp.cast(exp.Literal.number(repr(value)), exp.DataType.build("double"))
    if isinstance(value, str | Path):
        return exp.Literal.string(str(value))  # sqlglot escapes quotes and backslashes for Spark
    raise SparkEngineError(f"parameter ${name} has unsupported type {type(value).__name__}")


def _interval_amount(node: exp_t.Interval, params: Mapping[str, Any]) -> tuple[str, str]:
    """(amount, unit) of ``interval (<constant or $param>) <unit>`` with DuckDB's rounding."""
    from sqlglot import exp

    unit = node.unit.name.upper() if node.unit else ""
    value_node = node.this
    while isinstance(value_node, exp.Paren):
        value_node = value_node.this
    if isinstance(value_node, exp.Placeholder):
        value = params[value_node.name]
    elif isinstance(value_node, exp.Literal):
        value = value_node.this
    else:
        raise SparkEngineError(
            f"interval of a non-constant amount ({node.sql('duckdb')}) is not supported by the Spark engine; "
            "use a $parameter or a literal"
        )
    if isinstance(value, bool):
        raise SparkEngineError(f"interval amount {value!r} is not a number")
    try:
        number = float(value) if not isinstance(value, int) else value
    except ValueError:
        # a literal like interval '1 day': Spark reads it the same way
        return str(value), unit
    if isinstance(number, float) and not math.isfinite(number):
        raise SparkEngineError(f"interval amount {value!r} is not a finite number")
    if unit in _WHOLE_UNITS:
        return str(math.trunc(number)), unit  # DuckDB: interval (10.9) minute = 10 minutes
    if unit == "SECOND":
        return repr(number) if isinstance(number, float) else str(number), unit
    if isinstance(number, float) and not number.is_integer():
        raise SparkEngineError(f"interval of {value!r} {unit.lower()}: only whole amounts are supported")
    return str(int(number)), unit


def _rewrite(tree: exp_t.Expression, types: type | tuple[type, ...], fn: Callable[[Any], Any]) -> None:
    """Apply ``fn`` to every node of ``types``, innermost first, replacing a node by what it returns."""
    for node in reversed(list(tree.find_all(types, bfs=False))):
        new = fn(node)
        if new is not node:
            node.replace(new)


def to_spark_sql(
    tree: exp_t.Expression, params: Mapping[str, Any], columns: Mapping[str, Iterable[str]]
) -> str:
    """Spark SQL for a parsed DuckDB model.

    ``params`` are the model's named parameters; ``columns`` names the columns of every view the
    model reads (``raw__events``, ``staging__stg_events``, ``seed__stages``, ...) so that stars can be
    expanded.
    """
    from sqlglot import exp
    from sqlglot.errors import OptimizeError
    from sqlglot.optimizer.qualify import qualify

    tree = tree.copy()
    double = exp.DataType.build("double")

    # 1. seeds and layer tables become temp views
    for node in list(tree.find_all(exp.ReadCSV)):
        table = node.parent
        view = exp.to_table(seed_view_name(_seed_param(node)))
        if isinstance(table, exp.Table):
            view.set("alias", table.args.get("alias"))
            table.replace(view)
        else:
            node.replace(view)
    for table in list(tree.find_all(exp.Table)):
        if table.db in LAYERS and not table.catalog:
            renamed = exp.to_table(view_name(table.db, table.name))
            renamed.set("alias", table.args.get("alias") or exp.TableAlias(this=exp.to_identifier(table.name)))
            table.replace(renamed)
    functions = {f.name.lower() for f in tree.find_all(exp.Anonymous)}
    for name in ("read_csv", "read_parquet", "read_json", "read_csv_auto", "hash"):
        if name in functions:
            hint = "; use md5(), which both engines compute alike" if name == "hash" else ""
            raise SparkEngineError(f"{name}() has no Spark equivalent in this engine{hint}")

    # DuckDB's `as [not] materialized` hints on a CTE are not Spark syntax (Spark plans CTEs itself)
    for cte in tree.find_all(exp.CTE):
        cte.set("materialized", None)

    # 2. parameters become literals
    placeholders = {p.name for p in tree.find_all(exp.Placeholder)}
    missing = sorted(placeholders - set(params))
    if missing:
        raise SparkEngineError(f"no value given for parameter(s) {', '.join(missing)}")

    def interval(node: exp_t.Interval) -> exp_t.Expression:
        amount, unit = _interval_amount(node, params)
        return exp.Interval(this=exp.Literal.string(amount), unit=exp.var(unit))

    _rewrite(tree, exp.Interval, interval)
    _rewrite(tree, exp.Placeholder, lambda p: _literal(p.name, params[p.name]))

    # 3. expand stars from the views' columns (also `* exclude (...)`)
    schema = {view: {c: "string" for c in cols} for view, cols in columns.items()}
    try:
        tree = qualify(tree, dialect="duckdb", schema=schema, expand_stars=True, validate_qualify_columns=True,
                       quote_identifiers=True, identify=True)
    except OptimizeError as exc:
        raise SparkEngineError(f"cannot resolve the model's columns: {exc}") from None

    # 4. DuckDB semantics made explicit
    def full_match(node: exp_t.RegexpFullMatch) -> exp_t.Expression:
        # RE2 full match == Java find() of ^(?:re)\z  (\z: the very end, not before a final newline)
        anchored = exp.Anonymous(
            this="concat", expressions=[exp.Literal.string("^(?:"), node.expression, exp.Literal.string(")\\z")]
        )
        return exp.RegexpLike(this=node.this, expression=anchored)

    def epoch(node: exp_t.TimeToUnix) -> exp_t.Expression:
        micros = exp.UnixMicros(this=exp.cast(node.this, exp.DataType.build("timestamp")))
        seconds = exp.Div(this=exp.cast(micros, double), expression=exp.cast(exp.Literal.number(1_000_000), double))
        return exp.Paren(this=seconds)

    def divide(node: exp_t.Div) -> exp_t.Expression:
        # DuckDB's `/` is a double division for integers and decimals alike
        sides = (node.this, node.expression)
        if all(isinstance(side, exp.Cast) and side.to.this == exp.DataType.Type.DOUBLE for side in sides):
            return node
        return exp.Div(this=exp.cast(node.this, double), expression=exp.cast(node.expression, double))

    def arg_min_max(node: exp_t.ArgMin | exp_t.ArgMax) -> exp_t.Expression:
        # DuckDB skips rows whose value is null; Spark's min_by/max_by would return it
        if node.args.get("count") is not None:
            raise SparkEngineError(f"{node.sql('duckdb')}: arg_min/arg_max with a count is not supported")
        value, key = node.this, node.expression
        guarded = exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=exp.Null(), false=key)
        return type(node)(this=value, expression=guarded)

    def date_diff(node: exp_t.DateDiff) -> exp_t.Expression:
        unit = (node.unit.name if node.unit else "DAY").upper()
        if unit not in _DATE_DIFF_UNITS:
            raise SparkEngineError(f"date_diff('{unit.lower()}', ...) is not supported by the Spark engine")

        def trunc(e: exp_t.Expression) -> exp_t.Expression:
            return exp.Anonymous(this="date_trunc", expressions=[exp.Literal.string(unit), e])

        return exp.DateDiff(this=trunc(node.this), expression=trunc(node.expression), unit=exp.var(unit))

    def ranking(node: exp_t.Window) -> exp_t.Expression:
        if isinstance(node.this, exp.RowNumber | exp.Rank | exp.DenseRank | exp.Ntile):
            return exp.cast(node, exp.DataType.build("bigint"))
        return node

    _rewrite(tree, exp.RegexpFullMatch, full_match)
    _rewrite(tree, exp.TimeToUnix, epoch)
    _rewrite(tree, exp.Div, divide)
    _rewrite(tree, (exp.ArgMin, exp.ArgMax), arg_min_max)
    _rewrite(tree, exp.DateDiff, date_diff)
    _rewrite(tree, exp.ArrayAgg, _ordered_list)
    _rewrite(tree, exp.Window, ranking)
    return tree.sql(dialect="spark")


def _ordered_list(node: exp_t.ArrayAgg) -> exp_t.Expression:
    """``list(x [order by k...])`` as Spark: a sorted list of structs, then their values.

    ``collect_list`` drops nulls and has no order; a struct is never null and carries the sort keys.
    The comparator gives each key DuckDB's direction and null placement. With ``filter`` an empty
    list becomes null (DuckDB returns null when no row passes the filter).
    """
    from sqlglot import exp

    inner = node.this
    if isinstance(inner, exp.Distinct):
        raise SparkEngineError(f"{node.sql('duckdb')}: list(distinct ...) is not supported by the Spark engine")
    keys: list[exp_t.Ordered] = []
    if isinstance(inner, exp.Order):
        keys = list(inner.expressions)
        inner = inner.this
    fields: list[exp_t.Expression] = [exp.Literal.string("v"), inner]
    for i, key in enumerate(keys):
        fields += [exp.Literal.string(f"k{i}"), key.this]
    collected = exp.Anonymous(this="collect_list", expressions=[exp.Anonymous(this="named_struct", expressions=fields)])

    # the wrapper (filter / over) applies to the aggregate, so collect_list takes its place inside it
    outer: exp_t.Expression = node
    while isinstance(outer.parent, exp.Filter | exp.Window) and outer.parent.this is outer:
        outer = outer.parent
    has_filter = isinstance(outer, exp.Filter) or bool(list(outer.find_all(exp.Filter)))
    if outer is node:
        aggregate = collected
    else:
        aggregate = outer.copy()
        target = next(n for n in aggregate.find_all(exp.ArrayAgg))
        target.replace(collected)

    def field(side: str, name: str) -> exp_t.Expression:
        return exp.Dot(this=exp.column(side), expression=exp.to_identifier(name))

    comparison: exp_t.Expression = exp.Literal.number(0)
    for i in reversed(range(len(keys))):
        key = keys[i]
        desc = bool(key.args.get("desc"))
        nulls_first = bool(key.args.get("nulls_first"))
        left, right = field("l", f"k{i}"), field("r", f"k{i}")
        before, after = -1, 1  # comparator results: the left element sorts first / last
        comparison = exp.Case(
            ifs=[
                exp.If(this=exp.and_(_is_null(left), _is_null(right)), true=comparison),
                exp.If(this=_is_null(left), true=exp.Literal.number(before if nulls_first else after)),
                exp.If(this=_is_null(right), true=exp.Literal.number(after if nulls_first else before)),
                exp.If(this=exp.LT(this=left.copy(), expression=right.copy()),
                       true=exp.Literal.number(after if desc else before)),
                exp.If(this=exp.GT(this=left.copy(), expression=right.copy()),
                       true=exp.Literal.number(before if desc else after)),
            ],
            default=comparison,
        )
    sorted_list = aggregate
    if keys:
        comparator = exp.Lambda(this=comparison, expressions=[exp.to_identifier("l"), exp.to_identifier("r")])
        sorted_list = exp.Anonymous(this="array_sort", expressions=[aggregate, comparator])
    values = exp.Anonymous(
        this="transform",
        expressions=[sorted_list, exp.Lambda(this=field("s", "v"), expressions=[exp.to_identifier("s")])],
    )
    result: exp_t.Expression = values
    if has_filter:
        size = exp.Anonymous(this="size", expressions=[aggregate.copy()])
        empty = exp.EQ(this=size, expression=exp.Literal.number(0))
        result = exp.If(this=empty, true=exp.Null(), false=values)
    if outer is not node:
        outer.replace(result)
        return node  # already detached from the tree with its wrapper
    return result


def _is_null(e: exp_t.Expression) -> exp_t.Expression:
    from sqlglot import exp

    return exp.Is(this=e.copy(), expression=exp.Null())


# -- the session ----------------------------------------------------------------------------------


def _local_cores(master: str) -> int | None:
    if not master.startswith("local"):
        return None
    inner = master.partition("[")[2].partition("]")[0].split(",")[0].strip()
    if inner in ("", "*"):
        return os.cpu_count() or 1
    try:
        return max(1, int(inner))
    except ValueError:
        return os.cpu_count() or 1


def create_session(
    master: str = DEFAULT_MASTER,
    *,
    shuffle_partitions: int | None = None,
    conf: Mapping[str, str] | None = None,
    app_name: str = "journeys",
) -> SparkSession:
    """A SparkSession for ``master``: ``local[*]``, a cluster URL, or Spark Connect (``sc://host:port``).

    Always UTC (``spark.sql.session.timeZone``) like the DuckDB side. In local mode the UI and the
    console progress bar are off and shuffles use two partitions per core (unless given).
    """
    _require()
    from pyspark.sql import SparkSession

    runtime = {"spark.sql.session.timeZone": "UTC"}
    cores = _local_cores(master)
    partitions = shuffle_partitions or (cores * 2 if cores else None)
    if partitions:
        runtime["spark.sql.shuffle.partitions"] = str(partitions)
    try:
        if master.startswith("sc://"):
            _check_reachable(master)
            spark = SparkSession.builder.remote(master).getOrCreate()
            for key, value in {**runtime, **(conf or {})}.items():  # runtime settings only
                spark.conf.set(key, value)
        else:
            if not cores and os.environ.get("SPARK_LOCAL_IP") == "127.0.0.1":
                # `import pandera` (ingest) sets this when pyspark is installed; a cluster's executors
                # could not reach a driver bound to the loopback address
                del os.environ["SPARK_LOCAL_IP"]
            builder = SparkSession.builder.master(master).appName(app_name)
            if cores:
                builder = (
                    builder.config("spark.ui.enabled", "false")
                    .config("spark.ui.showConsoleProgress", "false")
                    # no stray spark-warehouse/ folder in the working directory (no tables live there)
                    .config("spark.sql.warehouse.dir", str(Path(tempfile.gettempdir()) / "journeys-spark-warehouse"))
                )
            for key, value in {**runtime, **(conf or {})}.items():
                builder = builder.config(key, value)
            spark = builder.getOrCreate()
            spark.sparkContext.setLogLevel("FATAL")  # failures reach the caller as one-line errors
            for key, value in runtime.items():  # a session that already existed keeps its own otherwise
                spark.conf.set(key, value)
    except Exception as exc:  # Java missing, master unreachable, ...
        raise SparkEngineError(f"cannot start Spark on {master}: {_first_line(exc)}") from exc
    return spark


def _check_reachable(url: str, timeout_seconds: float = 10.0) -> None:
    """Fail fast on a Spark Connect endpoint that does not answer (the client retries for minutes)."""
    import socket
    from urllib.parse import urlparse

    address = urlparse(url.replace("sc://", "http://", 1))
    host, port = address.hostname or "localhost", address.port or 15002
    try:
        with socket.create_connection((host, port), timeout=timeout_seconds):
            pass
    except OSError as exc:
        raise SparkEngineError(f"cannot reach Spark Connect at {host}:{port}: {exc}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the runner -----------------------------------------------------------------------------------


def default_workdir(db: Database) -> Path:
    """``$JOURNEYS_SPARK_DIR``, else ``<db file>.spark/`` next to the database (a temp dir for ``:memory:``)."""
    if os.environ.get(WORKDIR_ENV):
        return Path(os.environ[WORKDIR_ENV])
    if db.path == ":memory:":
        return Path(tempfile.mkdtemp(prefix="journeys-spark-"))
    return Path(db.path).with_suffix(".spark")


def _parquet_rows(folder: Path) -> int:
    """Rows of the Parquet files Spark wrote, from their footers (no Spark job)."""
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(folder.glob("*.parquet")))


class SparkRunner:
    """Runs models on one SparkSession, with ``raw.events`` and the seeds taken from ``db``."""

    def __init__(self, spark: SparkSession, db: Database, workdir: str | Path) -> None:
        _require()
        self.spark = spark
        self.db = db
        self.workdir = Path(workdir).resolve()
        self.tables: dict[str, Path] = {}  # "layer.table" -> its Parquet file or folder
        self._columns: dict[str, list[str]] = {}  # view -> columns

    def _register(self, view: str, path: Path) -> None:
        frame = self.spark.read.parquet(path.as_uri())
        frame.createOrReplaceTempView(view)
        self._columns[view] = list(frame.columns)

    def export_raw(self) -> int:
        """Write ``raw.events`` to ``<workdir>/raw/events.parquet`` (DuckDB ``copy``) and register it."""
        if not self.db.has_table("raw", "events"):
            raise SparkEngineError(f"{self.db.path} has no raw.events; load files with `journeys ingest` first")
        out = self.workdir / "raw" / "events.parquet"
        out.parent.mkdir(parents=True, exist_ok=True)
        self.db.execute("copy (select * from raw.events) to $out (format parquet)", {"out": str(out)})
        self._register(view_name("raw", "events"), out)
        self.tables["raw.events"] = out
        return int(self.db.scalar("select count(*) from raw.events"))

    def register_seed(self, param: str, path: str | Path) -> None:
        """``read_csv($param, all_varchar = true, header = true)`` read by DuckDB, as a Spark temp view."""
        from pyspark.sql.types import StringType, StructField, StructType

        view = seed_view_name(param)
        if view in self._columns:
            return
        frame = self.db.query("select * from read_csv($path, all_varchar = true, header = true)", {"path": str(path)})
        schema = StructType([StructField(c, StringType(), True) for c in frame.columns])
        rows = [tuple(r) for r in frame.rows()]
        data = self.spark.createDataFrame(rows, schema=schema)
        data.createOrReplaceTempView(view)
        self._columns[view] = list(frame.columns)

    def transpile(self, relpath: str, params: Mapping[str, Any]) -> str:
        """Spark SQL for ``sql/<relpath>`` (registering the seeds it reads)."""
        tree = parse_model(load_sql(relpath))
        for param in seed_params(tree):
            if param not in params:
                raise SparkEngineError(f"sql/{relpath}: no value given for parameter ${param}")
            self.register_seed(param, params[param])
        return to_spark_sql(tree, params, self._columns)

    def build_model(self, relpath: str, params: Mapping[str, Any]) -> int:
        """Build ``sql/<layer>/<stem>.sql`` as Parquet and view ``<layer>__<stem>``; return its rows."""
        layer, _, filename = relpath.partition("/")
        stem = filename.removesuffix(".sql")
        try:
            sql = self.transpile(relpath, params)
            folder = self.workdir / layer / stem
            self.spark.sql(sql).write.mode("overwrite").parquet(folder.as_uri())
            self._register(view_name(layer, stem), folder)
            self.tables[f"{layer}.{stem}"] = folder
            return _parquet_rows(folder)
        except SparkEngineError as exc:
            raise SparkEngineError(f"sql/{relpath}: {exc}") from exc
        except Exception as exc:  # AnalysisException, Py4JJavaError, ...
            raise SparkEngineError(f"sql/{relpath}: Spark failed: {_first_line(exc)}") from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """A DuckDB-dialect select of our own (over ``raw.*``, built tables, seeds) run on Spark, as polars."""
        tree = parse_model(sql)
        for param in seed_params(tree):
            if param not in (params or {}):
                raise SparkEngineError(f"no value given for parameter ${param}")
            self.register_seed(param, (params or {})[param])
        spark_sql = to_spark_sql(tree, params or {}, self._columns)
        return pl.from_arrow(self.spark.sql(spark_sql).toArrow())  # type: ignore[return-value]

    def scalar(self, sql: str) -> Any:
        """One value of a Spark SQL query over the views (our own SQL only)."""
        rows = self.spark.sql(sql).collect()
        return rows[0][0] if rows else None

    def table(self, name: str) -> pl.DataFrame:
        """A built table (``layer.table``) as polars, read back from its Parquet through Spark."""
        if name not in self.tables:
            raise SparkEngineError(f"table {name} was not built by this Spark run")
        return pl.from_arrow(self.spark.read.parquet(self.tables[name].as_uri()).toArrow())  # type: ignore[return-value]

    def load_into(self, names: Iterable[str], log: tuple[int, str, float] | None = None) -> None:
        """Replace the DuckDB tables ``names`` by the Parquet Spark wrote, in one transaction.

        ``log`` = (max_file_id, fingerprint, start time) also records the build in
        ``staging.build_log`` (mode ``spark``) so that the next DuckDB build can be incremental.
        """
        from pipeline.build import _log_build

        with self.db.transaction():
            for name in names:
                files = self.tables[name] / "*.parquet"
                self.db.materialize(name, "select * from read_parquet($path)", {"path": str(files)})
            if log is not None:
                max_file_id, print_, started = log
                _log_build(self.db, "spark", max_file_id, print_, None, started)


def build_spark(
    db: Database,
    config: dict[str, dict[str, Any]],
    *,
    master: str = DEFAULT_MASTER,
    workdir: str | Path | None = None,
    spark: SparkSession | None = None,
    load_into_db: bool = True,
    stop_session: bool = False,
    shuffle_partitions: int | None = None,
) -> tuple[BuildSummary, SparkRunner]:
    """Build every model of ``discover_models()`` on Spark; the summary and the runner (for reading).

    Always a full build. With ``load_into_db`` the model tables then replace those of the DuckDB
    database in one transaction that also logs the build (``staging.build_log``, mode ``spark``), so
    the next ``journeys build`` is incremental from here. ``spark`` reuses a session (tests);
    otherwise one is started on ``master``. ``stop_session`` stops a session this call started.
    """
    _require()
    from pyspark.sql import SparkSession as _Session

    from pipeline.build import BuildSummary, discover_models, fingerprint, mapping_paths, model_params
    from pipeline.mapping import validate_mappings

    if not db.has_table("raw", "events"):
        raise SparkEngineError(f"{db.path} has no raw.events; load files with `journeys ingest` first")
    params = model_params(config)
    validate_mappings(db, mapping_paths(config))
    build_started = time.perf_counter()
    summary = BuildSummary(mode="full")
    owned = spark is None and _Session.getActiveSession() is None
    session = spark or create_session(master, shuffle_partitions=shuffle_partitions)
    summary.seconds["spark_start"] = round(time.perf_counter() - build_started, 3)
    try:
        runner = SparkRunner(session, db, workdir or default_workdir(db))
        started = time.perf_counter()
        runner.export_raw()
        max_file_id = int(db.scalar("select coalesce(max(file_id), 0) from raw.manifest"))
        summary.seconds["export_raw"] = round(time.perf_counter() - started, 3)
        for layer, models in discover_models().items():
            started = time.perf_counter()
            for relpath in models:
                name = f"{layer}.{relpath.split('/')[-1].removesuffix('.sql')}"
                summary.tables[name] = runner.build_model(relpath, params)
            if models:
                summary.seconds[layer] = round(time.perf_counter() - started, 3)
        summary.n_events = summary.tables["staging.stg_events"]
        summary.n_sessions = summary.tables["staging.stg_sessions"]
        summary.n_users = summary.tables["staging.stg_users"]
        summary.n_unmapped_events = int(
            runner.scalar(
                f"select count(*) from {view_name('staging', 'stg_touchpoints')} "  # noqa: S608 - our own names
                "where not is_mapped and not is_channel_step"
            )
        )
        if load_into_db:
            started = time.perf_counter()
            runner.load_into(
                [name for name in summary.tables], log=(max_file_id, fingerprint(config), build_started)
            )
            summary.seconds["load_duckdb"] = round(time.perf_counter() - started, 3)
    finally:
        if stop_session and owned:
            session.stop()
    return summary, runner
