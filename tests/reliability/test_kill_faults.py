"""kill -9 at random moments: mid-ingest, mid-build (full and incremental), mid-report, mid-export.

Each trial runs the real CLI (``pipeline.cli.main``) in a child process, waits until the child has
imported what it needs (it prints ``ready``), sleeps a random delay drawn from the duration of the
same work done uninterrupted, and SIGKILLs the child's process group. Then:

- the database opens and every invariant holds (``helpers.check_invariants``): manifest counts equal
  the rows of each file in raw.events + raw.quarantine, no duplicate event_id, staging consistent;
- running the same work again gives tables identical to the uninterrupted run (the ``reference``
  fixture): nothing lost, nothing counted twice;
- report and export files are either the old complete file or a new complete one, never truncated.

Trials: 10 ingest + 10 build (5 full, 5 incremental) = 20, and 10 writes: 2 ``journeys report``
(killed late, when it writes), 4 ``journeys export`` and 4 ``atomic_write`` of a 64 MB payload (the
write itself is the window). The random generators are seeded: a failing trial is reproducible.
"""

from __future__ import annotations

import random
import subprocess
import sys

import polars as pl

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files
from tests.reliability.conftest import copy_db
from tests.reliability.helpers import check_invariants, digests, env, kill_after, start_cli, timed_run

INGEST = ("pipeline.ingest",)
BUILD = ("pipeline.build",)
N_INGEST, N_BUILD_FULL, N_BUILD_INCREMENTAL = 10, 5, 5
N_REPORT, N_EXPORT, N_ATOMIC = 2, 4, 4


def test_kill_during_ingest_loses_and_duplicates_nothing(tmp_path, sim_files, reference):
    expected = digests(reference.path, ("raw",))
    args = ["ingest", *map(str, sim_files)]
    rng = random.Random(1)
    landed = partial = 0
    for trial in range(N_INGEST):
        db_path = tmp_path / f"ingest{trial}.duckdb"
        proc = start_cli([*args, "--db", str(db_path)], INGEST)
        delay = rng.uniform(0.02, 0.9 * reference.ingest_seconds)
        landed += kill_after(proc, delay)
        counts = check_invariants(db_path) if db_path.exists() else {"files": 0}
        partial += 0 < counts["files"] < len(sim_files)
        with Database(db_path) as db:  # the next run: loads what is missing, skips what is there
            results = ingest_files(db, sim_files)
        assert {r.status for r in results} <= {"loaded", "already_loaded"}
        assert sum(r.status == "already_loaded" for r in results) == counts["files"], f"trial {trial}"
        check_invariants(db_path)
        assert digests(db_path, ("raw",)) == expected, f"trial {trial} (killed after {delay:.2f}s)"
    assert landed >= 0.8 * N_INGEST, f"only {landed} of {N_INGEST} kills landed while the ingest was running"
    assert partial >= 2, f"only {partial} kills landed between two files"


def test_kill_during_build_keeps_the_previous_tables(tmp_path, sim_files, reference):
    expected = digests(reference.path, ("staging", "marts"))
    # Full-build base: everything loaded, nothing built. Incremental base: all but the last file
    # built, the last one loaded since (the next build recomputes only the users it touches).
    full_base = tmp_path / "full_base.duckdb"
    with Database(full_base) as db:
        ingest_files(db, sim_files)
    incremental_base = tmp_path / "incremental_base.duckdb"
    with Database(incremental_base) as db:
        ingest_files(db, sim_files[:-1])
        build(db, config.defaults(), "full")
        ingest_files(db, sim_files[-1:])
    with Database(copy_db(incremental_base, tmp_path / "incremental_timed.duckdb")) as db:
        summary = build(db, config.defaults())
    assert summary.mode == "incremental"
    assert digests(tmp_path / "incremental_timed.duckdb", ("staging", "marts")) == expected
    windows = {"full": reference.build_seconds, "incremental": sum(summary.seconds.values())}
    rng = random.Random(2)
    landed = 0
    for mode, base, n in (("full", full_base, N_BUILD_FULL), ("incremental", incremental_base, N_BUILD_INCREMENTAL)):
        before = digests(base, ("staging", "marts"))
        for trial in range(n):
            db_path = copy_db(base, tmp_path / f"{mode}{trial}.duckdb")
            proc = start_cli(["build", "--db", str(db_path)], BUILD)
            delay = rng.uniform(0.02, 0.9 * max(windows[mode], 0.2))
            landed += kill_after(proc, delay)
            check_invariants(db_path)
            after_kill = digests(db_path, ("staging", "marts"))
            assert after_kill in (before, expected), f"{mode} trial {trial}: a half-built state after {delay:.2f}s"
            with Database(db_path) as db:
                build(db, config.defaults())
            check_invariants(db_path)
            assert digests(db_path, ("staging", "marts")) == expected, f"{mode} trial {trial}"
    assert landed >= 0.7 * (N_BUILD_FULL + N_BUILD_INCREMENTAL), f"only {landed} kills landed while building"


def _complete_report(data: bytes) -> bool:
    return data.rstrip().endswith(b"</html>") and len(data) > 100_000


def test_kill_while_writing_the_report_leaves_the_old_or_the_new_file(tmp_path, reference_db):
    out = tmp_path / "reports"
    out.mkdir()
    old = b"<!doctype html><html><body>the previous report</body></html>\n"
    work = timed_run(["report", "--db", str(reference_db), "--out", str(tmp_path / "timed")], ("pipeline.report",))
    names = ["report.html", *sorted(p.name for p in (tmp_path / "timed").glob("report-*.html"))]
    rng = random.Random(3)
    for trial in range(N_REPORT):
        for name in names:
            (out / name).write_bytes(old)
        proc = start_cli(["report", "--db", str(reference_db), "--out", str(out)], ("pipeline.report",))
        kill_after(proc, rng.uniform(0.8, 1.0) * work)  # late: when the files are being written
        for name in names:
            data = (out / name).read_bytes()
            assert data == old or _complete_report(data), f"trial {trial}: {name} is truncated ({len(data)} bytes)"
        assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == set(names)


def test_kill_while_exporting_leaves_the_old_or_the_new_file(tmp_path, reference_db):
    out = tmp_path / "exports"
    out.mkdir()
    tables = ["stg_events", "stg_touchpoints", "stg_sessions"]
    with Database(reference_db, read_only=True) as db:
        rows = {t: int(db.scalar(f"select count(*) from staging.{t}")) for t in tables}  # noqa: S608
    old = "old,export\n1,2\n"
    args = ["export", *tables, "--format", "csv", "--db", str(reference_db)]
    work = timed_run([*args, "--out", str(tmp_path / "timed")], ("pipeline.export",))
    rng = random.Random(4)
    n_new = 0
    for trial in range(N_EXPORT):
        for t in tables:
            (out / f"{t}.csv").write_text(old)
        proc = start_cli([*args, "--out", str(out)], ("pipeline.export",))
        kill_after(proc, rng.uniform(0.01, work))
        for t in tables:
            text = (out / f"{t}.csv").read_text()
            if text != old:  # the new file, whole: header + every row, ending in a newline
                n_new += 1
                frame = pl.read_csv(out / f"{t}.csv", infer_schema=False)
                assert frame.height == rows[t] and text.endswith("\n"), f"trial {trial}: {t}.csv is truncated"
    assert n_new < N_EXPORT * len(tables), "no kill landed before an export finished"


_ATOMIC_CHILD = """
import sys
from pathlib import Path
from pipeline.files import atomic_write
payload = ("<p>" + "x" * 1000 + "</p>\\n") * 64_000 + "</html>\\n"
sys.stderr.write("ready\\n"); sys.stderr.flush()
atomic_write(Path(sys.argv[1]), payload)
"""


def test_kill_during_a_large_atomic_write_never_leaves_a_truncated_file(tmp_path):
    target = tmp_path / "report.html"
    old = "<html>old</html>\n"
    rng = random.Random(5)
    for trial in range(N_ATOMIC):
        target.write_text(old)
        proc = subprocess.Popen([sys.executable, "-c", _ATOMIC_CHILD, str(target)], env=env(),
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stderr.readline().strip() == "ready"
        kill_after(proc, rng.uniform(0.0, 0.15))
        text = target.read_text()
        assert text == old or (text.endswith("</html>\n") and len(text) > 64_000_000), f"trial {trial}: truncated"
        hidden = [p for p in tmp_path.iterdir() if p != target]
        assert all(p.name.startswith(".report.html.") for p in hidden)  # a killed writer's temp file, hidden
        for p in hidden:
            p.unlink()
