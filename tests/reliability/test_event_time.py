"""Event time: late, duplicated, out-of-order and future-dated events, clock skew, DST and offsets.

The defined behaviour, one test each:

- **Late** events (a file bringing events of days already built) are merged by the next
  incremental build, which equals a full build; a late event that fills a gap joins two sessions.
- **Duplicates**: the same event_id again (another file, or twice in one file) is stored once and
  counted as ``n_duplicate``; of two rows with one id in a file the first is kept.
- **Out of order** rows in a file give the same events and sessions as sorted rows.
- **Future** events later than load time + ``ingest.future_tolerance_hours`` are quarantined with
  reason ``future_timestamp``, never trusted; an event exactly at the limit is loaded.
- **Clock skew** (Segment): ``timestamp`` is corrected by ``receivedAt - sentAt`` when there is no
  ``originalTimestamp``, so a device clock two days ahead is neither future nor misplaced; without
  ``sentAt`` the skewed event is flagged as future.
- **Offsets and DST**: times with an offset (``+02:00``, ``+0530``, ``Z``) are converted to UTC; naive
  times are UTC; a zone name is applied with its rules (ICU): a local time in the spring-forward gap
  moves forward by the gap, an ambiguous autumn time takes the standard-time (second) occurrence;
  sessions are cut on UTC gaps, so the DST jump never splits or merges a session.
"""

from __future__ import annotations

import datetime as dt
import json
import random

import polars as pl

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files
from tests.reliability.helpers import digests

NOW = dt.datetime(2025, 3, 31, 12, 0, 0)
HEADER = ["event_id", "user_id", "anonymous_id", "ts", "event_name", "page_url"]


def _csv(path, rows):
    pl.DataFrame([dict(zip(HEADER, r, strict=True)) for r in rows], schema={c: pl.Utf8 for c in HEADER}).write_csv(path)
    return path


def _ts(db, event_id):
    return db.scalar("select ts from raw.events where event_id = $e", {"e": event_id})


def test_late_events_are_merged_by_the_next_incremental_build(tmp_path):
    early = _csv(tmp_path / "day1.csv", [
        ("a1", "u1", None, "2025-01-06T09:00:00Z", "page_view", None),
        ("a2", "u1", None, "2025-01-06T09:40:00Z", "view_item", None),  # 40 min later: a second session
        ("b1", "u2", None, "2025-01-06T10:00:00Z", "page_view", None),
    ])
    late = _csv(tmp_path / "day3.csv", [
        ("a3", "u1", None, "2025-01-06T09:20:00Z", "view_item", None),  # late: fills the gap
        ("c1", "u3", None, "2025-01-08T10:00:00Z", "page_view", None),
    ])
    with Database(tmp_path / "inc.duckdb") as db:
        ingest_files(db, [early], now=NOW)
        build(db, config.defaults())
        assert db.scalar("select count(*) from staging.stg_sessions where user_key = 'u1'") == 2
        ingest_files(db, [late], now=NOW)
        assert build(db, config.defaults()).mode == "incremental"
        assert db.scalar("select count(*) from staging.stg_sessions where user_key = 'u1'") == 1
    with Database(tmp_path / "full.duckdb") as db:
        ingest_files(db, [early, late], now=NOW)
        build(db, config.defaults(), "full")
    assert digests(tmp_path / "inc.duckdb", ("staging", "marts")) == digests(tmp_path / "full.duckdb",
                                                                                ("staging", "marts"))


def test_duplicates_are_stored_once_and_counted(tmp_path):
    one = _csv(tmp_path / "one.csv", [
        ("e1", "u1", None, "2025-01-06T09:00:00Z", "page_view", "https://x/first"),
        ("e1", "u1", None, "2025-01-06T09:00:00Z", "page_view", "https://x/second"),  # same id, in-file
        ("e2", "u1", None, "2025-01-06T09:01:00Z", "view_item", None),
    ])
    two = _csv(tmp_path / "two.csv", [
        ("e2", "u1", None, "2025-01-06T09:01:00Z", "view_item", None),  # again, in a later file
        ("e3", "u1", None, "2025-01-06T09:02:00Z", "add_to_cart", None),
    ])
    with Database(tmp_path / "d.duckdb") as db:
        first, second = ingest_files(db, [one, two], now=NOW)
        assert (first.n_read, first.n_loaded, first.n_duplicate) == (3, 2, 1)
        assert (second.n_read, second.n_loaded, second.n_duplicate) == (2, 1, 1)
        assert db.scalar("select page_url from raw.events where event_id = 'e1'") == "https://x/first"
        assert db.scalar("select count(*) from raw.events") == 3


def test_rows_out_of_order_give_the_same_events_and_sessions(tmp_path):
    rows = [(f"e{i}", f"u{i % 7}", None, (dt.datetime(2025, 1, 6) + dt.timedelta(minutes=13 * i)).isoformat() + "Z",
             random.Random(i).choice(["page_view", "view_item", "add_to_cart"]), None) for i in range(300)]
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    for name, data in (("sorted", rows), ("shuffled", shuffled)):
        with Database(tmp_path / f"{name}.duckdb") as db:
            ingest_files(db, [_csv(tmp_path / f"{name}.csv", data)], now=NOW)
            build(db, config.defaults())
    skip = ("build_log", "events", "quarantine", "manifest")  # raw.events.row_number follows the file order
    assert digests(tmp_path / "sorted.duckdb", ("staging", "marts"), skip) == digests(
        tmp_path / "shuffled.duckdb", ("staging", "marts"), skip)
    with Database(tmp_path / "sorted.duckdb") as a, Database(tmp_path / "shuffled.duckdb") as b:
        cols = "* exclude (file_id, row_number)"
        assert a.query(f"select {cols} from raw.events order by event_id").equals(  # noqa: S608
            b.query(f"select {cols} from raw.events order by event_id"))  # noqa: S608


def test_future_events_beyond_the_tolerance_are_quarantined(tmp_path):
    limit = NOW + dt.timedelta(hours=24)
    path = _csv(tmp_path / "f.csv", [
        ("ok", "u1", None, NOW.isoformat() + "Z", "page_view", None),
        ("at_limit", "u1", None, limit.isoformat() + "Z", "page_view", None),
        ("beyond", "u1", None, (limit + dt.timedelta(seconds=1)).isoformat() + "Z", "page_view", None),
        ("year_3000", "u1", None, "3000-01-01T00:00:00Z", "page_view", None),
    ])
    with Database(tmp_path / "f.duckdb") as db:
        [result] = ingest_files(db, [path], now=NOW, future_tolerance_hours=24)
        assert (result.n_loaded, result.n_quarantined) == (2, 2)
        assert db.query("select field, reason from raw.quarantine order by row_number").rows() == [
            ("ts", "future_timestamp"), ("ts", "future_timestamp")]
        assert sorted(db.query("select event_id from raw.events")["event_id"]) == ["at_limit", "ok"]
    with Database(tmp_path / "g.duckdb") as db:  # a tolerance of zero: even one second ahead is future
        [result] = ingest_files(db, [path], now=NOW, future_tolerance_hours=0)
        assert (result.n_loaded, result.n_quarantined) == (1, 3)


def _segment(message_id, timestamp, sent_at=None, received_at=None, original=None):
    call = {"messageId": message_id, "type": "track", "event": "Product Viewed", "userId": "u1",
            "timestamp": timestamp, "properties": {"product_id": "p1"}}
    for key, value in (("sentAt", sent_at), ("receivedAt", received_at), ("originalTimestamp", original)):
        if value is not None:
            call[key] = value
    return json.dumps(call)


def test_segment_clock_skew_is_corrected_and_uncorrectable_skew_is_flagged(tmp_path):
    path = tmp_path / "segment.ndjson"
    path.write_text("\n".join([
        # device clock 2 days ahead: timestamp and sentAt both skewed, receivedAt is the server's
        _segment("skewed", "2025-04-02T11:59:00Z", "2025-04-02T12:00:00Z", "2025-03-31T12:00:00Z"),
        # Segment already corrected it (originalTimestamp present): timestamp used as is
        _segment("corrected", "2025-03-31T11:59:00Z", "2025-04-02T12:00:00Z", "2025-03-31T12:00:00Z",
                 "2025-04-02T11:59:00Z"),
        # skewed and no sentAt: nothing to correct with, so it is future, not trusted
        _segment("uncorrectable", "2025-04-02T11:59:00Z"),
    ]) + "\n")
    with Database(tmp_path / "s.duckdb") as db:
        [result] = ingest_files(db, [path], now=NOW, future_tolerance_hours=1)
        assert (result.format, result.n_loaded, result.n_quarantined) == ("segment", 2, 1)
        assert _ts(db, "skewed") == dt.datetime(2025, 3, 31, 11, 59)
        assert _ts(db, "corrected") == dt.datetime(2025, 3, 31, 11, 59)
        assert db.scalar("select reason from raw.quarantine") == "future_timestamp"


def test_offsets_and_daylight_saving_are_converted_to_utc(tmp_path):
    path = _csv(tmp_path / "tz.csv", [
        ("offset", "u1", None, "2025-03-30T02:30:00+02:00", "page_view", None),
        ("compact_offset", "u1", None, "2025-01-06T09:00:00+0530", "page_view", None),
        ("zulu", "u1", None, "2025-01-06T09:00:00Z", "page_view", None),
        ("naive", "u1", None, "2025-01-06 09:00:00", "page_view", None),
        ("zone", "u1", None, "2025-01-06 09:00:00 America/New_York", "page_view", None),
        ("spring_gap", "u1", None, "2025-03-30 02:30:00 Europe/Berlin", "page_view", None),
        ("autumn_twice", "u1", None, "2024-10-27 02:30:00 Europe/Berlin", "page_view", None),
        ("unknown_zone", "u1", None, "2025-01-06 09:00:00 Mars/Olympus", "page_view", None),
        # 20 real minutes across the spring-forward jump, written in local offsets: one session
        ("before_jump", "u2", None, "2025-03-30T01:55:00+01:00", "page_view", None),
        ("after_jump", "u2", None, "2025-03-30T03:15:00+02:00", "view_item", None),
    ])
    with Database(tmp_path / "tz.duckdb") as db:
        [result] = ingest_files(db, [path], now=NOW)
        expected = {
            "offset": dt.datetime(2025, 3, 30, 0, 30), "compact_offset": dt.datetime(2025, 1, 6, 3, 30),
            "zulu": dt.datetime(2025, 1, 6, 9), "naive": dt.datetime(2025, 1, 6, 9),
            "zone": dt.datetime(2025, 1, 6, 14), "spring_gap": dt.datetime(2025, 3, 30, 1, 30),
            "autumn_twice": dt.datetime(2024, 10, 27, 1, 30), "before_jump": dt.datetime(2025, 3, 30, 0, 55),
            "after_jump": dt.datetime(2025, 3, 30, 1, 15),
        }
        assert {e: _ts(db, e) for e in expected} == expected
        assert db.query("select field, reason from raw.quarantine").rows() == [("ts", "invalid_timestamp")]
        assert result.n_quarantined == 1
        build(db, config.defaults())
        assert db.scalar("select count(*) from staging.stg_sessions where user_key = 'u2'") == 1
