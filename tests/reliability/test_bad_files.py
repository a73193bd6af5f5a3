"""The bad-file corpus (tests/fixtures/bad_files/): each file loads exactly as MANIFEST.csv says.

Columns of the manifest: the file, the --format it is loaded with, the expected status, the four
counts, the quarantine reasons (``reason=n;...``), the event ids that must be loaded (``|``-separated,
when checked), the epoch units reported, a substring of the message, and why that outcome is right.
Every file is loaded into its own fresh database; a rejected file leaves no row anywhere.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter

import pytest

from pipeline.db import Database
from pipeline.ingest import ingest_files
from tests.reliability.helpers import REPO, check_invariants

BAD = REPO / "tests" / "fixtures" / "bad_files"
NOW = dt.datetime(2025, 3, 1)
with open(BAD / "MANIFEST.csv", newline="", encoding="utf-8") as _handle:
    CASES = list(csv.DictReader(_handle))


def test_the_corpus_is_complete_and_regenerates_byte_for_byte():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_bad_files", BAD / "make_bad_files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made = module.files()
    assert len(made) >= 30 and sorted(made) == sorted(c["file"] for c in CASES)
    for name, data in made.items():
        assert (BAD / name).read_bytes() == data, f"{name} differs from make_bad_files.py"


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_bad_file_has_its_documented_outcome(case, tmp_path):
    db_path = tmp_path / "bad.duckdb"
    with Database(db_path) as db:
        [result] = ingest_files(db, [BAD / case["file"]], fmt=case["format"], now=NOW)
        assert result.status == case["status"], result.message
        counts = (result.n_read, result.n_loaded, result.n_duplicate, result.n_quarantined)
        assert counts == tuple(int(case[k]) for k in ("n_read", "n_loaded", "n_duplicate", "n_quarantined"))
        assert case["message"] in result.message
        assert "\n" not in result.message
        reasons = Counter(db.query("select reason from raw.quarantine")["reason"].to_list())
        expected = Counter({k: int(v) for k, v in (p.split("=") for p in case["reasons"].split(";") if p)})
        assert reasons == expected
        if case["event_ids"]:
            loaded = sorted(db.query("select event_id from raw.events")["event_id"])
            assert loaded == sorted(case["event_ids"].split("|"))
        assert sorted(result.epoch_units) == sorted(u for u in case["epoch_units"].split("|") if u)
        if result.status == "rejected":
            assert db.scalar("select count(*) from raw.events") == 0
            assert db.scalar("select count(*) from raw.manifest") == 0
    check_invariants(db_path)
