"""Concurrent writers and readers: the run lock and DuckDB's own file lock.

- Several ``journeys run`` started together: exactly one proceeds; every other one exits at once with
  exit code 3 and one line naming the lock, having done nothing (``raw.runs`` has one row).
- A notebook holding a read-only connection while a run starts: the run stops with one line naming
  the database and the process that holds it (exit code 1) and writes nothing; the notebook keeps
  reading the same data. The other way round (a run writing while a notebook opens the file) the
  notebook gets one line too (``DatabaseError``). Neither side corrupts the database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import polars as pl
import pytest

from pipeline.db import Database, DatabaseError
from tests.reliability.conftest import copy_db
from tests.reliability.helpers import REPO, check_invariants, cli, env

N_RUNS = 4


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_runs_started_together_one_proceeds_the_others_exit_at_once(tmp_path, sim_files):
    landing = tmp_path / "landing"
    landing.mkdir()
    for f in sim_files:  # each week twice (gzip and plain CSV: other bytes, the same events) for a longer run
        shutil.copy(f, landing / f.name)
        pl.read_csv(f, infer_schema=False).write_csv(landing / f.name.replace(".csv.gz", "_copy.csv"))
    db_path = tmp_path / "j.duckdb"
    args = ["-m", "pipeline", "run", "--landing", str(landing), "--db", str(db_path), "--no-report"]
    procs = [
        subprocess.Popen([sys.executable, *args], cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for _ in range(N_RUNS)
    ]
    started = time.monotonic()
    finished = {}
    while len(finished) < N_RUNS:
        for i, p in enumerate(procs):
            if i not in finished and p.poll() is not None:
                finished[i] = time.monotonic() - started
        time.sleep(0.01)
    outputs = [p.communicate() for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0] + [3] * (N_RUNS - 1), (codes, [e for _, e in outputs])
    winner = codes.index(0)
    for i, (out, err) in enumerate(outputs):
        if i == winner:
            assert f"run 1 ok: {2 * len(sim_files)} new of {2 * len(sim_files)} files" in out
            continue
        lines = _error_lines(err)
        assert len(lines) == 1 and lines[0].startswith("locked: another journeys run holds"), err
        assert str(db_path) in lines[0] and out == ""
        assert finished[i] < finished[winner], "a locked-out run waited for the winner"
    counts = check_invariants(db_path)
    assert counts["files"] == 2 * len(sim_files)
    with Database(db_path, read_only=True) as db:
        assert db.scalar("select count(*) from raw.runs") == 1


def test_a_notebook_reading_during_a_run_gets_one_clear_line_and_no_corruption(tmp_path, reference_db, sim_files):
    db_path = copy_db(reference_db, tmp_path / "j.duckdb")
    landing = tmp_path / "landing"
    landing.mkdir()
    with Database(db_path) as db:  # a new file waits in the landing folder
        n_before = db.scalar("select count(*) from raw.events")
    shutil.copy(sim_files[0], landing / "again.csv.gz")  # same content: already loaded
    notebook = Database(db_path, read_only=True)
    try:
        blocked = cli("run", "--landing", str(landing), "--db", str(db_path), "--no-report")
        lines = _error_lines(blocked.stderr)
        assert blocked.returncode == 1 and len(lines) == 1, blocked.stderr
        assert lines[0].startswith("error: ") and str(db_path.name) in lines[0]
        assert f"PID {os.getpid()}" in lines[0] and "lock" in lines[0].lower()
        assert notebook.scalar("select count(*) from raw.events") == n_before
    finally:
        notebook.close()
    check_invariants(db_path)
    ok = cli("run", "--landing", str(landing), "--db", str(db_path), "--no-report")
    assert ok.returncode == 0, ok.stderr


def test_a_notebook_opening_while_a_run_writes_gets_one_clear_line(tmp_path, reference_db):
    db_path = copy_db(reference_db, tmp_path / "j.duckdb")
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom pipeline.db import Database\ndb = Database(sys.argv[1])\n"
         "print('open', flush=True)\ntime.sleep(30)", str(db_path)],
        cwd=REPO, env=env(), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "open"
        with pytest.raises(DatabaseError) as err:
            Database(db_path, read_only=True)
        message = str(err.value)
        assert "\n" not in message and str(db_path.name) in message and f"PID {writer.pid}" in message
    finally:
        writer.kill()
        writer.wait()
    check_invariants(db_path)
