"""Hostile input, property-based: at least 10,000 generated malformed rows per input format.

For each format (canonical CSV, NDJSON and Parquet; the GA4, Segment, Snowplow and REES46 adapters)
hypothesis draws a seed and a pool of hostile strings; ``tests/reliability/hostile.py`` expands them
into a file of 2,000 rows, most broken in exactly one way, with the outcome each row must have.
Loading the file must raise nothing, load every good row (by event id where the format has one),
quarantine every bad row with its reason (the multiset of reasons is exact), count duplicates, and
keep ``n_read = n_loaded + n_duplicate + n_quarantined`` exactly. 7 examples x 2,000 rows per
format, ~80% of them quarantined; the test asserts that the quarantined rows reach 10,000.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.db import Database
from pipeline.ingest import ingest_files
from pipeline.schema import QUARANTINE_REASONS
from tests.reliability.hostile import NOW, PAYLOADS, WRITERS, Recipe

ROWS_PER_FILE = 2_000
EXAMPLES = 7
MIN_MALFORMED = 10_000

hostile_text = st.one_of(
    st.sampled_from(PAYLOADS),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Po", "Ps", "Pe", "So"]),
            max_size=80),
)


@pytest.mark.parametrize("name", list(WRITERS))
def test_malformed_rows_are_quarantined_good_rows_load_and_accounting_is_exact(name, tmp_path_factory):
    filename, fmt, write = WRITERS[name]
    generated = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(seed=st.integers(0, 2**32 - 1), pool=st.lists(hostile_text, max_size=8))
    def check(seed, pool):
        path = tmp_path_factory.mktemp(name) / filename
        expected = write(Recipe(seed, pool, ROWS_PER_FILE), path)
        with Database(":memory:") as db:
            [result] = ingest_files(db, [path], fmt=fmt, now=NOW)
            assert result.status == "loaded", result.message
            assert result.format == fmt
            got = (result.n_read, result.n_loaded, result.n_duplicate, result.n_quarantined)
            assert got == (expected.n_read, expected.n_loaded, expected.n_duplicate, expected.n_quarantined)
            assert result.n_read == result.n_loaded + result.n_duplicate + result.n_quarantined
            quarantine = db.query("select row_number, line_number, field, reason, original_text from raw.quarantine")
            assert Counter(quarantine["reason"].to_list()) == expected.reasons
            assert set(quarantine["reason"].to_list()) <= set(QUARANTINE_REASONS)
            assert quarantine.filter(
                quarantine["row_number"].is_null() & quarantine["line_number"].is_null()).height == 0
            assert quarantine["field"].null_count() == 0 and quarantine["original_text"].null_count() == 0
            if expected.loaded_ids:
                assert set(db.query("select event_id from raw.events")["event_id"]) == expected.loaded_ids
            assert db.scalar("select count(*) - count(distinct event_id) from raw.events") == 0
        generated["rows"] += expected.n_read
        generated["malformed"] += expected.n_quarantined

    check()
    assert generated["malformed"] >= MIN_MALFORMED, generated
