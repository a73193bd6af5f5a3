"""The only module that imports duckdb.

Opens the project database (a DuckDB file), runs SQL model files from ``sql/`` as
``create or replace table <layer>.<stem> as <select>``, binds every value as a named parameter, and
returns results as polars DataFrames. Reads ``sql/**.sql``; writes the database file it is given.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from pipeline.config import MEMORY_LIMIT

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
LAYERS = ("raw", "staging", "paths", "marts")

# `$name` outside of quoted strings; SQL files are ours, so a simple scan is enough.
_PARAM = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_COMMENT = re.compile(r"--[^\n]*")
_STRING = re.compile(r"'(?:[^']|'')*'")


class DatabaseError(Exception):
    """A failure the user can act on (locked file, missing table, SQL error in a model)."""


def sql_params(sql: str) -> set[str]:
    """Names of the ``$parameters`` a query uses (comments and string literals ignored)."""
    return set(_PARAM.findall(_STRING.sub("''", _COMMENT.sub("", sql))))


def load_sql(relpath: str) -> str:
    path = SQL_DIR / relpath
    if not path.is_file():
        raise DatabaseError(f"SQL model {relpath} not found under {SQL_DIR}")
    return path.read_text(encoding="utf-8")


class Database:
    """A DuckDB connection with the project's conventions (UTC, named parameters, polars results)."""

    def __init__(self, path: str | Path, *, read_only: bool = False, memory_limit: str = "") -> None:
        """``memory_limit``: the config's ``[engine] memory_limit`` ('' keeps DuckDB's default, 80% of
        RAM); every command that reads the config passes it, so the cap holds in ingest, build and
        report alike."""
        self.path = str(path)
        self.read_only = read_only
        if path != ":memory:":
            p = Path(path)
            # DuckDB names the catalog after the file stem; a stem equal to one of our schemas (or a
            # reserved catalog) makes every `raw.events`-style name ambiguous.
            if p.stem.lower() in (*LAYERS, "main", "temp", "system"):
                raise DatabaseError(
                    f"database file {p.name}: its name clashes with the schema or catalog '{p.stem}'; "
                    "choose another file name (e.g. journeys.duckdb)"
                )
            if read_only and not p.is_file():
                raise DatabaseError(f"database {p} does not exist; run `journeys ingest` first")
            if not read_only:
                p.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            raise DatabaseError(f"cannot open database {self.path}: {_first_line(exc)}") from None
        except duckdb.Error as exc:
            raise DatabaseError(f"cannot open database {self.path}: {_first_line(exc)}") from None
        self._request_keys: dict[str, tuple[Any, ...]] = {}
        # earlier requests of a name kept aside (materialize_request's keep): key -> table, oldest first
        self._parked: dict[str, dict[tuple[Any, ...], str]] = {}
        self._n_parked = 0
        self._memory_limit: str | None = None  # set_memory_limit's; None: DuckDB's default
        self.con.execute("set TimeZone = 'UTC'")
        # DuckDB draws a progress bar on stdout for long queries, even in cron; we report our own.
        # (Inside Jupyter DuckDB refuses to change the setting without ipywidgets; it draws no bar
        # there either, so the refusal is harmless.)
        with contextlib.suppress(duckdb.Error):
            self.con.execute("set enable_progress_bar = false")
        if not read_only:
            for layer in LAYERS:
                self.con.execute(f"create schema if not exists {layer}")
        if memory_limit:
            try:
                self.set_memory_limit(memory_limit)
            except DatabaseError:
                self.con.close()
                raise

    # -- queries ---------------------------------------------------------------------------------
    def set_memory_limit(self, limit: str) -> None:
        """Cap DuckDB's memory (e.g. '8GB'); bigger sorts spill to disk. ``limit`` is validated by
        pipeline.config (digits and a unit only), so it is safe to place in the statement."""
        if not re.fullmatch(MEMORY_LIMIT, limit):
            raise DatabaseError(f"memory limit {limit!r} must look like 8GB or 512MiB")
        self.execute(f"set memory_limit = '{limit}'")
        self._memory_limit = limit

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement whose result is not needed (DDL, insert)."""
        try:
            self.con.execute(sql, _bind(sql, params)).fetchall()
        except duckdb.Error as exc:
            raise DatabaseError(_first_line(exc)) from exc

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> pl.DataFrame:
        """Run a select and return it whole as a polars DataFrame."""
        try:
            return self.con.sql(sql, params=_bind(sql, params)).pl()
        except duckdb.Error as exc:
            raise DatabaseError(_first_line(exc)) from exc

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        try:
            rows = self.con.execute(sql, _bind(sql, params)).fetchall()
        except duckdb.Error as exc:
            raise DatabaseError(_first_line(exc)) from exc
        return rows[0][0] if rows else None

    def table(self, name: str) -> pl.DataFrame:
        """A whole table as polars; ``name`` must be ``layer.table`` of an existing table."""
        layer, _, table = name.partition(".")
        if not self.has_table(layer, table):
            raise DatabaseError(f"table {name} does not exist; run `journeys build` first")
        return self.query(f"select * from {layer}.{table}")  # noqa: S608 - checked against the catalog

    def has_table(self, layer: str, table: str) -> bool:
        return bool(
            self.scalar(
                "select count(*) from information_schema.tables "
                "where table_schema = $layer and table_name = $table",
                {"layer": layer, "table": table},
            )
        )

    def register(self, name: str, frame: pl.DataFrame) -> None:
        """Expose a polars frame to SQL as a view named ``name`` (a name from our own code)."""
        self.con.register(name, frame)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    # -- models ----------------------------------------------------------------------------------
    def build_model(self, relpath: str, params: Mapping[str, Any] | None = None) -> int:
        """Build ``sql/<layer>/<stem>.sql`` as table ``<layer>.<stem>``; return its row count."""
        layer, _, filename = relpath.partition("/")
        stem = filename.removesuffix(".sql")
        if layer not in LAYERS or not re.fullmatch(r"[a-z0-9_]+", stem):
            raise DatabaseError(f"{relpath}: models live in sql/<layer>/<name>.sql with layer in {LAYERS}")
        sql = load_sql(relpath)
        needed = sql_params(sql)
        given = dict(params or {})
        missing = sorted(needed - given.keys())
        if missing:
            raise DatabaseError(f"sql/{relpath}: no value given for parameter(s) {', '.join(missing)}")
        try:
            self.materialize(f"{layer}.{stem}", sql, {k: given[k] for k in needed})
        except DatabaseError as exc:
            raise DatabaseError(f"sql/{relpath}: {exc}") from exc
        return int(self.scalar(f"select count(*) from {layer}.{stem}"))  # noqa: S608

    def materialize(
        self, name: str, sql: str, params: Mapping[str, Any] | None = None, *, temp: bool = False
    ) -> None:
        """``create or replace [temp] table <name> as <select>`` with bound parameters.

        DuckDB cannot prepare ``create table ... as`` with parameters, so the select is bound as a
        relation and the relation is written as the table; ``name`` comes from our own code. A temp
        table (also possible on a read-only connection) is created from the relation's column
        types and filled with ``insert``.
        """
        try:
            self.con.execute(f"drop table if exists {name}").fetchall()
            relation = self.con.sql(sql, params=_bind(sql, params))
            if temp:
                columns = ", ".join(
                    f'"{c}" {t}' for c, t in zip(relation.columns, relation.types, strict=True)
                )
                self.con.execute(f"create temp table {name} ({columns})").fetchall()
                try:
                    relation.insert_into(name)
                except duckdb.Error:
                    self.con.execute(f"drop table if exists {name}").fetchall()  # no half-made table
                    raise
            else:
                relation.create(name)
        except duckdb.Error as exc:
            raise DatabaseError(_first_line(exc)) from exc

    def materialize_request(
        self, name: str, sql: str, params: Mapping[str, Any] | None = None, *, keep: int = 1
    ) -> None:
        """The temp table of one request (``journey_steps``, ``metric_units``), made again only when
        the query, its values or the data changed: a report asks for the same units many times.

        ``keep`` > 1 keeps that many recent requests of the name: the others wait under a parked
        name and come back by a rename (a catalog change, no copy) when asked for again. The
        report alternates between a few requests (units per period, then per level); a table of
        one row per unit is small enough to keep, a table of every step is not (keep 1).

        The data version is the last build (``staging.build_log``: builds, incremental ones and
        ``forget`` write a row) and the last loaded file; the tables these requests read change
        only through those.
        """
        version = self._data_version()
        key = (sql, repr(sorted((params or {}).items())), version)
        if self._request_keys.get(name) == key:
            return
        parked = self._parked.setdefault(name, {})
        for old in [k for k in parked if k[2] != version]:  # made from older data: never asked again
            self.execute(f"drop table if exists {parked.pop(old)}")
        current = self._request_keys.pop(name, None)
        if current is not None and keep > 1 and current[2] == version:
            self._n_parked += 1
            parked[current] = f"{name}__parked_{self._n_parked}"
            self.execute(f"alter table {name} rename to {parked[current]}")
        if key in parked:
            self.execute(f"drop table if exists {name}")
            self.execute(f"alter table {parked.pop(key)} rename to {name}")
        else:
            self.materialize(name, sql, params, temp=True)
        self._request_keys[name] = key
        while len(parked) > keep - 1:
            self.execute(f"drop table if exists {parked.pop(next(iter(parked)))}")

    def release_memory(self) -> None:
        """Drop the request tables and make DuckDB give its freed memory back to the system.

        DuckDB keeps memory it has freed (and cached table blocks) up to its limit, 80% of RAM by
        default, for its next query. Before work on the Python side that needs gigabytes
        (personas at 100M events: the report was killed at 24.3 GB there), lowering the limit
        for a moment makes it let go: after a session journey preparation at 10M events, resident
        memory fell from 4.6 GB to 0.3 GB.
        The request tables are a cache; the next request makes its table again.
        """
        for name in list(self._request_keys):
            self.execute(f"drop table if exists {name}")
        for parked in self._parked.values():
            for table in parked.values():
                self.execute(f"drop table if exists {table}")
        self._request_keys.clear()
        self._parked.clear()
        try:
            with contextlib.suppress(DatabaseError):  # memory still in use: it keeps what it must
                self.execute("set memory_limit = '64MB'")  # for a moment: _memory_limit stays as set
        finally:
            if self._memory_limit is None:
                self.execute("reset memory_limit")  # DuckDB's default
            else:
                self.set_memory_limit(self._memory_limit)

    def _data_version(self) -> tuple[Any, ...]:
        parts = []
        for schema, table, column in (("staging", "build_log", "build_id"), ("raw", "manifest", "file_id")):
            parts.append(
                self.scalar(f"select max({column}) from {schema}.{table}")  # noqa: S608 - our own names
                if self.has_table(schema, table) else None
            )
        return tuple(parts)

    # -- transactions ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing: commit on success, roll back on any exception (then re-raise)."""
        self.con.execute("begin transaction").fetchall()
        try:
            yield
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self.con.execute("rollback").fetchall()
            raise
        self.con.execute("commit").fetchall()

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bind(sql: str, params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Only the parameters the statement uses: DuckDB rejects unused named parameters."""
    if not params:
        return None
    used = sql_params(sql)
    return {k: v for k, v in params.items() if k in used} or None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_database_error(exc: BaseException) -> bool:
    return isinstance(exc, DatabaseError | duckdb.Error)
