"""Order invariance and the dedupe algebra of loading, property-based.

For generated sets of events (with exact duplicates and events without an id):

- shuffling the rows and re-splitting them over any number of files gives identical tables
  (raw.events without the file/row it came from, every staging and mart table);
- loading A then B (two calls, a build in between) equals loading A and B in one call;
- loading A twice equals loading A once: the same file, a renamed copy (same content: skipped by
  hash) and the same events written in another container (NDJSON instead of CSV: all duplicates).
"""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files
from tests.reliability.helpers import digests

T0 = dt.datetime(2025, 1, 6, 9)
NOW = dt.datetime(2025, 3, 1)
NAMES = ["page_view", "view_item", "add_to_cart", "begin_checkout", "purchase"]
WHERE_FROM = ("file_id", "row_number")

events_strategy = st.lists(
    st.tuples(
        st.integers(0, 12),  # user
        st.integers(0, 60 * 24 * 5),  # minute
        st.sampled_from(NAMES),
        st.booleans(),  # has an event id (else the hash of its fields)
        st.booleans(),  # identified (user_id) or anonymous (anonymous_id)
    ),
    min_size=1, max_size=120,
)


def _frame(events, n_copies: list[int]) -> pl.DataFrame:
    rows = []
    for i, ((user, minute, name, has_id, known), copies) in enumerate(zip(events, n_copies, strict=True)):
        row = {
            "event_id": f"e{i}" if has_id else None, "user_id": f"u{user}" if known else None,
            "anonymous_id": f"a{user}", "ts": (T0 + dt.timedelta(minutes=minute)).isoformat() + "Z",
            "event_name": name, "revenue": "12.50" if name == "purchase" else None,
            "page_url": f"https://shop.example.com/p/{user}",
        }
        rows += [row] * copies
    return pl.DataFrame(rows, schema={k: pl.Utf8 for k in ("event_id", "user_id", "anonymous_id", "ts", "event_name",
                                                              "revenue", "page_url")})


def _load(db_path, batches, fmt="csv"):
    """Each batch is one call of ingest_files (a list of frames, one file each), then a build."""
    with Database(db_path) as db:
        for b, frames in enumerate(batches):
            paths = []
            for f, frame in enumerate(frames):
                path = db_path.parent / f"{db_path.stem}-{b}-{f}.{fmt}"
                frame.write_csv(path) if fmt == "csv" else frame.write_ndjson(path)
                paths.append(path)
            results = ingest_files(db, paths, now=NOW)
            assert all(r.status in ("loaded", "already_loaded") for r in results)
            build(db, config.defaults())
    return digests(db_path, exclude=WHERE_FROM, skip=("build_log", "runs", "manifest"))


@settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(events=events_strategy, seed=st.integers(0, 2**32 - 1), n_files=st.integers(1, 5))
def test_shuffled_or_resplit_input_gives_identical_tables(tmp_path_factory, events, seed, n_files):
    rng = random.Random(seed)
    frame = _frame(events, [rng.choice([1, 1, 1, 2, 3]) for _ in events])
    tmp = tmp_path_factory.mktemp("order")
    one = _load(tmp / "one.duckdb", [[frame]])
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=seed)
    cuts = sorted(rng.sample(range(1, shuffled.height), min(n_files - 1, shuffled.height - 1)))
    parts = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, shuffled.height], strict=True)]
    assert _load(tmp / "split.duckdb", [parts]) == one


@settings(max_examples=4, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(events=events_strategy, seed=st.integers(0, 2**32 - 1))
def test_a_then_b_equals_a_and_b_together(tmp_path_factory, events, seed):
    rng = random.Random(seed)
    frame = _frame(events, [rng.choice([1, 1, 2]) for _ in events])
    cut = rng.randrange(0, frame.height + 1)
    a, b = frame[:cut], frame[cut:]
    a = pl.concat([a, b.sample(n=min(3, b.height), seed=seed)])  # some of B's events already in A
    tmp = tmp_path_factory.mktemp("ab")
    a_then_b = _load(tmp / "seq.duckdb", [[a], [b]])
    together = _load(tmp / "together.duckdb", [[a, b]])
    assert a_then_b == together


@settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(events=events_strategy)
def test_loading_a_twice_equals_loading_it_once(tmp_path_factory, events):
    frame = _frame(events, [1] * len(events))
    tmp = tmp_path_factory.mktemp("twice")
    once = _load(tmp / "once.duckdb", [[frame]])
    assert _load(tmp / "twice.duckdb", [[frame], [frame]]) == once  # same content again: skipped
    as_ndjson = _load(tmp / "ndjson.duckdb", [[frame]])  # first as CSV
    with Database(tmp / "ndjson.duckdb") as db:  # the same events again, as NDJSON: all duplicates
        frame.write_ndjson(tmp / "again.ndjson")
        [again] = ingest_files(db, [tmp / "again.ndjson"], now=NOW)
        assert (again.n_read, again.n_loaded, again.n_duplicate) == (frame.height, 0, frame.height)
        build(db, config.defaults())
    assert digests(tmp / "ndjson.duckdb", exclude=WHERE_FROM, skip=("build_log", "runs", "manifest")) == as_ndjson
    assert as_ndjson == once
