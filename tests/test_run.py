"""journeys run: new files only, run history, the lock, exit codes (real processes, real files)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys

import polars as pl

from tests.conftest import REPO, make_journeys


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=180)


def _write(path, frame: pl.DataFrame) -> None:
    frame.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).write_csv(path)


def test_run_picks_up_new_files_and_keeps_history(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    dbfile = tmp_path / "j.duckdb"
    _write(landing / "day1.csv", make_journeys({"u1": [("view_item", 0), ("purchase", 1)]}))
    first = _cli("run", "--landing", str(landing), "--db", str(dbfile), "--out", str(tmp_path / "rep"), "--json")
    assert first.returncode == 0, first.stderr
    one = json.loads(first.stdout)
    assert (one["run_id"], one["n_new_files"], one["n_loaded"], one["n_events"]) == (1, 1, 2, 2)
    assert (tmp_path / "rep" / "report.html").is_file()
    _write(landing / "day2.csv", make_journeys({"u2": [("view_item", 0)]}))
    (landing / "notes.txt").write_text("not data")  # ignored: not a loadable file type
    second = json.loads(_cli("run", "--landing", str(landing), "--db", str(dbfile), "--no-report", "--json").stdout)
    assert (second["run_id"], second["n_files"], second["n_new_files"], second["n_events"]) == (2, 2, 1, 3)
    third = _cli("run", "--landing", str(landing), "--db", str(dbfile), "--no-report")
    assert third.returncode == 0 and "0 new of 2 files" in third.stdout
    history = _cli("sessions", "--db", str(dbfile), "--format", "json")
    assert history.returncode == 0 and len(json.loads(history.stdout)) == 2


def test_a_second_run_exits_at_once_while_the_lock_is_held(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    dbfile = tmp_path / "j.duckdb"
    handle = os.open(f"{dbfile}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running batch would
    try:
        blocked = _cli("run", "--landing", str(landing), "--db", str(dbfile))
    finally:
        os.close(handle)
    assert blocked.returncode == 3 and "another journeys run holds" in blocked.stderr
    assert not dbfile.exists()  # it did nothing


def test_rejected_file_gives_exit_1_and_is_recorded(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "bad.csv").write_text("a,b\n1,2\n")
    _write(landing / "good.csv", make_journeys({"u1": [("view_item", 0)]}))
    dbfile = tmp_path / "j.duckdb"
    out = _cli("run", "--landing", str(landing), "--db", str(dbfile), "--no-report")
    assert out.returncode == 1 and "bad.csv: missing required column" in out.stderr
    assert "partial" in out.stdout
