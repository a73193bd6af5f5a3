"""Ingest: load source files into ``raw.events``, with quarantine and a load manifest.

Reads CSV/TSV, Parquet and NDJSON files (plain or .gz) through DuckDB's readers, in the canonical
columns (with ``--map``) or in a source format (GA4 BigQuery export, Segment, Snowplow, REES46; see
``pipeline/ingest/adapters.py`` and ``docs/adapters.md``), named or detected; writes ``raw.events``,
``raw.quarantine``, ``raw.manifest`` and side tables of formats (``raw.ga4_items``). One file is one
transaction: it is loaded whole (good rows in ``raw.events``, bad rows in ``raw.quarantine``, side
rows, a GA4 day's replacement, one manifest row) or not at all. For every loaded file
``n_read = n_loaded + n_duplicate + n_quarantined + n_forgotten`` (``n_forgotten``: rows of users
erased with ``journeys forget``, dropped before storage; see ``pipeline/privacy.py``).

PII never reaches the database file: e-mails, sensitive query parameters and IP addresses are
redacted in SQL before storage (also in the quarantined original text), user ids are pseudonymised
when ``privacy.pseudonymise_user_ids`` is on, and the scratch tables holding the file's raw text are
temporary tables (memory, not the database file).
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

from pipeline import privacy
from pipeline.db import Database, DatabaseError, is_database_error, load_sql, sql_params
from pipeline.ingest import adapters, readers
from pipeline.ingest.adapters import FORMATS, Adapter, NotThisFormat, Sniffed
from pipeline.ingest.contract import contract_failures
from pipeline.ingest.readers import Kind, UnknownFileType
from pipeline.schema import CANONICAL_COLUMNS, IDENTITY_COLUMNS, REQUIRED_COLUMNS

EpochUnit = Literal["auto", "s", "ms", "us", "ns"]
__all__ = ["FORMATS", "FileRejected", "FileResult", "IngestAborted", "Kind", "ensure_raw_tables", "file_kind",
           "ingest_files", "parse_column_map", "summary_rows"]

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
_PROPERTIES_VALUE_SQL = {"struct": "cast(s[$c_properties] as varchar)", "json": "json_extract(s.obj, $c_properties)"}
# Columns of src_fields besides the canonical ones (sql/ingest/typed_events.sql): null for --map.
_EXTRA_FIELDS = ", cast(null as varchar) as ts_unit, cast(null as varchar) as dedupe_at"

# File kinds the canonical mapping reads in place instead of copying into _ingest_src: a typed,
# columnar file is cheap to read again, and only its quarantined rows are copied (_quarantine_bad).
# Text files keep the copy: DuckDB's CSV reader records its rejects while reading, once.
_READ_IN_PLACE = ("parquet",)

# Scratch tables of one file: temporary (memory, spilled to the temp folder), never in the database
# file, so a file's raw text (ids, e-mails) is not written there even for a moment.
_SCRATCH = ("_ingest_bad", "_ingest_typed", "_ingest_days", "_ingest_src", "_ingest_forgotten", "_ingest_stored")

# Side tables of formats (pipeline/ingest/adapters.py), in the column order of their SQL files.
_SIDE_TABLE_DDL = {
    "raw.ga4_items": (
        "file_id bigint, event_id varchar, item_index integer, item_id varchar, item_name varchar, "
        "item_brand varchar, item_variant varchar, item_category varchar, item_category2 varchar, "
        "item_category3 varchar, item_category4 varchar, item_category5 varchar, price decimal(18,2), "
        "quantity bigint, item_revenue decimal(18,2), coupon varchar, affiliation varchar, "
        "item_list_name varchar, promotion_name varchar"
    ),
}


class FileRejected(Exception):
    """A file that cannot be loaded at all; the message names the file and the problem."""


class IngestAborted(DatabaseError):
    """The database cannot be written (disk full, file size limit): the call stops at that file.

    The file's transaction was rolled back; files loaded before it stay loaded, so running the same
    call again after freeing space loads the rest (loaded files are skipped by content hash).
    """


# How a failed write to the database file or its WAL reads in DuckDB's errors.
_WRITE_FAILURES = ("no space left on device", "file too large", "disk quota exceeded", "could not write file",
                   "failed to commit", "could not truncate file", "could not fsync")


def _write_failure(exc: BaseException) -> bool:
    return any(marker in str(exc).lower() for marker in _WRITE_FAILURES)


@dataclass
class FileResult:
    path: str
    status: Literal["loaded", "already_loaded", "rejected"]
    format: str = ""  # the format it was read as: canonical, ga4, segment, snowplow, rees46
    n_read: int = 0
    n_loaded: int = 0
    n_duplicate: int = 0
    n_quarantined: int = 0
    seconds: float = 0.0
    file_id: int | None = None
    message: str = ""  # how the format was chosen (detected from which columns/keys), replacements
    epoch_units: list[str] = field(default_factory=list)
    kind: str = ""  # csv, tsv, parquet, ndjson
    n_replaced: int = 0  # events of earlier loads this file replaced (a re-exported GA4 day)
    n_forgotten: int = 0  # rows of forgotten users (journeys forget) dropped before storage

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
    try:
        return readers.file_kind(path)
    except UnknownFileType as exc:
        raise FileRejected(str(exc)) from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Byte-order marks of encodings DuckDB does not read: a clear rejection instead of garbled columns.
_FOREIGN_BOMS = {b"\xff\xfe\x00\x00": "UTF-32", b"\x00\x00\xfe\xff": "UTF-32", b"\xff\xfe": "UTF-16",
                 b"\xfe\xff": "UTF-16"}


def _read_checked(path: Path, kind: Kind) -> str:
    """The file's SHA-256; on the way, a .gz file must start a valid gzip stream that holds
    something, and a text file must not start with a UTF-16/32 byte-order mark (DuckDB would read
    it as garbled columns). A gzip cut short is caught by DuckDB's reader ("Unexpected end of GZIP
    stream"): the file is rejected, nothing of it loaded."""
    import gzip
    import zlib

    digest = sha256_file(path)
    if path.name.lower().endswith(".gz"):
        try:
            with gzip.open(path, "rb") as handle:
                head = handle.read(4)
        except (OSError, EOFError, zlib.error) as exc:
            raise FileRejected(f"{path}: not a valid gzip file ({exc}); nothing loaded") from None
        if not head:
            raise FileRejected(f"{path}: empty file (after decompression)")
    else:
        with path.open("rb") as handle:
            head = handle.read(4)
    if kind != "parquet":
        for bom, name in _FOREIGN_BOMS.items():
            if head.startswith(bom):
                raise FileRejected(f"{path}: text encoded as {name}; save it as UTF-8")
    return digest


def _explain(path: Path, kind: Kind, exc: BaseException) -> str:
    """One line for a file DuckDB could not read, with the likely cause where we can tell it."""
    text = str(exc)
    first = text.splitlines()[0] if text else type(exc).__name__
    if kind in ("csv", "tsv") and "sniffing" in text:
        sample = _head(path, 1 << 20)
        if b"\r\n" in sample and b"\n" in sample.replace(b"\r\n", b""):
            return f"{path}: mixed line endings (CRLF and LF) confuse the CSV reader; convert them (dos2unix)"
    if "maximum line size" in text.lower() or ("CSV Error on Line" in text and _has_long_line(path)):
        return f"{path}: a line is longer than {readers.MAX_LINE_BYTES // (1 << 20)} MB; nothing loaded ({first})"
    return f"{path}: cannot be read as {kind}: {first}"


def _head(path: Path, size: int) -> bytes:
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        return handle.read(size)


def _has_long_line(path: Path) -> bool:
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        return any(len(line) > readers.MAX_LINE_BYTES for line in handle)


def _shown(name: str) -> str:
    """A column name as it can be shown in a one-line message (control characters escaped)."""
    return name if name.isprintable() else repr(name)[1:-1]


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
        "loaded_at timestamp, kind varchar, n_replaced bigint)"
    )
    if not db.read_only:  # databases made before formats had adapters / before forget
        db.execute("alter table raw.manifest add column if not exists kind varchar")
        db.execute("alter table raw.manifest add column if not exists n_replaced bigint")
        db.execute("alter table raw.manifest add column if not exists n_forgotten bigint default 0")
    for table, ddl in _SIDE_TABLE_DDL.items():
        db.execute(f"create table if not exists {table} ({ddl})")
    privacy.ensure_tables(db)


def ingest_files(
    db: Database,
    paths: Iterable[str | Path],
    *,
    fmt: str = "auto",
    column_map: Mapping[str, str] | None = None,
    epoch_unit: EpochUnit = "auto",
    future_tolerance_hours: float = 24.0,
    now: dt.datetime | None = None,
    privacy_settings: Mapping[str, object] | None = None,
    pseudonym_key: privacy.PseudonymKey | None = None,
) -> list[FileResult]:
    """Load each file in its own transaction; a rejected file does not stop the others.

    ``fmt`` is one of ``FORMATS``: ``auto`` detects each file's format from its columns or keys
    (``canonical`` when none matches, or when ``column_map`` is given); ``column_map`` applies to the
    canonical format only. ``privacy_settings`` is the config's ``[privacy]`` section (None: the
    database's own state decides: a pseudonymised database stays so); ``pseudonym_key`` defaults to
    ``JOURNEYS_PSEUDONYM_KEY``. A privacy rule that cannot be met raises ``privacy.PrivacyError``
    before any file is read.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    if column_map and fmt not in ("auto", "canonical"):
        raise ValueError(f"--map applies to --format canonical, not {fmt}")
    with db.transaction():
        ensure_raw_tables(db)
        key = pseudonym_key if pseudonym_key is not None else privacy.key_from_env()
        rules = privacy.resolve_ingest(db, privacy_settings, key)
    loaded_at = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    future_limit = loaded_at + dt.timedelta(hours=future_tolerance_hours)
    results = []
    paths = list(paths)
    for index, raw_path in enumerate(paths):
        path = Path(raw_path)
        started = time.perf_counter()
        try:
            result = _ingest_one(db, path, fmt, dict(column_map or {}), epoch_unit, loaded_at, future_limit, rules)
        except FileRejected as exc:  # the message may quote the file (a header): PII redacted like the data
            result = FileResult(path=str(path), status="rejected", message=privacy.redact_text(str(exc)))
        except IngestAborted as exc:
            n_loaded = sum(r.status == "loaded" for r in results)
            raise IngestAborted(
                f"{exc}; {n_loaded} file(s) of this call loaded before it are kept, {len(paths) - index - 1} "
                "not tried; free space and run again (loaded files are skipped)"
            ) from None
        result.seconds = round(time.perf_counter() - started, 3)
        results.append(result)
    return results


def _ingest_one(
    db: Database,
    path: Path,
    fmt: str,
    column_map: dict[str, str],
    epoch_unit: str,
    loaded_at: dt.datetime,
    future_limit: dt.datetime,
    rules: privacy.IngestPrivacy,
) -> FileResult:
    if not path.exists():
        raise FileRejected(f"{path}: no such file")
    if not path.is_file():
        raise FileRejected(f"{path}: not a regular file")
    kind = file_kind(path)
    if path.stat().st_size == 0:
        raise FileRejected(f"{path}: empty file")
    digest = _read_checked(path, kind)
    previous = db.query(
        "select file_id, format from raw.manifest where content_sha256 = $sha order by file_id limit 1",
        {"sha": digest},
    )
    if previous.height:
        file_id, previous_format = previous.row(0)
        return FileResult(path=str(path), status="already_loaded", format=previous_format or "", kind=kind,
                          file_id=int(file_id), message=f"same content as file_id {file_id}; nothing added")
    try:
        try:
            adapter, sniffed, how = adapters.resolve(db, path, kind, fmt, has_column_map=bool(column_map))
        except NotThisFormat as exc:
            raise FileRejected(str(exc)) from None
        with db.transaction():
            result = _load(db, path, kind, adapter, sniffed, digest, column_map, epoch_unit, loaded_at,
                           future_limit, rules)
            result.message = how + (f"; {result.message}" if result.message else "")
            # Scratch tables go in the same transaction, so a kill never leaves them behind.
            for name in _SCRATCH:
                db.execute(f"drop table if exists {name}")
    except Exception as exc:
        if not is_database_error(exc):
            raise
        if _write_failure(exc):  # e.g. the commit could not write the WAL: disk full
            raise IngestAborted(f"{path}: not loaded: cannot write the database {db.path} ({exc})") from None
        raise FileRejected(_explain(path, kind, exc)) from None
    finally:
        for name in ("src_rejects", "src_reject_scans"):  # DuckDB makes these as temp tables
            db.execute(f"drop table if exists {name}")
    return result


def _source_names(db: Database, kind: Kind, path: Path) -> set[str]:
    if kind == "ndjson":
        return set()
    if kind in _READ_IN_PLACE:  # no _ingest_src (_canonical_fields)
        return set(db.query(f"describe {readers.READ_SQL[kind]}", {"path": str(path)})["column_name"].to_list())
    return set(db.query("describe _ingest_src")["column_name"].to_list())


def _json_path(name: str) -> str:
    if name.startswith("$"):
        return name
    return '$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _canonical_fields(
    db: Database, path: Path, kind: Kind, column_map: dict[str, str]
) -> tuple[str, dict[str, object], str]:
    """Read a canonical file (into _ingest_src, or in place: _READ_IN_PLACE); return the src_fields
    select, its params, its style. Copying every row of a Parquet file took 3.7 s of the 10M
    ingest's 41 s, beside 19 s for the typed-events query."""
    in_place = kind in _READ_IN_PLACE
    if in_place:
        source = f"({readers.READ_SQL[kind]})"
    else:
        source = "_ingest_src"
        _scratch(db, "_ingest_src", readers.READ_SQL[kind], {"path": str(path)})
    style = "json" if kind == "ndjson" else "struct"
    sources = {name: column_map.get(name, name) for name in CANONICAL_COLUMNS if name != "properties"}
    params: dict[str, object] = {"path": str(path)} if in_place else {}
    present: set[str] = set()
    if style == "struct":
        present = _source_names(db, kind, path) - {"_journeys_row"}
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
    # A `properties` column (JSON object text, or an object in NDJSON) is the base of properties;
    # unmapped columns are merged into it, so its keys are not nested one level down.
    properties_source = column_map.get("properties", "properties")
    properties_sql = _PROPERTIES_SQL[style]
    if style == "struct" and not present - set(drop) - {properties_source}:
        properties_sql = "'{}'"  # no unmapped column: skip turning every row into JSON
    if style == "json" or properties_source in present:
        params["c_properties"] = properties_source if style == "struct" else _json_path(properties_source)
        if style == "struct" or not properties_source.startswith("$"):
            drop[properties_source] = None
        given = _PROPERTIES_VALUE_SQL[style]
        # (a row without a value keeps the base as it is: merging '{}' into it changes nothing, and
        # skipping the merge spares a JSON parse and print per row: most rows have no properties)
        properties_sql = (
            f"case when {given} is null then {properties_sql} else json_merge_patch({properties_sql}, coalesce("
            f"case when json_valid({given}) then (case when json_type({given}) = 'OBJECT' then cast({given} as json) "
            f"end) end, json_object('properties', {given}))) end"
        )
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
        + f", {properties_sql} as properties{_EXTRA_FIELDS} from {source} s {where}"
    )
    return fields_sql, params, style


def _adapter_fields(
    db: Database, path: Path, kind: Kind, adapter: Adapter, sniffed: Sniffed
) -> tuple[str, dict[str, object], str]:
    """Read a file of a source format into _ingest_src (json style); return its adapter's select."""
    _scratch(db, "_ingest_src", adapters.read_sql(adapter, kind, sniffed), {"path": str(path)})
    if kind == "ndjson":
        _check_json(db, path)
    return adapter.fields_sql(), adapter.params(path), "json"


def _scratch(db: Database, name: str, sql: str, params: Mapping[str, object] | None = None) -> None:
    """A temporary scratch table (``name`` is one of ``_SCRATCH``; ``sql`` is our own select)."""
    if name not in _SCRATCH:  # pragma: no cover - guards an edit of this module
        raise ValueError(f"{name} is not a scratch table")
    db.execute(f"create or replace temp table {name} as\n{sql}", params)


# Rows of forgotten ids (pipeline/privacy.py): the user's rows, and rows without a user id of an
# anonymous id that was forgotten or that this very file links to a forgotten user.
_FORGOTTEN_SQL = """
with forgotten as (
    select id_hash from raw.forgotten
),

linked as (
    select distinct anonymous_id from _ingest_typed
    where anonymous_id is not null and user_id_hmac in (select id_hash from forgotten)
)

select row_number, user_id_hmac, anonymous_id, anonymous_id_hmac from _ingest_typed
where user_id_hmac in (select id_hash from forgotten)
    or (user_id is null and (
        anonymous_id_hmac in (select id_hash from forgotten)
        or anonymous_id in (select anonymous_id from linked)
    ))
"""
_NO_ROWS_SQL = (
    "select cast(null as bigint) as row_number, cast(null as varchar) as user_id_hmac, "
    "cast(null as varchar) as anonymous_id, cast(null as varchar) as anonymous_id_hmac where false"
)
_NOT_FORGOTTEN = "not exists (select 1 from _ingest_forgotten f where f.row_number = t.row_number)"


def _load(
    db: Database,
    path: Path,
    kind: Kind,
    adapter: Adapter,
    sniffed: Sniffed,
    digest: str,
    column_map: dict[str, str],
    epoch_unit: str,
    loaded_at: dt.datetime,
    future_limit: dt.datetime,
    rules: privacy.IngestPrivacy,
) -> FileResult:
    if adapter.sql is None:
        fields_sql, params, style = _canonical_fields(db, path, kind, column_map)
    else:
        fields_sql, params, style = _adapter_fields(db, path, kind, adapter, sniffed)
    typed_sql = load_sql("ingest/typed_events.sql")
    head = "with fields as ("
    if head not in typed_sql:  # pragma: no cover - guards an edit of the SQL file
        raise RuntimeError(f"sql/ingest/typed_events.sql must start its CTEs with {head!r}")
    typed_sql = typed_sql.replace(head, f"with src_fields as (\n{fields_sql}\n),\nfields as (", 1)
    params = {**params, "epoch_unit": epoch_unit, **rules.sql_params()}
    missing = sorted(sql_params(typed_sql) - params.keys())
    if missing:  # pragma: no cover - guards an edit of an adapter SQL file
        raise RuntimeError(f"{adapter.sql}: no value for parameter(s) {', '.join(missing)}")
    db.execute(load_sql("ingest/macros.sql"))  # the trimmed and redact_* macros typed_events.sql calls
    _scratch(db, "_ingest_typed", typed_sql, params)
    _scratch(db, "_ingest_forgotten", _FORGOTTEN_SQL if rules.has_forgotten else _NO_ROWS_SQL)

    checked = db.query(
        "select row_number, event_id, user_id, anonymous_id, ts, event_name, currency, country "  # noqa: S608
        f"from _ingest_typed t where reason is null and {_NOT_FORGOTTEN}"
    )
    failures = contract_failures(checked, future_limit)
    db.register("contract_failures", failures)
    try:
        _scratch(
            db,
            "_ingest_bad",
            "select row_number, failed_field as field, reason from _ingest_typed t "  # noqa: S608
            f"where reason is not null and {_NOT_FORGOTTEN} "
            "union all select row_number, field, reason from contract_failures",
        )
    finally:
        db.unregister("contract_failures")

    file_id = int(db.scalar("select coalesce(max(file_id), 0) + 1 from raw.manifest"))
    ids = {"file_id": file_id, "path": str(path)}
    n_bad = int(db.scalar("select count(*) from _ingest_bad"))
    if n_bad:
        _quarantine_bad(db, path, kind, style, rules, ids)
    n_malformed = n_malformed_forgotten = 0
    if style == "json":
        counted = _quarantine_invalid_json(db, ids, rules)
        n_malformed, n_malformed_forgotten = n_malformed + counted[0], n_malformed_forgotten + counted[1]
    if kind in ("csv", "tsv", "ndjson"):
        counted = _quarantine_rejects(db, ids, rules)
        n_malformed, n_malformed_forgotten = n_malformed + counted[0], n_malformed_forgotten + counted[1]

    n_parsed = int(db.scalar("select count(*) from _ingest_typed"))
    n_forgotten_rows = int(db.scalar("select count(*) from _ingest_forgotten"))
    n_good_rows = n_parsed - n_bad - n_forgotten_rows
    n_replaced, days = _replace_days(db, adapter) if adapter.replaces_days else (0, [])
    columns = ", ".join(CANONICAL_COLUMNS)
    # The good rows go straight from _ingest_typed into raw.events (no copy between: each copy of a
    # wide table costs about a second per million rows). Of several rows with one event_id, the
    # earliest dedupe_at (e.g. Snowplow's collector_tstamp) is kept, then the first in the file;
    # the window only runs when the file repeats an event_id (most files do not).
    dedupe = (
        "qualify row_number() over (partition by event_id order by dedupe_at nulls last, row_number) = 1"
        if db.scalar("select count(*) <> count(distinct event_id) from _ingest_typed") else ""
    )
    # Event ids already stored, found in a statement of their own: a scan of raw.events probes a hash
    # table of this file's ids. Inside the insert, which writes raw.events, DuckDB built the hash
    # table of every stored id instead (10 s per file at 100M events against 1.5 s).
    _scratch(db, "_ingest_stored",
             "select e.event_id from raw.events as e semi join _ingest_typed as t on e.event_id = t.event_id")
    db.execute(
        f"insert into raw.events select {columns}, $file_id, row_number from ("  # noqa: S608
        "select * from _ingest_typed t "
        f"where not exists (select 1 from _ingest_bad b where b.row_number = t.row_number) and {_NOT_FORGOTTEN} "
        f"{dedupe}) g where not exists (select 1 from _ingest_stored as s where s.event_id = g.event_id)",
        ids,
    )
    for side in adapter.side_tables:
        db.execute(f"insert into {side.table} select * from (\n{load_sql(side.sql)}\n)", ids)  # noqa: S608
    if rules.has_forgotten:  # anonymous ids this file links to a forgotten user are forgotten too
        db.execute(
            "insert into raw.forgotten select distinct f.anonymous_id_hmac, 'anonymous', $at from _ingest_forgotten f "
            "where f.user_id_hmac in (select id_hash from raw.forgotten) and f.anonymous_id_hmac is not null "
            "and f.anonymous_id_hmac not in (select id_hash from raw.forgotten)",
            {"at": loaded_at},
        )
    n_loaded = int(db.scalar("select count(*) from raw.events where file_id = $file_id", ids))
    n_quarantined = int(db.scalar("select count(*) from raw.quarantine where file_id = $file_id", ids))
    n_read = n_parsed + n_malformed
    n_forgotten = n_forgotten_rows + n_malformed_forgotten
    units = sorted(
        db.query("select distinct ts_epoch_unit as u from _ingest_typed where ts_epoch_unit is not null")["u"]
    )
    message = ""
    if n_replaced:
        message = f"replaced {n_replaced} events of day(s) {', '.join(days)} loaded before"
    if n_forgotten:
        message += ("; " if message else "") + f"dropped {n_forgotten} row(s) of forgotten users"
    result = FileResult(
        path=str(path), status="loaded", format=adapter.name, kind=kind, n_read=n_read, n_loaded=n_loaded,
        n_duplicate=n_good_rows - n_loaded, n_quarantined=n_quarantined, file_id=file_id, epoch_units=units,
        n_replaced=n_replaced, message=message, n_forgotten=n_forgotten,
    )
    db.execute(
        "insert into raw.manifest (file_id, path, content_sha256, format, n_read, n_loaded, n_duplicate, "
        "n_quarantined, loaded_at, kind, n_replaced, n_forgotten) values ($file_id, $path, $sha, $format, "
        "$n_read, $n_loaded, $n_duplicate, $n_quarantined, $loaded_at, $kind, $n_replaced, $n_forgotten)",
        {**ids, "sha": digest, "format": adapter.name, "n_read": n_read, "n_loaded": n_loaded,
         "n_duplicate": result.n_duplicate, "n_quarantined": n_quarantined, "loaded_at": loaded_at,
         "kind": kind, "n_replaced": n_replaced, "n_forgotten": n_forgotten},
    )
    if n_read != n_loaded + result.n_duplicate + n_quarantined + n_forgotten:  # pragma: no cover - invariant guard
        raise RuntimeError(f"{path}: row accounting broken ({result})")
    return result


def _quarantine_bad(
    db: Database, path: Path, kind: Kind, style: str, rules: privacy.IngestPrivacy, ids: Mapping[str, object]
) -> None:
    """Quarantine the rows of _ingest_bad with their original text (raw ids replaced by their
    pseudonyms when pseudonymising, also in JSON-escaped form; PII redacted like stored columns)."""
    if not _temp_exists(db, "_ingest_src"):
        # read in place (_READ_IN_PLACE): copy the rows the quarantine quotes
        _scratch(db, "_ingest_src", f"select * from ({readers.READ_SQL[kind]}) "  # noqa: S608
                 "where _journeys_row in (select row_number from _ingest_bad)", {"path": str(path)})
    original = _ORIGINAL_SQL[style]
    if rules.pseudonymise:
        for name in ("user_id", "event_id", "session_id"):
            raw = f"t.{name}_source"
            as_json = f"to_json({raw})::varchar"
            escaped = f"substr({as_json}, 2, length({as_json}) - 2)"  # the id as it appears inside JSON text
            original = (
                f"case when {raw} is null then {original} else "
                f"replace(replace({original}, {raw}, t.{name}), {escaped}, t.{name}) end"
            )
    db.execute(
        "insert into raw.quarantine select $file_id, $path, b.row_number, null, b.field, b.reason, "  # noqa: S608
        + privacy.redact_sql(original)
        + " from _ingest_bad b join _ingest_src s on s._journeys_row = b.row_number "
        "join _ingest_typed t on t.row_number = b.row_number",
        {**ids, **rules.sql_params()},
    )


def _replace_days(db: Database, adapter: Adapter) -> tuple[int, list[str]]:
    """Delete the events (and side rows) of the days this file holds that earlier files of its format
    loaded: a re-exported GA4 day replaces the day instead of adding to it.

    A day is a (properties.event_date, properties.stream_id) pair of the file's parsed rows, so a
    re-load of one property's day leaves other properties' days alone. Returns (events deleted, days).
    """
    _scratch(
        db,
        "_ingest_days",
        "select distinct properties ->> 'event_date' as event_date, properties ->> 'stream_id' as stream_id "
        "from _ingest_typed where properties ->> 'event_date' is not null",
    )
    days = sorted({d for d in db.query("select event_date from _ingest_days")["event_date"].to_list() if d})
    replaced = (
        "select e.event_id from raw.events e "
        "join raw.manifest m on m.file_id = e.file_id and m.format = $format "
        "join _ingest_days d on d.event_date = e.properties ->> 'event_date' "
        "and d.stream_id is not distinct from e.properties ->> 'stream_id'"
    )
    bound = {"format": adapter.name}
    n_replaced = int(db.scalar(f"select count(*) from ({replaced})", bound))  # noqa: S608
    if n_replaced:
        for side in adapter.side_tables:
            db.execute(f"delete from {side.table} where event_id in ({replaced})", bound)  # noqa: S608
        db.execute(f"delete from raw.events where event_id in ({replaced})", bound)  # noqa: S608
    return n_replaced, days


def _check_required(path: Path, present: set[str], sources: dict[str, str]) -> None:
    for name in REQUIRED_COLUMNS:
        if sources[name] not in present:
            raise FileRejected(
                f"{path}: missing required column '{_shown(sources[name])}' for {name} "
                f"(found: {', '.join(_shown(c)[:40] for c in sorted(present)[:20])}; map one with --map {name}=COLUMN)"
            )
    if not any(sources[name] in present for name in IDENTITY_COLUMNS):
        raise FileRejected(
            f"{path}: no identity column: need {' or '.join(_shown(sources[n]) for n in IDENTITY_COLUMNS)} "
            f"(map one with --map user_id=COLUMN)"
        )


def _check_json(db: Database, path: Path) -> None:
    n_objects = int(db.scalar("select count(*) from _ingest_src where obj is not null"))
    n_lines = int(db.scalar("select count(*) from _ingest_src"))
    if n_lines and not n_objects:
        raise FileRejected(f"{path}: not newline-delimited JSON (no line is a JSON object)")


def _malformed_text(text: str, rules: privacy.IngestPrivacy) -> str:
    """The stored text of a row the parser could not split: redacted, or withheld when user ids are
    pseudonymised (nothing says which token of a broken line is the raw user id)."""
    return "cast(null as varchar)" if rules.pseudonymise else privacy.redact_sql(text)


def _forgotten_tokens(text: str, rules: privacy.IngestPrivacy) -> str:
    """SQL: does a broken line hold a forgotten id as one of its tokens (by keyed hash)?"""
    if not rules.has_forgotten:
        return "false"
    return (  # our own expression text only; the key material and the split pattern are bound
        f"list_has_any(list_transform(regexp_split_to_array({text}, $split), lambda tok: "  # noqa: S608
        f"{privacy.hmac_sql('tok')}), (select list(id_hash) from raw.forgotten))"
    )


def _quarantine_invalid_json(db: Database, ids: Mapping[str, object], rules: privacy.IngestPrivacy) -> tuple[int, int]:
    """Quarantine NDJSON lines that are not objects; return (lines, lines of forgotten ids dropped)."""
    lines = "select _journeys_row as line_no, line as text from _ingest_src where obj is null"
    return _quarantine_malformed(db, ids, rules, lines, "<line>", "malformed_json")


def _quarantine_rejects(db: Database, ids: Mapping[str, object], rules: privacy.IngestPrivacy) -> tuple[int, int]:
    """Quarantine records the CSV parser rejected; return (records, records of forgotten ids dropped)."""
    if not _temp_exists(db, "src_rejects"):
        return 0, 0
    rejects = ("select line as line_no, trim(any_value(csv_line), chr(10) || chr(13)) as text "
               "from src_rejects group by line")
    return _quarantine_malformed(db, ids, rules, rejects, "<row>", "malformed_row")


def _quarantine_malformed(
    db: Database, ids: Mapping[str, object], rules: privacy.IngestPrivacy, records: str, field: str, reason: str
) -> tuple[int, int]:
    """Quarantine ``records`` (our own select of line_no, text), redacted, except those naming a
    forgotten id; return (records, records of forgotten ids dropped)."""
    bound = {**ids, **rules.sql_params(), "split": privacy.TOKEN_SPLIT, "field": field, "reason": reason}
    forgotten = _forgotten_tokens("text", rules)
    db.execute(
        "insert into raw.quarantine select $file_id, $path, null, line_no, $field, $reason, "  # noqa: S608
        f"{_malformed_text('text', rules)} from ({records}) where not {forgotten}",
        bound,
    )
    n_records = int(db.scalar(f"select count(*) from ({records})"))  # noqa: S608
    n_forgotten = int(db.scalar(f"select count(*) from ({records}) where {forgotten}", bound))  # noqa: S608
    return n_records, n_forgotten


def _temp_exists(db: Database, name: str) -> bool:
    return bool(db.scalar("select count(*) from duckdb_tables() where temporary and table_name = $n", {"n": name}))


def summary_rows(results: Sequence[FileResult]) -> list[dict[str, object]]:
    return [r.as_dict() for r in results]
