"""Shared by the reliability tests: the CLI as a real process, database invariants, table digests.

Every check opens the database the way the next run would (read-write, so DuckDB replays its WAL),
and compares tables by a digest of their sorted rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.db import Database

REPO = Path(__file__).resolve().parents[2]
KEY = "reliability-tests-pseudonym-key-0001"  # JOURNEYS_PSEUDONYM_KEY of the tests (>= 16 characters)

# A child that imports what the command needs, says "ready" on stderr, then runs the CLI's main():
# a kill timed from "ready" lands in the work, not in Python's start-up.
_CHILD = (
    "import sys, importlib\n"
    "for name in sys.argv[1].split(','):\n"
    "    importlib.import_module(name)\n"
    "from pipeline.cli import main\n"
    "sys.stderr.write('ready\\n'); sys.stderr.flush()\n"
    "main(sys.argv[2:])\n"
)


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_")}
    base.update({"PYTHONWARNINGS": "ignore", **extra})
    return base


def cli(*args: str, cwd: Path = REPO, timeout: float = 300, stdin: str | None = None, **extra: str):
    """``python -m pipeline ARGS`` to completion (the same as the ``journeys`` script)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env=env(**extra), input=stdin,
    )


def start_cli(args: list[str], preload: tuple[str, ...], cwd: Path = REPO, **extra: str) -> subprocess.Popen:
    """Start the CLI in its own process group; returns once it printed ``ready`` (imports done)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, ",".join(preload), *args], cwd=cwd, env=env(**extra),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    line = proc.stderr.readline()
    while line and line.strip() != "ready":
        line = proc.stderr.readline()
    if not line:
        out, err = proc.communicate(timeout=60)
        raise AssertionError(f"child failed before starting its work: {err}")
    return proc


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL the process group after ``delay`` seconds; True when it was still working then."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.005)
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    return alive


def timed_run(args: list[str], preload: tuple[str, ...], **extra: str) -> float:
    """Run the CLI child to completion; return the seconds of its work (from ``ready`` to exit)."""
    proc = start_cli(args, preload, **extra)
    started = time.monotonic()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return time.monotonic() - started


# --------------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------------


def check_invariants(db_path: Path) -> dict[str, int]:
    """Open the database as the next run would and assert every load invariant; return counts.

    Per manifest file: rows in raw.events = n_loaded (fewer for a GA4 file whose day a later file
    replaced: in total, raw.events = sum(n_loaded) - sum(n_replaced)), rows in raw.quarantine =
    n_quarantined, n_read = n_loaded + n_duplicate + n_quarantined + n_forgotten. No duplicate event_id or (file_id,
    row_number), no row of
    a file the manifest does not know, no leftover scratch table; staging (when built) holds each
    raw event of the files the last build saw exactly once and its sessions add up to its events.
    """
    with Database(db_path) as db:
        counts: dict[str, int] = {"files": 0, "events": 0, "quarantined": 0}
        if not db.has_table("raw", "manifest"):
            assert not db.has_table("raw", "events") or not db.scalar("select count(*) from raw.events")
            return counts
        # A re-exported GA4 day replaces the day's events of earlier GA4 files: their manifest rows keep
        # what they loaded then, and the later file's n_replaced counts what it replaced.
        bad = db.query(
            "select m.file_id, m.n_read, m.n_loaded, m.n_duplicate, m.n_quarantined, coalesce(m.n_forgotten, 0) f, "
            "(select count(*) from raw.events e where e.file_id = m.file_id) as events, "
            "(select count(*) from raw.quarantine q where q.file_id = m.file_id) as quarantined, "
            "m.format = 'ga4' and exists (select 1 from raw.manifest l where l.format = 'ga4' "
            "  and l.file_id > m.file_id and coalesce(l.n_replaced, 0) > 0) as replaced_later "
            "from raw.manifest m where (events <> m.n_loaded and not (replaced_later and events <= m.n_loaded)) "
            "or quarantined <> m.n_quarantined "
            "or m.n_read <> m.n_loaded + m.n_duplicate + m.n_quarantined + coalesce(m.n_forgotten, 0)"
        )
        assert bad.height == 0, f"manifest counts disagree with the tables: {bad.to_dicts()}"
        assert db.scalar(
            "select (select count(*) from raw.events) - "
            "(select coalesce(sum(n_loaded), 0) - coalesce(sum(n_replaced), 0) from raw.manifest)"
        ) == 0, "raw.events differs from what the manifest says was loaded minus replaced"
        assert db.scalar("select count(*) - count(distinct event_id) from raw.events") == 0, "duplicate event_id"
        # stg_events joins its windows back to raw.events on this pair
        assert db.scalar("select count(*) - count(distinct (file_id, row_number)) from raw.events") == 0, \
            "duplicate (file_id, row_number)"
        orphans = db.scalar(
            "select (select count(*) from raw.events where file_id not in (select file_id from raw.manifest)) + "
            "(select count(*) from raw.quarantine where file_id not in (select file_id from raw.manifest))"
        )
        assert orphans == 0, "rows of a file the manifest does not know"
        assert db.scalar("select count(*) - count(distinct file_id) from raw.manifest") == 0
        assert db.scalar("select count(*) - count(distinct content_sha256) from raw.manifest") == 0
        leftovers = db.query(
            "select table_name from duckdb_tables() where not temporary and "
            "(table_name like '\\_ingest\\_%' escape '\\' or table_name like '\\_forget\\_%' escape '\\' "
            "or table_name like '\\_build\\_%' escape '\\')"
        )
        assert leftovers.height == 0, f"scratch tables left behind: {leftovers.to_series().to_list()}"
        counts = {
            "files": int(db.scalar("select count(*) from raw.manifest")),
            "events": int(db.scalar("select count(*) from raw.events")),
            "quarantined": int(db.scalar("select count(*) from raw.quarantine")),
        }
        if db.has_table("staging", "stg_events"):
            # staging holds every raw event of the files the last build saw, once
            built_upto = db.scalar("select max_file_id from staging.build_log order by build_id desc limit 1")
            n_stg = int(db.scalar("select count(*) from staging.stg_events"))
            assert n_stg == db.scalar("select count(distinct event_id) from staging.stg_events")
            n_raw = db.scalar("select count(*) from raw.events where file_id <= $m", {"m": built_upto})
            assert n_stg == n_raw, f"staging.stg_events holds {n_stg} events, raw {n_raw} (files <= {built_upto})"
            assert db.scalar("select coalesce(sum(n_events), 0) from staging.stg_sessions") == n_stg
            counts["staged"] = n_stg
        return counts


# Columns that differ between two correct runs (wall-clock times, durations, the path as typed).
VOLATILE = {"loaded_at", "seconds", "built_at", "path", "started_at", "finished_at", "forgotten_at", "updated_at"}


def digests(db_path: Path, schemas: tuple[str, ...] = ("raw", "staging", "marts"),
            skip: tuple[str, ...] = ("build_log", "runs"), exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """``schema.table -> md5 of its sorted rows`` for every table; volatile columns and ``exclude``
    (e.g. file_id, row_number: where a row came from) left out."""
    with Database(db_path) as db:
        return _digests(db, schemas, skip, exclude)


def _digests(db: Database, schemas: tuple[str, ...], skip: tuple[str, ...], exclude: tuple[str, ...] = ()
             ) -> dict[str, str]:
    tables = db.query(
        "select schema_name, table_name from duckdb_tables() where not temporary and schema_name in $s "
        "and database_name = current_database() order by all",
        {"s": list(schemas)},
    )
    out = {}
    for schema, table in tables.iter_rows():
        if table in skip:
            continue
        cols = db.query(
            "select column_name from duckdb_columns() where schema_name = $s and table_name = $t "
            "and database_name = current_database() order by column_index",
            {"s": schema, "t": table},
        ).to_series().to_list()
        keep = ", ".join(f'"{c}"' for c in cols if c not in VOLATILE and c not in exclude)
        out[f"{schema}.{table}"] = db.scalar(
            f"select count(*) || ':' || coalesce(md5(string_agg(r, chr(10) order by r)), '') from "  # noqa: S608
            f"(select cast(struct_pack({keep}) as varchar) as r from {schema}.{table})"
        )
    return out
