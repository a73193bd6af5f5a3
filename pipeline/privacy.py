"""Privacy: PII redaction patterns, keyed-hash pseudonymisation of user ids, the right to erasure.

Reads the database, the environment variable ``JOURNEYS_PSEUDONYM_KEY`` and (for ``forget``) the
report and export folders it is pointed at; writes the database (``raw.forgotten``, ``raw.privacy``,
the rows it erases), rewrites the report and exports there, and replaces the database file by a
compacted copy so erased bytes do not survive in free blocks.

- **Redaction before storage** (``sql/ingest/typed_events.sql`` and the quarantine text): e-mail
  addresses (also ``%40``-encoded) become ``[email]``; sensitive query parameters (``email``,
  ``token``, ``password``, ``phone``, ...) become ``[redacted]``; IPv4 addresses keep three octets
  (``203.0.113.7`` -> ``203.0.113.0``); IPv6 addresses keep at most their first 48 bits
  (``2001:db8:85a3:8d3::7`` -> ``2001:db8:85a3::``). The patterns are bound as parameters
  (:func:`pii_params`), so the SQL files and this module share one definition. Every step maps its
  own output to itself, so loading redacted text again changes nothing.
- **Pseudonymisation** (``privacy.pseudonymise_user_ids = true``): ``user_id`` is stored as
  HMAC-SHA256(key, user_id) in hex, computed in SQL during ingest, so a raw id never reaches the
  database file. The key comes from ``JOURNEYS_PSEUDONYM_KEY`` (at least 16 characters) and never
  enters the database; ``raw.privacy`` keeps a check value (an HMAC of a fixed text) so a different
  key is refused instead of silently splitting every user in two. Once a database is pseudonymised
  it stays so, whatever a later config says.
- **Forget** (:func:`forget`, ``journeys forget USER_ID...``): erases users and the anonymous ids
  stitched to them (the ``stg_identity`` rule) from every table, records keyed hashes of the ids in
  ``raw.forgotten`` so ingest drops their rows when old files are loaded again (counted in the
  manifest as ``n_forgotten``), leaves a mark in ``staging.build_log`` that makes the next build a
  full one, rebuilds, rewrites the report and exports, and compacts the database file.
- **Output paths** (:func:`check_output_path`): the rule for every path the product writes to.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.db import Database, load_sql

KEY_ENV = "JOURNEYS_PSEUDONYM_KEY"
MIN_KEY_LENGTH = 16
_KEY_CHECK_TEXT = b"journeys:pseudonym-key-check:v1"


class PrivacyError(Exception):
    """A privacy rule stops the operation (no key, a different key, pseudonymisation turned on late)."""


# --------------------------------------------------------------------------------------------------
# PII patterns (RE2, bound as parameters)
# --------------------------------------------------------------------------------------------------

_HEX = "[0-9A-Fa-f]{1,4}"
# name -> (pattern, replacement, flags): applied in this order by sql/ingest/typed_events.sql and by
# redact_sql(); the replacements reuse the captured boundary character so adjacent values both match.
PII_PATTERNS: dict[str, tuple[str, str, str]] = {
    "email": (r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "[email]", "g"),
    # a sensitive query parameter's value, up to the next &, #, quote, backslash or space (so a URL
    # inside JSON text never loses its closing quote)
    "query": (
        r"([?&](?:email|e-mail|mail|token|access_token|password|pwd|phone|ssn|auth|session_token)=)"
        r"[^&#\"\\\s]*",
        r"\1[redacted]",
        "gi",
    ),
    "ipv4": (r"(^|[^0-9])([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})\.[0-9]+", r"\1\2.0", "g"),
    # eight groups: keep the first three
    "ipv6_full": (rf"(^|[^0-9A-Za-z:])({_HEX}:{_HEX}:{_HEX})(?::{_HEX}){{5}}", r"\1\2::", "g"),
    # compressed (::): keep at most the first three groups before the ::, drop the rest
    "ipv6_short": (
        rf"(^|[^0-9A-Za-z:])((?:{_HEX}(?::{_HEX}){{0,2}})?)(?::{_HEX})*::(?:{_HEX}(?::{_HEX})*)?(?:\.[0-9]+)*",
        r"\1\2::",
        "g",
    ),
}
# Characters that separate tokens in a quarantined line (CSV, TSV, JSON): an id is one token.
TOKEN_SPLIT = r"[\s,;\"'{}\[\]\\|]+"  # noqa: S105 - a regex, not a password


def pii_params() -> dict[str, str]:
    """``$pii_<name>`` (pattern) for every PII pattern, as the SQL files expect them."""
    return {f"pii_{name}": pattern for name, (pattern, _, _) in PII_PATTERNS.items()}


def redact_sql(expr: str, *, steps: Sequence[str] = tuple(PII_PATTERNS)) -> str:
    """SQL applying the PII patterns to ``expr`` (an expression of our own code) with ``$pii_*``."""
    for name in steps:
        _, replacement, flags = PII_PATTERNS[name]
        expr = f"regexp_replace({expr}, $pii_{name}, '{replacement}', '{flags}')"
    return expr


def redact_text(text: str) -> str:
    """The same redaction in Python (for messages and tests); RE2 and ``re`` agree on these patterns."""
    import re

    for pattern, replacement, flags in PII_PATTERNS.values():
        text = re.sub(pattern, replacement, text, flags=re.IGNORECASE if "i" in flags else 0)
    return text


# --------------------------------------------------------------------------------------------------
# The key and keyed hashes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PseudonymKey:
    """HMAC-SHA256 key material: the padded inner and outer keys (the key itself is not kept)."""

    ipad: bytes
    opad: bytes

    @classmethod
    def from_text(cls, text: str) -> PseudonymKey:
        if len(text) < MIN_KEY_LENGTH:
            raise PrivacyError(f"{KEY_ENV} must be at least {MIN_KEY_LENGTH} characters")
        key = text.encode("utf-8")
        if len(key) > 64:  # RFC 2104: longer keys are hashed first
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        return cls(bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key))

    def hash(self, value: str) -> str:
        """HMAC-SHA256(key, value) as lowercase hex (what ``hmac_sql`` computes in SQL)."""
        inner = hashlib.sha256(self.ipad + value.encode("utf-8")).digest()
        return hashlib.sha256(self.opad + inner).hexdigest()

    @property
    def check(self) -> str:
        """A value stored in ``raw.privacy`` to recognise the key again without storing it."""
        inner = hashlib.sha256(self.ipad + _KEY_CHECK_TEXT).digest()
        return hashlib.sha256(self.opad + inner).hexdigest()

    def sql_params(self) -> dict[str, bytes]:
        return {"key_ipad": self.ipad, "key_opad": self.opad}


_NO_KEY = {"key_ipad": b"", "key_opad": b""}


def hmac_sql(expr: str) -> str:
    """SQL for HMAC-SHA256($key, expr) as hex, with ``$key_ipad``/``$key_opad`` bound (our own ``expr``)."""
    return f"sha256($key_opad || unhex(sha256($key_ipad || encode({expr}))))"


def key_from_env(environ: Mapping[str, str] | None = None) -> PseudonymKey | None:
    text = (os.environ if environ is None else environ).get(KEY_ENV, "")
    return PseudonymKey.from_text(text) if text else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


# --------------------------------------------------------------------------------------------------
# Tables and the per-database state
# --------------------------------------------------------------------------------------------------


def ensure_tables(db: Database) -> None:
    """``raw.forgotten`` (keyed hashes of erased ids) and ``raw.privacy`` (one row: the state)."""
    db.execute(
        "create table if not exists raw.forgotten (id_hash varchar, kind varchar, forgotten_at timestamp)"
    )
    db.execute(
        "create table if not exists raw.privacy (pseudonymised boolean, key_check varchar, updated_at timestamp)"
    )


@dataclass(frozen=True)
class PrivacyState:
    pseudonymised: bool = False
    key_check: str | None = None
    n_forgotten: int = 0


def state(db: Database) -> PrivacyState:
    if not db.has_table("raw", "privacy"):
        return PrivacyState()
    row = db.query("select pseudonymised, key_check from raw.privacy limit 1").rows()
    n = int(db.scalar("select count(*) from raw.forgotten")) if db.has_table("raw", "forgotten") else 0
    if not row:
        return PrivacyState(n_forgotten=n)
    return PrivacyState(bool(row[0][0]), row[0][1], n)


def _record(db: Database, key: PseudonymKey, pseudonymised: bool) -> None:
    """Remember the key's check value (and the pseudonymisation flag) on first use."""
    db.execute("delete from raw.privacy")
    db.execute(
        "insert into raw.privacy values ($p, $check, $at)",
        {"p": pseudonymised, "check": key.check, "at": dt.datetime.now(dt.UTC).replace(tzinfo=None)},
    )


def _check_key(current: PrivacyState, key: PseudonymKey) -> None:
    if current.key_check is not None and not _same(current.key_check, key.check):
        raise PrivacyError(
            f"{KEY_ENV} is not the key this database was written with; pseudonyms and forgotten ids would "
            "not match (use the original key)"
        )


@dataclass(frozen=True)
class IngestPrivacy:
    """What one ingest call does about privacy (resolved once, before any file is read)."""

    pseudonymise: bool = False
    key: PseudonymKey | None = None
    has_forgotten: bool = False

    @property
    def hash_ids(self) -> bool:
        return self.key is not None and (self.pseudonymise or self.has_forgotten)

    def sql_params(self) -> dict[str, Any]:
        return {
            **pii_params(),
            **(self.key.sql_params() if self.key is not None else _NO_KEY),
            "pseudonymise": self.pseudonymise,
            "hash_ids": self.hash_ids,
        }


def resolve_ingest(db: Database, settings: Mapping[str, Any] | None, key: PseudonymKey | None) -> IngestPrivacy:
    """Decide pseudonymisation and forgotten-id filtering for an ingest; record the key on first use.

    ``settings`` is the ``[privacy]`` config section (None: the database's own state decides).
    """
    current = state(db)
    wanted = bool(settings and settings.get("pseudonymise_user_ids"))
    pseudonymise = wanted or current.pseudonymised
    if wanted and not current.pseudonymised and db.has_table("raw", "events") and db.scalar(
        "select count(*) from raw.events where user_id is not null"
    ):
        raise PrivacyError(
            "privacy.pseudonymise_user_ids = true, but this database already holds raw user ids; "
            "load the files into a new database to pseudonymise them"
        )
    if (pseudonymise or current.n_forgotten) and key is None:
        why = "pseudonymises user ids" if pseudonymise else "has forgotten users to keep out"
        raise PrivacyError(f"this database {why}: set {KEY_ENV} (the key it was written with)")
    if key is not None:
        _check_key(current, key)
        if pseudonymise and (not current.pseudonymised or current.key_check is None):
            _record(db, key, True)
    return IngestPrivacy(pseudonymise, key, current.n_forgotten > 0)


# --------------------------------------------------------------------------------------------------
# Forget (right to erasure)
# --------------------------------------------------------------------------------------------------

# Columns that carry a journey key, user id or anonymous id in derived tables (staging, paths, marts).
_ID_COLUMNS = ("user_key", "user_id", "anonymous_id")
_DERIVED_LAYERS = ("staging", "paths", "marts")
FORGET_MARK = "forget"  # staging.build_log.mode of the row forget writes: the next build is full


@dataclass
class ForgetSummary:
    n_ids: int = 0
    n_anonymous_ids: int = 0  # anonymous ids stitched to the users (or given), forgotten with them
    n_events: int = 0  # rows deleted from raw.events
    n_quarantine: int = 0  # rows deleted from raw.quarantine
    n_items: int = 0  # rows deleted from raw.ga4_items
    n_derived_rows: int = 0  # rows deleted from staging/paths/marts before the rebuild
    build: str | None = None  # the rebuild's mode, None when no build existed (or --no-build)
    rewritten: list[str] = field(default_factory=list)  # report and export files written again
    removed: list[str] = field(default_factory=list)  # dated report copies that named a forgotten id
    compacted: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"forgot {self.n_ids} id(s) and {self.n_anonymous_ids} stitched anonymous id(s): deleted "
            f"{self.n_events:,} events, {self.n_quarantine:,} quarantined rows, {self.n_items:,} items, "
            f"{self.n_derived_rows:,} derived rows; build {self.build or 'not run'}; "
            f"{len(self.rewritten)} output file(s) rewritten, {len(self.removed)} removed"
            f"{'; database compacted' if self.compacted else ''} in {self.seconds:.1f}s"
        )


def forget(
    db_path: Path,
    ids: Iterable[str],
    config: Mapping[str, Any],
    *,
    key: PseudonymKey | None = None,
    report_dir: Path | None = None,
    export_dir: Path | None = None,
    rebuild: bool = True,
    compact: bool = True,
) -> ForgetSummary:
    """Erase ``ids`` (user ids or anonymous ids) everywhere and keep them out of later loads.

    Takes the run lock (a batch run cannot write meanwhile), deletes in one transaction, then
    rebuilds (full), compacts the file and rewrites existing report/export files. ``key`` defaults to
    ``JOURNEYS_PSEUDONYM_KEY``, which is required: the forgotten list holds keyed hashes only.
    """
    from pipeline.run import run_lock

    started = time.perf_counter()
    wanted = sorted({i.strip() for i in ids if i and i.strip()})
    if not wanted:
        raise PrivacyError("forget needs at least one user id")
    key = key if key is not None else key_from_env()
    if key is None:
        raise PrivacyError(f"forget keeps keyed hashes of the ids it erases: set {KEY_ENV}")
    given = Path(db_path)  # the lock file is named after the path as given, like `journeys run` does
    db_path = check_output_path(given)
    if not db_path.is_file():
        raise PrivacyError(f"database {given} does not exist")
    report_dir = check_output_path(report_dir) if report_dir is not None else None
    export_dir = check_output_path(export_dir) if export_dir is not None else None
    summary = ForgetSummary(n_ids=len(wanted))
    with run_lock(given):
        with Database(db_path) as db:
            _erase(db, wanted, key, summary)
            if rebuild and db.has_table("staging", "stg_events"):
                from pipeline.build import build

                summary.build = build(db, dict(config), "full").mode
        if compact:
            compact_database(db_path)
            summary.compacted = True
        _rewrite_outputs(db_path, wanted, key, report_dir, export_dir, summary)
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary


def _erase(db: Database, wanted: list[str], key: PseudonymKey, summary: ForgetSummary) -> None:
    from pipeline.ingest import ensure_raw_tables

    ensure_raw_tables(db)
    current = state(db)
    _check_key(current, key)
    import polars as pl

    given = pl.DataFrame({"raw_id": wanted, "id_hash": [key.hash(i) for i in wanted]})
    identity = load_sql("staging/stg_identity.sql")
    db.register("_forget_given", given)
    try:
        with db.transaction():
            if current.key_check is None:
                _record(db, key, current.pseudonymised)
            # Stored user_id values: the pseudonyms in a pseudonymised database, else the raw ids
            # (both, to be safe); anonymous ids: the ids given that are anonymous ids, and the
            # anonymous ids stitched to the users by the stg_identity rule.
            db.materialize(
                "_forget_users",
                "select raw_id as stored_id, id_hash from _forget_given union "
                "select id_hash, id_hash from _forget_given",
                temp=True,
            )
            db.materialize(
                "_forget_anon",
                f"with identity as ({identity}) "  # noqa: S608 - our own SQL file
                "select distinct i.anonymous_id from identity as i "
                "where i.user_id in (select stored_id from _forget_users) "
                "union select e.anonymous_id from raw.events as e "
                "where e.anonymous_id in (select raw_id from _forget_given)",
                temp=True,
            )
            summary.n_anonymous_ids = int(db.scalar("select count(*) from _forget_anon"))
            db.materialize(
                "_forget_events",
                "select event_id, file_id from raw.events where user_id in (select stored_id from _forget_users) "
                "or (user_id is null and anonymous_id in (select anonymous_id from _forget_anon))",
                temp=True,
            )
            db.materialize(
                "_forget_values",
                "select stored_id as v from _forget_users union select anonymous_id from _forget_anon",
                temp=True,
            )
            db.materialize(
                "_forget_quarantine",
                "select rowid as rid, file_id from raw.quarantine where original_text is not null and "
                "list_has_any(regexp_split_to_array(original_text, $split), "
                "(select list(v) from _forget_values))",
                {"split": TOKEN_SPLIT},
                temp=True,
            )
            summary.n_events = int(db.scalar("select count(*) from _forget_events"))
            summary.n_quarantine = int(db.scalar("select count(*) from _forget_quarantine"))
            summary.n_items = int(db.scalar(
                "select count(*) from raw.ga4_items where event_id in (select event_id from _forget_events)"
            ))
            db.execute("delete from raw.ga4_items where event_id in (select event_id from _forget_events)")
            db.execute("delete from raw.events where user_id in (select stored_id from _forget_users) "
                       "or (user_id is null and anonymous_id in (select anonymous_id from _forget_anon))")
            db.execute("delete from raw.quarantine where rowid in (select rid from _forget_quarantine)")
            # The manifest keeps n_read = n_loaded + n_duplicate + n_quarantined + n_forgotten per file.
            db.execute(
                "update raw.manifest as m set n_loaded = m.n_loaded - c.n_events, "
                "n_quarantined = m.n_quarantined - c.n_quarantine, "
                "n_forgotten = coalesce(m.n_forgotten, 0) + c.n_events + c.n_quarantine "
                "from (select file_id, sum(n_events) as n_events, sum(n_quarantine) as n_quarantine from ("
                "  select file_id, 1 as n_events, 0 as n_quarantine from _forget_events union all "
                "  select file_id, 0, 1 from _forget_quarantine) group by file_id) as c "
                "where m.file_id = c.file_id"
            )
            now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            db.execute(
                "insert into raw.forgotten select distinct id_hash, 'user', $now from _forget_given g "
                "where not exists (select 1 from raw.forgotten f where f.id_hash = g.id_hash)",
                {"now": now},
            )
            db.execute(
                f"insert into raw.forgotten select distinct {hmac_sql('a.anonymous_id')}, 'anonymous', $now "  # noqa: S608
                "from _forget_anon as a where a.anonymous_id is not null and not exists "
                f"(select 1 from raw.forgotten f where f.id_hash = {hmac_sql('a.anonymous_id')})",
                {"now": now, **key.sql_params()},
            )
            summary.n_derived_rows = _erase_derived(db)
            _mark_build(db)
    finally:
        db.unregister("_forget_given")
        for name in ("_forget_users", "_forget_anon", "_forget_events", "_forget_values", "_forget_quarantine"):
            db.execute(f"drop table if exists {name}")


def _erase_derived(db: Database) -> int:
    """Delete the rows of forgotten ids from every derived table that has an id column.

    Table and column names come from the catalog (quoted); aggregates without ids are made right by
    the full rebuild that follows.
    """
    columns = db.query(
        "select c.schema_name, c.table_name, c.column_name from duckdb_columns() as c "
        "join duckdb_tables() as t on t.database_name = c.database_name and t.schema_name = c.schema_name "
        "and t.table_name = c.table_name "
        "where c.database_name = current_database() and not t.temporary and c.schema_name in $layers "
        "and c.column_name in $columns and c.table_name <> 'build_log' order by all",
        {"layers": list(_DERIVED_LAYERS), "columns": list(_ID_COLUMNS)},
    )
    by_table: dict[tuple[str, str], list[str]] = {}
    for schema, table, column in columns.iter_rows():
        by_table.setdefault((schema, table), []).append(column)
    n = 0
    for (schema, table), cols in by_table.items():
        # identifiers from the catalog, quoted; the values are a table of our own
        where = " or ".join(f"{_quote(c)} in (select v from _forget_values)" for c in cols)  # noqa: S608
        source = f"{_quote(schema)}.{_quote(table)}"
        n += int(db.scalar(f"select count(*) from {source} where {where}"))  # noqa: S608 - catalog names
        db.execute(f"delete from {source} where {where}")  # noqa: S608 - catalog names, quoted
    return n


def _mark_build(db: Database) -> None:
    """A ``staging.build_log`` row that makes the next ``build`` a full one (pipeline/build.py)."""
    if not db.has_table("staging", "build_log"):
        return  # never built: the next build is a full one anyway
    db.execute(
        "insert into staging.build_log (build_id, built_at, mode, max_file_id, fingerprint) "
        "select coalesce(max(build_id), 0) + 1, $at, $mode, "
        "(select coalesce(max(file_id), 0) from raw.manifest), '' from staging.build_log",
        {"at": dt.datetime.now(dt.UTC).replace(tzinfo=None), "mode": FORGET_MARK},
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def compact_database(db_path: Path) -> None:
    """Copy the database into a new file and rename it into place.

    DuckDB marks deleted rows and frees blocks but does not overwrite them, so erased values could
    still be read from the file's bytes; a copy holds only live rows. The copy is made next to the
    database and renamed atomically: a kill leaves either the old file or the new one.
    """
    tmp = db_path.with_name(f".{db_path.name}.compact")
    for leftover in (tmp, Path(f"{tmp}.wal")):
        leftover.unlink(missing_ok=True)
    with Database(db_path) as db:  # everything into the file itself: a WAL must not outlive it
        db.execute("force checkpoint")
    if Path(f"{db_path}.wal").exists():
        raise PrivacyError(f"{db_path}: the write-ahead log could not be folded into the file; not compacted")
    try:
        with Database(":memory:") as mem:
            mem.execute("attach $path as _old (read_only)", {"path": str(db_path)})
            mem.execute("attach $path as _new", {"path": str(tmp)})
            mem.execute("copy from database _old to _new")
            mem.execute("checkpoint _new")
            mem.execute("detach _new")
            mem.execute("detach _old")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, db_path)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)


def _rewrite_outputs(
    db_path: Path, wanted: list[str], key: PseudonymKey, report_dir: Path | None, export_dir: Path | None,
    summary: ForgetSummary,
) -> None:
    """Write existing report/export files again from the erased database; remove dated report copies
    (snapshots of older data that cannot be recomputed) that still name a forgotten id."""
    report = report_dir / "report.html" if report_dir is not None else None
    exports = sorted(p for p in export_dir.iterdir() if p.is_file() and not p.name.startswith(".")) \
        if export_dir is not None and export_dir.is_dir() else []
    for path in ([report] if report is not None and report.exists() else []) + exports:
        check_output_path(path, inside=path.parent)  # no write through a planted symlink
    if not (report is not None and report.is_file()) and not exports:
        return
    with Database(db_path, read_only=True) as db:
        if not db.has_table("staging", "stg_events"):
            return
        if report is not None and report.is_file():
            from pipeline.report import write_report

            before = {p: p.stat().st_mtime_ns for p in report_dir.glob("report-*.html")}
            written = write_report(db, report_dir)
            summary.rewritten.append(str(written))
            needles = [v.encode() for v in wanted] + [key.hash(v).encode() for v in wanted]
            for copy in sorted(report_dir.glob("report-*.html")):
                if copy in before and copy.stat().st_mtime_ns == before[copy]:  # not written just now
                    if _mentions(copy, needles):
                        copy.unlink()
                        summary.removed.append(str(copy))
                else:
                    summary.rewritten.append(str(copy))
        if exports:
            from pipeline import export as export_mod

            known = {e.name: e for e in export_mod.exportables(db)}
            for path in exports:
                stem, _, fmt = path.name.rpartition(".")
                if stem in known and fmt in export_mod.EXPORT_FORMATS:
                    export_mod.export_one(db, known[stem], fmt, export_dir)  # type: ignore[arg-type]
                    summary.rewritten.append(str(path))


def _mentions(path: Path, needles: list[bytes]) -> bool:
    data = path.read_bytes()
    return any(n in data for n in needles if n)


# --------------------------------------------------------------------------------------------------
# Output paths
# --------------------------------------------------------------------------------------------------

# System folders the product never writes into (after resolving symlinks).
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin",
               "/sys", "/usr", "/var/lib", "/var/run")


class UnsafePath(PrivacyError):
    """A path the product refuses to write to."""


def check_output_path(path: Path | str, *, inside: Path | str | None = None) -> Path:
    """The rule for every path the product writes (``--db``, the report and export ``--out`` folders
    and the files written in them).

    The path is made absolute and every symlink in it resolved. The result must not be the root
    folder or lie inside a system folder (:data:`SYSTEM_DIRS`), whatever symlinks led there. With
    ``inside`` (the target folder a file is written into), the resolved file must stay inside the
    resolved folder: ``reports/report.html -> /home/x/.bashrc`` is refused, so a planted symlink
    cannot redirect a write. Returns the resolved path; raises :class:`UnsafePath` naming the path.
    """
    resolved = _resolve(path)
    if resolved == Path(resolved.anchor):
        raise UnsafePath(f"{path}: refusing to write to the root folder")
    for system in SYSTEM_DIRS:
        if resolved == Path(system) or resolved.is_relative_to(system):
            raise UnsafePath(f"{path}: resolves into the system folder {system}; refusing to write there")
    if inside is not None:
        folder = _resolve(inside)
        if not resolved.is_relative_to(folder):
            raise UnsafePath(f"{path}: resolves to {resolved}, outside the folder {folder}; refusing to write "
                             "through a symlink that leaves it")
    return resolved


def _resolve(path: Path | str) -> Path:
    given = Path(os.path.expanduser(str(path)))
    return (given if given.is_absolute() else Path.cwd() / given).resolve(strict=False)


__all__ = [
    "KEY_ENV", "PII_PATTERNS", "ForgetSummary", "IngestPrivacy", "PrivacyError", "PseudonymKey", "UnsafePath",
    "check_output_path", "compact_database", "forget", "hmac_sql", "key_from_env", "pii_params", "redact_sql",
    "redact_text", "resolve_ingest", "state",
]
