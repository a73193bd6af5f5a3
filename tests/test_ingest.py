"""Ingest: formats, quarantine reasons, manifest, idempotency, atomicity, rejected files, CLI."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import polars as pl
import pytest

import pipeline.ingest as ingest_mod
from pipeline.build import build
from pipeline.db import Database, load_sql
from pipeline.ingest import ingest_files
from tests.conftest import REPO, make_journeys

GOOD = make_journeys({
    "u1": [("page_view", 0, {"page_url": "https://shop.example.com/"}), ("view_item", 1), ("add_to_cart", 3)],
    "u2": [("page_view", 0, {"anonymous_id": "a2", "user_id": None}), ("purchase", 4, {"revenue": 9.99,
                                                                                       "currency": "eur"})],
})


def _csv_text(frame: pl.DataFrame) -> str:
    return frame.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")).write_csv()


def _events(db: Database) -> pl.DataFrame:
    return db.query("select * exclude (file_id, row_number) from raw.events order by event_id")


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv", ".parquet", ".ndjson", ".jsonl.gz"])
def test_every_container_loads_the_same_events(tmp_path, suffix):
    path = tmp_path / f"events{suffix}"
    if suffix == ".parquet":
        GOOD.write_parquet(path)
    elif suffix == ".tsv":
        path.write_text(_csv_text(GOOD).replace(",", "\t"))
    elif suffix.startswith(".csv"):
        data = _csv_text(GOOD).encode()
        path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    else:
        lines = GOOD.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")).write_ndjson().encode()
        path.write_bytes(gzip.compress(lines) if suffix.endswith(".gz") else lines)
    db = Database(tmp_path / "t.duckdb")
    [result] = ingest_files(db, [path])
    assert (result.status, result.n_read, result.n_loaded, result.n_quarantined) == ("loaded", 5, 5, 0)
    events = _events(db)
    assert events["event_id"].to_list() == ["u1-0", "u1-1", "u1-2", "u2-0", "u2-1"]
    from decimal import Decimal

    assert events.filter(pl.col("event_id") == "u2-1").select("revenue", "currency").rows() == [
        (Decimal("9.99"), "EUR")]
    assert events["ts"].to_list() == GOOD.sort("event_id")["ts"].to_list()
    db.close()


BAD_CSV = """event_id,user_id,anonymous_id,ts,event_name,revenue,currency,country,page_url,colour
e1,u1,,2025-01-06 10:00:00,page_view,,,de,https://x.test/?email=jo@example.com&q=1,red
e2,,,2025-01-06 10:01:00,page_view,,,,,
e3,u1,,yesterday,page_view,,,,,
e4,u1,,2025-01-06 10:03:00,purchase,12.x,EUR,,,
e5,u1,,2025-01-06 10:04:00,,,,,,
e6,u1,,2025-01-06 10:05:00,purchase,5,EURO,,,
e7,u1,,2025-01-06 10:06:00,page_view,,,DEU,,
e8,u1,,2099-01-01 00:00:00,page_view,,,,,
e9,u1,,2025-01-06 10:08:00,page_view,,,,,,,too many
e1,u1,,2025-01-06 10:00:00,page_view,,,de,,red
e10,u1,,1736158272,page_view,,,,,
e11,u1,,1736158272000,page_view,,,,,
"""


def test_bad_rows_are_quarantined_with_reason_and_accounting_holds(db, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    [r] = ingest_files(db, [path])
    assert r.status == "loaded"
    assert (r.n_read, r.n_loaded, r.n_duplicate, r.n_quarantined) == (12, 3, 1, 8)
    q = db.query("select row_number, line_number, field, reason from raw.quarantine order by line_number, "
                 "row_number")
    assert q.rows() == [
        (None, 10, "<row>", "malformed_row"),  # physical line 10 of the file (header is line 1)
        (2, None, "user_id|anonymous_id", "missing_identity"),
        (3, None, "ts", "invalid_timestamp"),
        (4, None, "revenue", "invalid_number"),
        (5, None, "event_name", "missing_value"),
        (6, None, "currency", "invalid_value"),
        (7, None, "country", "invalid_value"),
        (8, None, "ts", "future_timestamp"),
    ]
    original = db.scalar("select original_text from raw.quarantine where row_number = 3")
    assert json.loads(original)["ts"] == "yesterday"
    e1 = db.query("select country, page_url, properties from raw.events where event_id = 'e1'").row(0)
    assert e1[0] == "DE" and e1[1] == "https://x.test/?email=[redacted]&q=1"
    assert json.loads(e1[2]) == {"colour": "red"}
    ts = dict(db.query("select event_id, ts from raw.events where event_id in ('e10', 'e11')").rows())
    assert ts["e10"] == ts["e11"]  # seconds and millis detected by magnitude
    manifest = db.query("select n_read, n_loaded, n_duplicate, n_quarantined from raw.manifest").row(0)
    assert manifest == (12, 3, 1, 8)


def test_reingest_adds_nothing_and_duplicates_across_files_are_counted(db, tmp_path):
    a = tmp_path / "a.csv"
    a.write_text(_csv_text(GOOD))
    ingest_files(db, [a])
    before = _events(db)
    [again] = ingest_files(db, [a])
    assert again.status == "already_loaded" and again.n_loaded == 0
    copy = tmp_path / "copy_with_one_new.csv"
    extra = make_journeys({"u9": [("page_view", 0)]})
    copy.write_text(_csv_text(pl.concat([GOOD, extra])))
    [r] = ingest_files(db, [copy])
    assert (r.n_read, r.n_loaded, r.n_duplicate) == (6, 1, 5)
    assert _events(db).filter(pl.col("event_id") != "u9-0").equals(before)
    assert db.scalar("select count(*) from raw.manifest") == 2


def test_loading_a_then_b_equals_loading_both_at_once(tmp_path, cfg):
    frame = make_journeys({f"u{i}": [("page_view", 10 * j) for j in range(6)] for i in range(4)})
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(_csv_text(frame.head(13)))
    b.write_text(_csv_text(frame.tail(frame.height - 10)))  # overlaps a by three events
    one = Database(tmp_path / "one.duckdb")
    ingest_files(one, [a])
    build(one, cfg)
    ingest_files(one, [b])
    build(one, cfg)
    two = Database(tmp_path / "two.duckdb")
    ingest_files(two, [a, b])
    build(two, cfg)
    for table in ("staging.stg_events", "staging.stg_sessions", "staging.stg_users"):
        key = {"staging.stg_events": "event_id", "staging.stg_sessions": "session_key"}.get(table, "user_key")
        assert one.table(table).sort(key).equals(two.table(table).sort(key)), table
    assert one.scalar("select count(*) from raw.events") == frame.height


def test_a_failure_mid_file_leaves_the_database_as_it_was(db, tmp_path, monkeypatch):
    good = tmp_path / "good.csv"
    good.write_text(_csv_text(GOOD))
    ingest_files(db, [good])
    snapshot = {t: db.table(t) for t in ("raw.events", "raw.quarantine", "raw.manifest")}
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV)

    def boom(*args, **kwargs):
        raise OSError("disk full (injected after quarantine rows were written)")

    monkeypatch.setattr(ingest_mod, "_quarantine_rejects", boom)
    with pytest.raises(OSError):
        ingest_files(db, [bad])
    for table, before in snapshot.items():
        assert db.table(table).equals(before), table
    assert db.scalar("select count(*) from duckdb_tables() where table_name like '_ingest_%'") == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing_ts.csv", b"event_id,user_id,event_name\n1,u,x\n", "missing required column 'ts'"),
        ("no_identity.csv", b"ts,event_name\n2025-01-01,x\n", "no identity column"),
        ("notes.txt", b"hello", "unknown file type"),
        ("empty.csv", b"", "empty file"),
        ("array.json", b'[{"ts": "2025-01-01", "event_name": "x", "user_id": "u"}]', "not newline-delimited"),
        ("truncated.csv.gz", gzip.compress(b"ts,event_name,user_id\n" + b"2025-01-01,x,u\n" * 5000)[:200],
         "cannot be read"),
        ("broken.parquet", b"PAR1 not really parquet", "cannot be read"),
    ],
)
def test_unreadable_files_are_rejected_by_name_and_others_still_load(db, tmp_path, name, content, message):
    bad = tmp_path / name
    bad.write_bytes(content)
    good = tmp_path / "good.csv"
    good.write_text(_csv_text(GOOD))
    rejected, loaded = ingest_files(db, [bad, good])
    assert rejected.status == "rejected" and message in rejected.message and name in rejected.message
    assert loaded.status == "loaded" and loaded.n_loaded == 5
    assert db.scalar("select count(*) from raw.manifest") == 1


def test_column_map_and_declared_epoch_unit(db, tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("id,who,when_ms,what\nx1,u1,1736158272000,Page View\nx2,u1,1736158273500,view_item\n")
    [r] = ingest_files(db, [path], column_map={"event_id": "id", "user_id": "who", "ts": "when_ms",
                                               "event_name": "what"}, epoch_unit="ms")
    assert r.n_loaded == 2 and r.epoch_units == ["ms"]
    rows = db.query("select event_id, user_id, ts, event_name, raw_event_name, properties from raw.events "
                    "order by event_id").rows()
    assert rows[0][1:2] == ("u1",) and rows[0][3:5] == ("page_view", "Page View") and rows[0][5] is None
    assert (rows[1][2] - rows[0][2]).total_seconds() == 1.5


def test_events_without_id_get_a_deterministic_hash(db, tmp_path):
    path = tmp_path / "noid.csv"
    path.write_text("user_id,ts,event_name\nu1,2025-01-06 10:00:00,page_view\nu1,2025-01-06 10:00:00,page_view\n"
                    "u1,2025-01-06 10:00:01,page_view\n")
    [r] = ingest_files(db, [path])
    assert (r.n_loaded, r.n_duplicate) == (2, 1)
    ids = db.query("select event_id from raw.events")["event_id"].to_list()
    assert all(len(i) == 32 for i in ids)


def test_text_fields_are_trimmed_of_unicode_spaces_at_both_ends(db, tmp_path):
    nbsp, ideographic, thin = "\u00a0", "\u3000", "\u2009"
    frame = make_journeys({"u1": [("page_view", 0), ("view_item", 1), ("add_to_cart", 2)]}).with_columns(
        pl.Series("user_id", [f"  u1{nbsp}", f"{ideographic}u1", "u1 "]),
        pl.Series("event_name", [f" page_view{thin}", "view_item\t", f"{nbsp} "]),
        pl.Series("page_url", [f" https://shop.example.com/é{nbsp}", "https://shop.example.com/ ", "\tx"]),
        pl.lit(None, pl.Utf8).alias("raw_event_name"),  # read from event_name, as the source gave it
    )
    path = tmp_path / "padded.parquet"
    frame.write_parquet(path)
    [r] = ingest_files(db, [path])
    assert (r.n_loaded, r.n_quarantined) == (2, 1)  # an event name of spaces only is missing
    assert db.query("select user_id, raw_event_name, page_url from raw.events order by event_id").rows() == [
        ("u1", "page_view", "https://shop.example.com/é"),
        ("u1", "view_item\t", "https://shop.example.com/"),  # a tab is not a space separator
    ]
    [(row, field, reason, text)] = db.query(
        "select row_number, field, reason, original_text from raw.quarantine").rows()
    assert (row, field, reason) == (3, "event_name", "missing_value")
    # the Parquet file is read in place; the quarantined row's text is copied from it by row number
    assert json.loads(text)["event_id"] == "u1-2" and json.loads(text)["page_url"] == "\tx"


def test_the_trimmed_macro_is_trim_for_every_character_at_either_end(db):
    # trimmed (sql/ingest/macros.sql) passes values through without trim's copy when it can; every
    # code point from U+0001 (surrogates are not text), alone, before and after a letter, after a
    # non-ASCII letter and between spaces.
    db.execute(load_sql("ingest/macros.sql"))
    differ = db.scalar(
        "with points as (select chr(cast(i as integer)) as c from range(1, 1114112) as t(i) "
        "where i < 55296 or i > 57343), "
        "vals as (select c as v from points union all select c || 'a' from points "
        "union all select 'a' || c from points union all select 'é' || c from points "
        "union all select ' ' || c || ' ' from points union all select '' union all select null) "
        "select count(*) filter (where trimmed(v) is distinct from trim(v)) from vals"
    )
    assert differ == 0


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_cli_json_summary_and_exit_codes(tmp_path):
    good = tmp_path / "good.csv"
    good.write_text(_csv_text(GOOD))
    dbfile = tmp_path / "cli.duckdb"
    ok = _cli("ingest", str(good), "--db", str(dbfile), "--json", cwd=REPO)
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["totals"] == {"n_read": 5, "n_loaded": 5, "n_duplicate": 0, "n_quarantined": 0, "n_forgotten": 0,
                                 "n_files": 1, "n_rejected": 0}
    missing = _cli("ingest", str(tmp_path / "nope.csv"), "--db", str(dbfile), cwd=REPO)
    assert missing.returncode == 1 and "nope.csv: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
    usage = _cli("ingest", str(good), "--db", str(dbfile), "--epoch-unit", "hours", cwd=REPO)
    assert usage.returncode == 2 and "--epoch-unit" in usage.stderr
    built = _cli("build", "--db", str(dbfile), "--json", cwd=REPO)
    assert built.returncode == 0, built.stderr
    b = json.loads(built.stdout)
    # u2-0 is anonymous (a2) and nothing links a2 to u2, so that is a third journey
    assert (b["n_events"], b["n_users"], b["n_sessions"]) == (5, 3, 3)
    env_db = subprocess.run([sys.executable, "-m", "pipeline", "sessions", "--format", "json"], capture_output=True,
                            text=True, cwd=tmp_path, env={"JOURNEYS_DB": str(dbfile), "PATH": "/usr/bin:/bin"},
                            timeout=120)
    assert env_db.returncode == 0, env_db.stderr
    assert len(json.loads(env_db.stdout)) == 3
    no_db = _cli("build", "--db", str(tmp_path / "empty.duckdb"), cwd=REPO)
    assert no_db.returncode == 1 and "journeys ingest" in no_db.stderr


def test_a_database_named_like_a_schema_is_refused_with_one_line(tmp_path):
    from pipeline.db import DatabaseError

    with pytest.raises(DatabaseError, match="clashes with the schema or catalog 'raw'"):
        Database(tmp_path / "raw.duckdb")
