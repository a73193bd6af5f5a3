"""Fixtures of the reliability tests: one simulated clickstream and its reference database.

The dataset is made once per test session (the simulator is seeded, so it is the same every time)
and the reference database is loaded and built once, uninterrupted: the "uninterrupted run" every
fault test compares against. Tests copy the reference file instead of rebuilding it.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files

# ~14k events of 1,200 users in 5 weekly files: loading takes about a second and building about
# half of one (the windows the kills land in; the kill tests time them), small enough for 20 kill
# trials in well under a minute.
SIM = {"users": 1200, "days": 35, "seed": 7}


@pytest.fixture(scope="session")
def sim_files(tmp_path_factory) -> list[Path]:
    from pipeline.simulate import simulate, write_sample

    out = tmp_path_factory.mktemp("sim")
    return sorted(Path(p) for p in write_sample(simulate(**SIM), out))


@dataclass(frozen=True)
class Reference:
    path: Path  # do not write to it: copy it (copy_db)
    ingest_seconds: float  # the uninterrupted load of sim_files
    build_seconds: float  # the uninterrupted full build


@pytest.fixture(scope="session")
def reference(tmp_path_factory, sim_files) -> Reference:
    """The simulated files loaded and built without interruption, with the time each step took."""
    path = tmp_path_factory.mktemp("reference") / "reference.duckdb"
    with Database(path) as db:
        started = time.perf_counter()
        results = ingest_files(db, sim_files)
        ingested = time.perf_counter()
        assert all(r.status == "loaded" for r in results)
        build(db, config.defaults(), "full")
        built = time.perf_counter()
    return Reference(path, ingested - started, built - ingested)


@pytest.fixture(scope="session")
def reference_db(reference) -> Path:
    return reference.path


def copy_db(source: Path, target: Path) -> Path:
    shutil.copyfile(source, target)
    wal = Path(f"{source}.wal")
    if wal.exists():
        shutil.copyfile(wal, f"{target}.wal")
    return target
