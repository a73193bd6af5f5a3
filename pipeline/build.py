"""Build: run the SQL models layer by layer (staging -> paths -> marts) in one transaction.

Reads ``raw.*`` and the seed files named in the config; writes every model table of ``sql/``. A
failure leaves the previous tables as they were (the whole build is one transaction).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any, Literal

from pipeline.db import LAYERS, SQL_DIR, Database, DatabaseError, load_sql

BUILD_LAYERS = ("staging", "paths", "marts")
_REF = re.compile(r"\b(" + "|".join(LAYERS) + r")\.([a-z0-9_]+)\b")


def discover_models() -> dict[str, list[str]]:
    """Every ``sql/<layer>/*.sql`` in dependency order, found from the tables each file reads.

    A model may read raw tables, models of earlier layers and models of its own layer; the order
    inside a layer is a topological sort of those references (ties by name, so it is stable).
    """
    ordered: dict[str, list[str]] = {}
    for index, layer in enumerate(BUILD_LAYERS):
        files = sorted((SQL_DIR / layer).glob("*.sql"))
        names = {f.stem for f in files}
        graph: dict[str, set[str]] = {}
        for f in files:
            refs = set()
            for ref_layer, table in _REF.findall(f.read_text(encoding="utf-8")):
                if ref_layer == layer and table in names and table != f.stem:
                    refs.add(table)
                elif ref_layer in BUILD_LAYERS[index + 1:]:
                    raise DatabaseError(f"sql/{layer}/{f.name} reads {ref_layer}.{table}, a later layer")
            graph[f.stem] = refs
        sorter = TopologicalSorter(graph)
        try:
            sorter.prepare()
        except CycleError as exc:
            raise DatabaseError(f"sql/{layer}: models read each other in a cycle: {exc.args[1]}") from None
        order: list[str] = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            order.extend(ready)
            sorter.done(*ready)
        ordered[layer] = [f"{layer}/{stem}.sql" for stem in order]
    return ordered

SEEDS_DIR = SQL_DIR / "seeds"
MAPPING_FILES = ("channel_groups", "touchpoint_rules", "channel_touchpoints", "touchpoint_stages", "stages")


@dataclass
class BuildSummary:
    n_events: int = 0
    n_users: int = 0
    n_sessions: int = 0
    n_unmapped_events: int = 0
    mode: str = "full"
    n_affected_users: int | None = None
    compacted: bool = False  # the deleted rows of swapped users were reclaimed (see COMPACT_EVERY)
    seconds: dict[str, float] = field(default_factory=dict)
    model_seconds: dict[str, float] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_events": self.n_events,
            "n_users": self.n_users,
            "n_sessions": self.n_sessions,
            "n_unmapped_events": self.n_unmapped_events,
            "mode": self.mode,
            "n_affected_users": self.n_affected_users,
            "compacted": self.compacted,
            "seconds": self.seconds,
            "model_seconds": self.model_seconds,
            "tables": self.tables,
        }


def model_params(config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The named parameters every model may use, from the validated config."""
    sessions = config["sessions"]
    return {
        "session_timeout_minutes": sessions["timeout_minutes"],
        "session_source": sessions["session_source"],
        **{f"{name}_path": str(path) for name, path in mapping_paths(config).items()},
    }


def mapping_paths(config: dict[str, dict[str, Any]]) -> dict[str, Path]:
    """The mapping files (built-in seeds unless the config names others)."""
    return {name: Path(config["mapping"][name] or SEEDS_DIR / f"{name}.csv") for name in MAPPING_FILES}


BuildMode = Literal["auto", "full"]
# An incremental build deletes the touched users' staging rows and inserts their new ones. Reclaiming
# the deleted rows (DuckDB vacuums them at the checkpoint) rewrites stg_events almost whole: 2.6 s
# of a 10.4 s day build at 10M events. So the reclaim is batched, as lakehouse tables batch their
# compaction (Delta Lake OPTIMIZE, Iceberg rewrite_data_files): it runs on every COMPACT_EVERY-th
# incremental build after the last full one (which writes every table afresh); the builds between
# only mark the rows deleted. Either way the tables hold the same rows.
COMPACT_EVERY = 7
STAGING_BY_USER = (
    "stg_events", "stg_sessions", "stg_users", "stg_touchpoints", "stg_stage_visits", "stg_user_stages", "stg_customers"
)
# Marts whose rows each depend on one user's staging rows only: an incremental build makes them
# from the touched users' staging rows and swaps them like STAGING_BY_USER. The other marts depend
# on every user (a stage's totals) or on the end of the data (a customer's tenure) and are rebuilt.
MARTS_BY_USER = ("mart_user_value",)


def fingerprint(config: dict[str, dict[str, Any]]) -> str:
    """Everything a build depends on besides the data: parameters, model SQL files, mapping files."""
    digest = hashlib.sha256(json.dumps(model_params(config), sort_keys=True).encode())
    models = [SQL_DIR / m for layer in discover_models().values() for m in layer]
    for path in models + sorted(mapping_paths(config).values()):
        digest.update(str(path.relative_to(SQL_DIR) if path.is_relative_to(SQL_DIR) else path).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _last_build(db: Database) -> dict[str, Any] | None:
    if not db.has_table("staging", "build_log"):
        return None
    rows = db.query("select * from staging.build_log order by build_id desc limit 1").to_dicts()
    return rows[0] if rows else None


def build(db: Database, config: dict[str, dict[str, Any]], mode: BuildMode = "auto") -> BuildSummary:
    """Build every model. ``auto`` is incremental when only new files arrived since the last build
    with the same fingerprint (config, SQL, mappings); ``full`` rebuilds everything. Either way the
    result is the same tables, and the whole build is one transaction."""
    if not db.has_table("raw", "events"):
        raise DatabaseError(f"{db.path} has no raw.events; load files with `journeys ingest` first")
    params = model_params(config)
    if config["engine"]["memory_limit"]:
        db.set_memory_limit(config["engine"]["memory_limit"])
    from pipeline.mapping import validate_mappings

    validate_mappings(db, mapping_paths(config))
    started = time.perf_counter()
    summary = BuildSummary()
    print_ = fingerprint(config)
    max_file_id = int(db.scalar("select coalesce(max(file_id), 0) from raw.manifest"))
    last = _last_build(db)
    incremental = (
        mode == "auto" and last is not None and last["fingerprint"] == print_
        # `journeys forget` deleted rows of existing users: it leaves this mark (pipeline/privacy.py)
        and last["mode"] != "forget"
        and all(db.has_table("staging", t) for t in STAGING_BY_USER)
        and all(db.has_table("marts", t) for t in MARTS_BY_USER)
        # a reload that replaced events (a GA4 day) may remove rows of users the new file lacks
        and not db.scalar(
            "select count(*) from raw.manifest where file_id > $last and n_replaced > 0",
            {"last": last["max_file_id"]},
        )
    )
    if incremental and last["max_file_id"] == max_file_id:
        summary.mode = "up_to_date"
        _fill_counts(db, summary)
        return summary
    if incremental:
        summary.compacted = _compaction_due(db)
        with _vacuum_deferred(db, not summary.compacted):
            summary.n_affected_users = _rebuild_affected_users(db, params, int(last["max_file_id"]), summary)
            summary.mode = "incremental"
            _fill_counts(db, summary)
            with db.transaction():
                _log_build(db, "incremental", max_file_id, print_, summary.n_affected_users, started)
        return summary
    with db.transaction():
        for layer, models in discover_models().items():
            _build_layer(db, layer, models, params, summary)
        _log_build(db, "full", max_file_id, print_, None, started)
    summary.mode = "full"
    _fill_counts(db, summary)
    return summary


@contextlib.contextmanager
def _vacuum_deferred(db: Database, defer: bool) -> Iterator[None]:
    """With ``defer``, the checkpoint that ends the block marks deleted rows without reclaiming
    them (see COMPACT_EVERY)."""
    if not defer:
        yield
        return
    db.execute("set max_vacuum_tasks = 0")
    try:
        yield
        # Checkpoint now, while the setting holds (DuckDB would otherwise checkpoint at close, with
        # the vacuum). Refused only while another connection of this process is inside a
        # transaction; the data is committed either way, and the rows are then reclaimed later.
        with contextlib.suppress(DatabaseError):
            db.execute("checkpoint")
    finally:
        db.execute("reset max_vacuum_tasks")


def _compaction_due(db: Database) -> bool:
    """Whether this incremental build is the COMPACT_EVERY-th since the last build that wrote every
    table afresh (a full build, or the full build a forget forces)."""
    n_since = int(db.scalar(
        "select count(*) from staging.build_log where mode = 'incremental' and build_id > "
        "coalesce((select max(build_id) from staging.build_log where mode <> 'incremental'), 0)"
    ))
    return (n_since + 1) % COMPACT_EVERY == 0


def _build_layer(db: Database, layer: str, models: list[str], params: dict[str, Any], summary: BuildSummary) -> None:
    layer_started = time.perf_counter()
    for relpath in models:
        name = f"{layer}.{relpath.split('/')[-1].removesuffix('.sql')}"
        model_started = time.perf_counter()
        summary.tables[name] = db.build_model(relpath, params)
        summary.model_seconds[name] = round(time.perf_counter() - model_started, 3)
    if models:
        summary.seconds[layer] = round(time.perf_counter() - layer_started, 3)


def _fill_counts(db: Database, summary: BuildSummary) -> None:
    summary.n_events = int(db.scalar("select count(*) from staging.stg_events"))
    summary.n_sessions = int(db.scalar("select count(*) from staging.stg_sessions"))
    summary.n_users = int(db.scalar("select count(*) from staging.stg_users"))
    summary.n_unmapped_events = int(
        db.scalar("select count(*) from staging.stg_touchpoints where not is_mapped and not is_channel_step")
    )


def _log_build(
    db: Database, mode: str, max_file_id: int, print_: str, n_affected: int | None, started: float
) -> None:
    db.execute(
        "create table if not exists staging.build_log (build_id bigint, built_at timestamp, mode varchar, "
        "max_file_id bigint, fingerprint varchar, n_affected_users bigint, seconds double)"
    )
    db.execute(
        "insert into staging.build_log select coalesce(max(build_id), 0) + 1, now()::timestamp, $mode, "
        "$max_file_id, $fingerprint, $n_affected, $seconds from staging.build_log",
        {"mode": mode, "max_file_id": max_file_id, "fingerprint": print_, "n_affected": n_affected,
         "seconds": round(time.perf_counter() - started, 3)},
    )


def _updated_identity(db: Database, main: str, last_file_id: int) -> None:
    """The identity links after the new files, as temp table ``_build_identity``.

    An anonymous_id's link is decided by the events that carry it together with a user_id, so only
    the anonymous_ids of such new events can change: their links are computed again by
    ``stg_identity.sql``, over their events only (copied into an in-memory database, as the staging
    rebuild does), and the stored links of all others are kept. Computing every link again sorted
    every linked event: 14.8-19.2 s at 100M events against about 2 s this way (at 10M, 0.76 s of
    an 8-10 s day build against about 0.5 s).
    """
    db.materialize(
        "_build_relinked",
        "select distinct anonymous_id from raw.events "
        "where file_id > $last and anonymous_id is not null and user_id is not null",
        {"last": last_file_id},
        temp=True,
    )
    db.execute("attach ':memory:' as _relink")
    try:
        db.execute("create schema _relink.raw")
        # the columns stg_identity.sql reads (all 22: 4.8-7.2 s at 100M events, these: 1.1-1.2 s)
        db.execute(
            "create table _relink.raw.events as select anonymous_id, user_id, ts from raw.events "
            "where anonymous_id in (select anonymous_id from _build_relinked) and user_id is not null"
        )
        db.execute("use _relink")
        try:
            db.materialize("_build_identity", load_sql("staging/stg_identity.sql"), temp=True)
        finally:
            db.execute(f'use "{main}"')
        db.execute(
            "insert into _build_identity select * from staging.stg_identity "
            "where anonymous_id not in (select anonymous_id from _build_relinked)"
        )
    finally:
        db.execute("detach _relink")
        db.execute("drop table if exists _build_relinked")


def _rebuild_affected_users(db: Database, params: dict[str, Any], last_file_id: int, summary: BuildSummary) -> int:
    """Recompute the staging rows of the users that new events touch, then every later layer.

    Affected journey keys = the keys those users' events had before (an identity link may move a
    cookie's events to another user) plus the keys they have now. Their raw events are copied into
    an in-memory database where the same staging SQL runs; the main database then swaps their rows
    in one transaction, replaces stg_identity, swaps MARTS_BY_USER the same way (made there from
    those staging rows) and rebuilds the other paths and marts. The new identity links
    are computed once (``_updated_identity``) and serve the three steps that need them.
    """
    started = time.perf_counter()
    main = db.scalar("select current_database()")
    new_ids = (
        "select user_id as id from raw.events where file_id > $last and user_id is not null union "
        "select anonymous_id from raw.events where file_id > $last and anonymous_id is not null"
    )
    _updated_identity(db, main, last_file_id)
    identity = "select * from _build_identity"
    db.materialize(
        "_build_affected",
        f"with ids as ({new_ids}), identity as ({identity}), "  # noqa: S608 - our own SQL files
        # one semi join per id column (an `or` of two `in` tests: 0.24-0.29 s at 10M, this 0.18 s)
        "old_keys as (select e.user_key from staging.stg_events as e semi join ids on e.user_id = ids.id "
        "  union select e.user_key from staging.stg_events as e semi join ids on e.anonymous_id = ids.id), "
        "new_keys as (select distinct coalesce(r.user_id, i.user_id, r.anonymous_id) as user_key "
        "  from raw.events as r left join identity as i on r.anonymous_id = i.anonymous_id "
        "  where r.file_id > $last) "
        "select user_key from old_keys union select user_key from new_keys",
        {"last": last_file_id},
        temp=True,
    )
    n_affected = int(db.scalar("select count(*) from _build_affected"))
    db.execute("attach ':memory:' as _incremental")
    try:
        for layer in ("raw", "staging"):
            db.execute(f"create schema _incremental.{layer}")
        # The rows whose journey key coalesce(user_id, linked user_id, anonymous_id) is affected,
        # chosen by two probes of small sets instead of a join of every raw row with the links: a
        # row with a user_id is keyed by it; a row without one by its anonymous_id's linked user
        # when it has one, else by the anonymous_id itself. Two semi joins, one per kind of row
        # (an `or` of the two `in` tests probed both sets for every row: at 10M, 0.35-0.44 s
        # against 0.18 s to find the 589,313 rows, the same rows).
        db.execute(
            "create table _incremental.raw.events as with affected_anonymous as ("
            "  select anonymous_id from _build_identity where user_id in (select user_key from _build_affected) "
            "  union all "
            "  select a.user_key from _build_affected as a "
            "  where not exists (select 1 from _build_identity as i where i.anonymous_id = a.user_key)) "
            "select r.* from raw.events as r semi join _build_affected as a on r.user_id = a.user_key "
            "union all "
            "select r.* from raw.events as r semi join affected_anonymous as x on r.anonymous_id = x.anonymous_id "
            "where r.user_id is null"
        )
        layers = discover_models()
        by_user = [f"marts/{name}.sql" for name in MARTS_BY_USER]
        db.execute("create schema _incremental.marts")
        db.execute("use _incremental")
        try:
            for relpath in layers["staging"] + by_user:
                db.build_model(relpath, params)
        finally:
            db.execute(f'use "{main}"')
        summary.seconds["staging"] = round(time.perf_counter() - started, 3)
        with db.transaction():
            db.materialize("staging.stg_identity", identity)
            summary.tables["staging.stg_identity"] = int(db.scalar("select count(*) from staging.stg_identity"))
            swapped = [("staging", t) for t in STAGING_BY_USER] + [("marts", t) for t in MARTS_BY_USER]
            for layer, table in swapped:
                db.execute(
                    f"delete from {layer}.{table} where user_key in (select user_key from _build_affected)"  # noqa: S608
                )
                db.execute(f"insert into {layer}.{table} select * from _incremental.{layer}.{table}")  # noqa: S608
            for table in MARTS_BY_USER:
                summary.tables[f"marts.{table}"] = int(db.scalar(f"select count(*) from marts.{table}"))  # noqa: S608
            _build_layer(db, "paths", layers["paths"], params, summary)
            _build_layer(db, "marts", [m for m in layers["marts"] if m not in by_user], params, summary)
    finally:
        db.execute("detach _incremental")
        db.execute("drop table if exists _build_affected")
        db.execute("drop table if exists _build_identity")
    return n_affected
