"""Right to erasure: ``journeys forget USER_ID...`` removes users everywhere and keeps them out.

- Every table: raw.events (the users' events and those of the anonymous ids stitched to them),
  raw.quarantine (rows whose text names them), raw.ga4_items, staging, marts; the report and the
  exports are written again, a dated report copy that still names them is removed, and the database
  file is compacted (no live row, and no byte of the file, holds their ids).
- ``raw.forgotten`` holds keyed hashes only; loading their old files again (the same bytes: skipped;
  re-exported bytes: their rows dropped) keeps them out, counted as ``n_forgotten`` in the manifest,
  with ``n_read = n_loaded + n_duplicate + n_quarantined + n_forgotten``.
- The next build after a forget is a full one (the ``forget`` mark in staging.build_log).
- Forget needs ``JOURNEYS_PSEUDONYM_KEY`` (and the same key later), respects the run lock, and never
  prints the ids it erases.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil

import polars as pl

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files
from pipeline.privacy import PseudonymKey, forget
from tests.reliability.conftest import copy_db
from tests.reliability.helpers import KEY, REPO, check_invariants, cli

GA4 = REPO / "tests" / "fixtures" / "adapters" / "ga4" / "events_20250106.json"
TARGETS = ["C1001", "C1000911", "C1000647"]  # GA4's identified user (5 stitched events), two simulated users
NOW_KEY = PseudonymKey.from_text(KEY)


def _extra(path):
    """Quarantined and malformed rows that name a target, and one of someone else."""
    path.write_text(
        "event_id,user_id,anonymous_id,ts,event_name,page_url\n"
        "q1,C1000911,,not a time,page_view,https://shop.example.com/\n"
        "q2,C1000647,,2999-01-01T00:00:00Z,page_view,\n"
        "q3,someone_else,,not a time,page_view,\n"
        "C1000911,broken,line,with,too,many,fields,here\n"
    )
    return path


def _values(db: Database, ids) -> dict[str, int]:
    """Rows of any derived or raw table that hold one of ``ids`` in an id column."""
    hits = {}
    cols = db.query(
        "select schema_name, table_name, column_name from duckdb_columns() where database_name = current_database() "
        "and column_name in ('user_id', 'anonymous_id', 'user_key') order by all"
    )
    for schema, table, column in cols.iter_rows():
        n = db.scalar(f'select count(*) from "{schema}"."{table}" where "{column}" in $ids', {"ids": list(ids)})  # noqa: S608
        if n:
            hits[f"{schema}.{table}.{column}"] = n
    return hits


def test_forget_erases_users_everywhere_and_keeps_them_out(tmp_path, sim_files):
    db_path = tmp_path / "j.duckdb"
    reports, exports = tmp_path / "reports", tmp_path / "exports"
    with Database(db_path) as db:
        ingest_files(db, [*sim_files, GA4, _extra(tmp_path / "extra.csv")])
        build(db, config.defaults())
        stitched = db.query(
            "select distinct anonymous_id from raw.events where user_id in $t", {"t": TARGETS}
        )["anonymous_id"].to_list()
        assert len(stitched) >= 3 and _values(db, TARGETS)
        n_items = db.scalar("select count(*) from raw.ga4_items")
        from pipeline.export import export
        from pipeline.report import write_report

        write_report(db, reports)
        export(db, ["stg_events", "stg_sessions", "mart_customers"], "csv", exports)
    (reports / "report-2000-01-01.html").write_text("<html>old snapshot naming C1000911</html>")  # cannot be redone
    (reports / "report-2000-01-02.html").write_text("<html>old snapshot of nobody</html>")
    assert b"C1000911" in (exports / "stg_events.csv").read_bytes()

    done = cli("forget", *TARGETS, "--db", str(db_path), "--out", str(reports), "--exports", str(exports), "--json",
               JOURNEYS_PSEUDONYM_KEY=KEY)
    assert done.returncode == 0, done.stderr
    assert not any(t in done.stdout + done.stderr for t in TARGETS)  # the ids are never printed
    summary = json.loads(done.stdout)
    assert summary["n_ids"] == 3 and summary["n_anonymous_ids"] >= len(stitched) and summary["build"] == "full"
    assert summary["n_events"] > 100 and summary["n_quarantine"] == 3 and summary["n_items"] > 0
    assert summary["compacted"] and summary["removed"] == [str(reports / "report-2000-01-01.html")]
    assert (reports / "report-2000-01-02.html").exists()

    counts = check_invariants(db_path)
    gone = TARGETS + stitched
    with Database(db_path) as db:
        assert _values(db, gone) == {}
        assert db.scalar("select count(*) from raw.quarantine where original_text like '%C1000911%' "
                         "or original_text like '%C1000647%'") == 0
        assert db.scalar("select count(*) from raw.quarantine where original_text like '%someone_else%'") == 1
        assert db.scalar("select count(*) from raw.ga4_items") < n_items
        assert db.scalar("select sum(n_forgotten) from raw.manifest") == summary["n_events"] + summary["n_quarantine"]
        forgotten = db.query("select id_hash, kind from raw.forgotten")
        assert set(forgotten.filter(pl.col("kind") == "user")["id_hash"]) == {NOW_KEY.hash(t) for t in TARGETS}
        assert db.query("select mode from staging.build_log order by build_id")["mode"].to_list()[-2:] == [
            "forget", "full"]
    data = db_path.read_bytes()
    for path in [*reports.glob("*.html"), *exports.glob("*.csv")]:
        data += path.read_bytes()
    assert not any(t.encode() in data for t in TARGETS if t != "C1001")  # "C1001" is a prefix of other ids

    # Their files again: the same bytes are skipped; re-exported bytes have their rows dropped.
    reexported_ga4 = tmp_path / "events_20250106_reexport.json"
    reexported_ga4.write_text("".join(json.dumps(json.loads(line), sort_keys=True) + "\n"
                                      for line in GA4.read_text().splitlines() if line.startswith("{\"")
                                      and line.endswith("}")))
    sim_again = tmp_path / "sim_again.csv"
    pl.read_csv(sim_files[2], infer_schema=False).write_csv(sim_again)
    with Database(db_path) as db:
        results = ingest_files(db, [*sim_files, GA4, reexported_ga4, sim_again], pseudonym_key=NOW_KEY)
        assert {r.status for r in results[: len(sim_files) + 1]} == {"already_loaded"}
        ga4_again, csv_again = results[-2:]
        assert ga4_again.n_forgotten == 7 and csv_again.n_forgotten > 0
        for r in (ga4_again, csv_again):
            assert r.n_read == r.n_loaded + r.n_duplicate + r.n_quarantined + r.n_forgotten
        build(db, config.defaults())
        assert _values(db, gone) == {}
    assert check_invariants(db_path)["events"] >= counts["events"]


def test_the_build_after_a_forget_is_a_full_build(tmp_path, reference_db):
    db_path = copy_db(reference_db, tmp_path / "j.duckdb")
    summary = forget(db_path, ["C1000134"], config.defaults(), key=NOW_KEY, rebuild=False, compact=False)
    assert summary.n_events > 0 and summary.build is None
    with Database(db_path) as db:
        assert build(db, config.defaults()).mode == "full"
        assert build(db, config.defaults()).mode == "up_to_date"
        assert _values(db, ["C1000134"]) == {}
    check_invariants(db_path)


def test_forget_needs_the_key_respects_the_lock_and_later_loads_need_the_key(tmp_path, reference_db, sim_files):
    db_path = copy_db(reference_db, tmp_path / "j.duckdb")
    no_key = cli("forget", "C1000504", "--db", str(db_path))
    assert no_key.returncode == 1 and "set JOURNEYS_PSEUDONYM_KEY" in no_key.stderr
    handle = os.open(f"{db_path}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a batch run is writing
    try:
        locked = cli("forget", "C1000504", "--db", str(db_path), JOURNEYS_PSEUDONYM_KEY=KEY)
    finally:
        os.close(handle)
    assert locked.returncode == 3 and "another journeys run holds" in locked.stderr
    ok = cli("forget", "C1000504", "--db", str(db_path), "--no-build", "--out", str(tmp_path / "none"),
             JOURNEYS_PSEUDONYM_KEY=KEY)
    assert ok.returncode == 0, ok.stderr
    wrong = cli("forget", "C1000339", "--db", str(db_path), JOURNEYS_PSEUDONYM_KEY="a-different-key-0000")
    assert wrong.returncode == 1 and "not the key this database was written with" in wrong.stderr
    again = tmp_path / "again.csv"
    shutil.copy(sim_files[0], tmp_path / "again.csv.gz")
    pl.read_csv(tmp_path / "again.csv.gz", infer_schema=False).write_csv(again)
    blocked = cli("ingest", str(again), "--db", str(db_path))
    assert blocked.returncode == 1 and "has forgotten users to keep out: set JOURNEYS_PSEUDONYM_KEY" in blocked.stderr
    check_invariants(db_path)
