"""Ingest: load source files into ``raw.events``, with quarantine and a load manifest.

Reads CSV/TSV, Parquet and NDJSON files (plain or .gz) through DuckDB's readers; writes
``raw.events``, ``raw.quarantine`` and ``raw.manifest``. One file is one transaction: it is loaded
whole (good rows in ``raw.events``, bad rows in ``raw.quarantine``, one manifest row) or not at all.
For every loaded file ``n_read = n_loaded + n_duplicate + n_quarantined``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.db import Database, DatabaseError, load_sql
from pipeline.ingest.contract import contract_failures
from pipeline.schema import CANONICAL_COLUMNS, IDENTITY_COLUMNS, REQUIRED_COLUMNS

Kind = Literal["csv", "tsv", "parquet", "ndjson"]
EpochUnit = Literal["auto", "s", "ms", "us", "ns"]
FORMATS = ("auto", "canonical")

_SUFFIXES: dict[str, Kind] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "ndjson",
}

# How each kind of file becomes the scratch table `_ingest_src` (the path is a bound parameter).
_READ_SQL: dict[Kind, str] = {
    "csv": (
        "select row_number() over () as _journeys_row, * "
        "from read_csv($path, all_varchar = true, header = true, store_rejects = true, "
        "rejects_table = 'src_rejects', rejects_scan = 'src_reject_scans')"
    ),
    "tsv": (
        "select row_number() over () as _journeys_row, * "
        "from read_csv($path, all_varchar = true, header = true, delim = '\t', store_rejects = true, "
        "rejects_table = 'src_rejects', rejects_scan = 'src_reject_scans')"
    ),
    "parquet": (
        "select file_row_number + 1 as _journeys_row, * exclude (file_row_number) "
        "from read_parquet($path, file_row_number = true)"
    ),
    # NDJSON is read as lines so that one malformed line is quarantined instead of failing the file;
    # the line number is the physical line (blank lines are counted but are not records).
    "ndjson": (
        "select _journeys_row, line, "
        "case when json_valid(line) then (case when json_type(line) = 'OBJECT' then line end) end as obj "
        "from (select row_number() over () as _journeys_row, line "
        "from read_csv($path, columns = {'line': 'VARCHAR'}, header = false, delim = '\x01', "
        "quote = '', escape = '', auto_detect = false, store_rejects = true, "
        "rejects_table = 'src_rejects', rejects_scan = 'src_reject_scans')"
        ") where line is not null and trim(line) <> ''"
    ),
}

# Per kind: a canonical column read from the source column named by a bound parameter.
_FIELD_SQL = {
    "struct": "cast(s[${param}] as varchar)",
    "json": "json_extract_string(s.obj, ${param})",
}
_ORIGINAL_SQL = {
    "struct": "cast(json_merge_patch(to_json(s), '{\"_journeys_row\": null}') as varchar)",
    "json": "s.line",
}
_PROPERTIES_SQL = {"struct": "json_merge_patch(to_json(s), $drop)", "json": "json_merge_patch(s.obj, $drop)"}


_SCRATCH = ("_ingest_good", "_ingest_bad", "_ingest_typed", "_ingest_src")


class FileRejected(Exception):
    """A file that cannot be loaded at all; the message names the file and the problem."""


@dataclass
class FileResult:
    path: str
    status: Literal["loaded", "already_loaded", "rejected"]
    format: str = ""
    n_read: int = 0
    n_loaded: int = 0
    n_duplicate: int = 0
    n_quarantined: int = 0
    seconds: float = 0.0
    file_id: int | None = None
    message: str = ""
    epoch_units: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def parse_column_map(text: str | None) -> dict[str, str]:
    """``"ts=timestamp,event_name=event"`` -> {canonical: source}; canonical names are checked."""
    mapping: dict[str, str] = {}
    if not text:
        return mapping
    for part in text.split(","):
        if not part.strip():
            continue
        canonical, sep, source = part.partition("=")
        canonical, source = canonical.strip(), source.strip()
        if not sep or not canonical or not source:
            raise ValueError(f"--map entry {part.strip()!r} must look like canonical=source_column")
        if canonical not in CANONICAL_COLUMNS:
            import difflib

            close = difflib.get_close_matches(canonical, list(CANONICAL_COLUMNS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ValueError(f"--map: unknown canonical column {canonical!r}{hint}")
        mapping[canonical] = source
    return mapping


def file_kind(path: Path) -> Kind:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _SUFFIXES:
        return _SUFFIXES[suffixes[-1]]
    raise FileRejected(
        f"{path}: unknown file type (expected .csv, .tsv, .parquet, .ndjson/.jsonl/.json, optionally .gz)"
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ensure_raw_tables(db: Database) -> None:
    columns = ", ".join(f"{name} {kind}" for name, kind in CANONICAL_COLUMNS.items())
    db.execute(f"create table if not exists raw.events ({columns}, file_id bigint, row_number bigint)")
    db.execute(
        "create table if not exists raw.quarantine (file_id bigint, path varchar, row_number bigint, "
        "line_number bigint, field varchar, reason varchar, original_text varchar)"
    )
    db.execute(
        "create table if not exists raw.manifest (file_id bigint, path varchar, content_sha256 varchar, "
        "format varchar, n_read bigint, n_loaded bigint, n_duplicate bigint, n_quarantined bigint, "
        "loaded_at timestamp)"
    )


def ingest_files(
    db: Database,
    paths: Iterable[str | Path],
    *,
    fmt: str = "auto",
    column_map: Mapping[str, str] | None = None,
    epoch_unit: EpochUnit = "auto",
    future_tolerance_hours: float = 24.0,
    now: dt.datetime | None = None,
) -> list[FileResult]:
    """Load each file in its own transaction; a rejected file does not stop the others."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    ensure_raw_tables(db)
    loaded_at = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    future_limit = loaded_at + dt.timedelta(hours=future_tolerance_hours)
    results = []
    for raw_path in paths:
        path = Path(raw_path)
        started = time.perf_counter()
        try:
            result = _ingest_one(db, path, dict(column_map or {}), epoch_unit, loaded_at, future_limit)
        except FileRejected as exc:
            result = FileResult(path=str(path), status="rejected", message=str(exc))
        result.seconds = round(time.perf_counter() - started, 3)
        results.append(result)
    return results


def _ingest_one(
    db: Database,
    path: Path,
    column_map: dict[str, str],
    epoch_unit: str,
    loaded_at: dt.datetime,
    future_limit: dt.datetime,
) -> FileResult:
    if not path.exists():
        raise FileRejected(f"{path}: no such file")
    if not path.is_file():
        raise FileRejected(f"{path}: not a regular file")
    kind = file_kind(path)
    if path.stat().st_size == 0:
        raise FileRejected(f"{path}: empty file")
    digest = sha256_file(path)
    previous = db.scalar("select file_id from raw.manifest where content_sha256 = $sha", {"sha": digest})
    if previous is not None:
        return FileResult(path=str(path), status="already_loaded", format=kind, file_id=int(previous),
                          message=f"same content as file_id {previous}; nothing added")
    try:
        with db.transaction():
            result = _load(db, path, kind, digest, column_map, epoch_unit, loaded_at, future_limit)
            # Scratch tables go in the same transaction, so a kill never leaves them behind.
            for name in _SCRATCH:
                db.execute(f"drop table if exists {name}")
    except DatabaseError as exc:
        raise FileRejected(f"{path}: cannot be read as {kind}: {exc}") from None
    finally:
        for name in ("src_rejects", "src_reject_scans"):  # DuckDB makes these as temp tables
            db.execute(f"drop table if exists {name}")
    return result


def _source_names(db: Database, kind: Kind) -> set[str]:
    if kind == "ndjson":
        return set()
    return set(db.query("describe _ingest_src")["column_name"].to_list())


def _json_path(name: str) -> str:
    if name.startswith("$"):
        return name
    return '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _load(
    db: Database,
    path: Path,
    kind: Kind,
    digest: str,
    column_map: dict[str, str],
    epoch_unit: str,
    loaded_at: dt.datetime,
    future_limit: dt.datetime,
) -> FileResult:
    db.materialize("_ingest_src", _READ_SQL[kind], {"path": str(path)})
    style = "json" if kind == "ndjson" else "struct"
    sources = {name: column_map.get(name, name) for name in CANONICAL_COLUMNS if name != "properties"}
    params: dict[str, object] = {}
    if style == "struct":
        present = _source_names(db, kind) - {"_journeys_row"}
        if not present:
            raise FileRejected(f"{path}: no columns found")
        _check_required(path, present, sources)
        available = {name for name, source in sources.items() if source in present}
        for name in available:
            params[f"c_{name}"] = sources[name]
        drop = {source: None for name, source in sources.items() if name in available}
        drop["_journeys_row"] = None
    else:
        _check_json(db, path)
        available = set(sources)
        for name in available:
            params[f"c_{name}"] = _json_path(sources[name])
        drop = {source: None for source in sources.values() if not source.startswith("$")}
    params["drop"] = json.dumps(drop)
    selects = [
        (_FIELD_SQL[style].format(param=f"c_{name}") if name in available else "cast(null as varchar)")
        + f" as {name}"
        for name in sources
    ]
    where = "where s.obj is not null" if style == "json" else ""
    # Only our own templates and canonical names are joined here; source column names are bound values.
    fields_sql = (
        "select s._journeys_row as row_number, "  # noqa: S608
        + ", ".join(selects)
        + f", {_PROPERTIES_SQL[style]} as properties from _ingest_src s {where}"
    )
    typed_sql = load_sql("ingest/typed_events.sql")
    head = "with fields as ("
    if head not in typed_sql:  # pragma: no cover - guards an edit of the SQL file
        raise RuntimeError(f"sql/ingest/typed_events.sql must start its CTEs with {head!r}")
    typed_sql = typed_sql.replace(head, f"with src_fields as ({fields_sql}),\nfields as (", 1)
    db.materialize("_ingest_typed", typed_sql, {**params, "epoch_unit": epoch_unit})

    checked = db.query(
        "select row_number, event_id, user_id, anonymous_id, ts, event_name, currency, country "
        "from _ingest_typed where reason is null"
    )
    failures = contract_failures(checked, future_limit)
    db.register("contract_failures", failures)
    try:
        db.materialize(
            "_ingest_bad",
            "select row_number, failed_field as field, reason from _ingest_typed where reason is not null "
            "union all select row_number, field, reason from contract_failures",
        )
    finally:
        db.unregister("contract_failures")

    file_id = int(db.scalar("select coalesce(max(file_id), 0) + 1 from raw.manifest"))
    ids = {"file_id": file_id, "path": str(path)}
    db.execute(
        "insert into raw.quarantine select $file_id, $path, b.row_number, null, b.field, b.reason, "  # noqa: S608
        + _ORIGINAL_SQL[style]
        + " from _ingest_bad b join _ingest_src s on s._journeys_row = b.row_number",
        ids,
    )
    n_malformed = 0
    if style == "json":
        n_malformed += _quarantine_invalid_json(db, ids)
    if kind in ("csv", "tsv", "ndjson"):
        n_malformed += _quarantine_rejects(db, ids)

    columns = ", ".join(CANONICAL_COLUMNS)
    db.materialize(
        "_ingest_good",
        "select * from _ingest_typed t "
        "where not exists (select 1 from _ingest_bad b where b.row_number = t.row_number) "
        "qualify row_number() over (partition by event_id order by row_number) = 1",
    )
    n_parsed = int(db.scalar("select count(*) from _ingest_typed"))
    n_good_rows = n_parsed - int(db.scalar("select count(*) from _ingest_bad"))
    db.execute(
        f"insert into raw.events select {columns}, $file_id, row_number from _ingest_good g "  # noqa: S608
        "where not exists (select 1 from raw.events e where e.event_id = g.event_id)",
        ids,
    )
    n_loaded = int(db.scalar("select count(*) from raw.events where file_id = $file_id", ids))
    n_quarantined = int(db.scalar("select count(*) from raw.quarantine where file_id = $file_id", ids))
    n_read = n_parsed + n_malformed
    units = sorted(
        db.query("select distinct ts_epoch_unit as u from _ingest_typed where ts_epoch_unit is not null")["u"]
    )
    result = FileResult(
        path=str(path), status="loaded", format=kind, n_read=n_read, n_loaded=n_loaded,
        n_duplicate=n_good_rows - n_loaded, n_quarantined=n_quarantined, file_id=file_id, epoch_units=units,
    )
    db.execute(
        "insert into raw.manifest values ($file_id, $path, $sha, $format, $n_read, $n_loaded, $n_duplicate, "
        "$n_quarantined, $loaded_at)",
        {**ids, "sha": digest, "format": kind, "n_read": n_read, "n_loaded": n_loaded,
         "n_duplicate": result.n_duplicate, "n_quarantined": n_quarantined, "loaded_at": loaded_at},
    )
    if n_read != n_loaded + result.n_duplicate + n_quarantined:  # pragma: no cover - invariant guard
        raise RuntimeError(f"{path}: row accounting broken ({result})")
    return result


def _check_required(path: Path, present: set[str], sources: dict[str, str]) -> None:
    for name in REQUIRED_COLUMNS:
        if sources[name] not in present:
            raise FileRejected(
                f"{path}: missing required column '{sources[name]}' for {name} "
                f"(found: {', '.join(sorted(present)[:20])}; map one with --map {name}=COLUMN)"
            )
    if not any(sources[name] in present for name in IDENTITY_COLUMNS):
        raise FileRejected(
            f"{path}: no identity column: need {' or '.join(sources[n] for n in IDENTITY_COLUMNS)} "
            f"(map one with --map user_id=COLUMN)"
        )


def _check_json(db: Database, path: Path) -> None:
    n_objects = int(db.scalar("select count(*) from _ingest_src where obj is not null"))
    n_lines = int(db.scalar("select count(*) from _ingest_src"))
    if n_lines and not n_objects:
        raise FileRejected(f"{path}: not newline-delimited JSON (no line is a JSON object)")


def _quarantine_invalid_json(db: Database, ids: Mapping[str, object]) -> int:
    db.execute(
        "insert into raw.quarantine select $file_id, $path, null, _journeys_row, '<line>', 'malformed_json', "
        "line from _ingest_src where obj is null",
        ids,
    )
    return int(db.scalar("select count(*) from _ingest_src where obj is null"))


def _quarantine_rejects(db: Database, ids: Mapping[str, object]) -> int:
    if not _temp_exists(db, "src_rejects"):
        return 0
    db.execute(
        "insert into raw.quarantine select $file_id, $path, null, line, '<row>', 'malformed_row', "
        "any_value(csv_line) from src_rejects group by line",
        ids,
    )
    return int(db.scalar("select count(distinct line) from src_rejects"))


def _temp_exists(db: Database, name: str) -> bool:
    return bool(db.scalar("select count(*) from duckdb_tables() where temporary and table_name = $n", {"n": name}))


def summary_rows(results: Sequence[FileResult]) -> list[dict[str, object]]:
    return [r.as_dict() for r in results]
