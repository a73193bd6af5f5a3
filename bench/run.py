"""Benchmark: time each pipeline stage on generated data and print a table.

Reads nothing but what it generates (``bench/data/<size>/``, cached, git-ignored); writes
``bench/results/<size>.json``. Each stage runs in its own process so its peak RSS is its own.
Sizes: ``BENCH_SIZE=100k|1m|10m|100m`` (default ``1m``; several separated by commas).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000, "100m": 100_000_000}
EVENTS_PER_USER = 16.25  # measured on the simulator's defaults (97,484 events for 6,000 users)

STAGE_CODE = {
    "generate": (
        "from pipeline.simulate import simulate, write_sample; "
        "write_sample(simulate(users={users}, days=90, seed=7), {data!r}, fmt='parquet')"
    ),
    "duckdb_scan": (
        "from pipeline.db import Database; db = Database(':memory:'); "
        "db.scalar(\"select count(distinct user_id) + count(distinct session_id) from read_parquet($p)\", "
        "{{'p': {glob!r}}})"
    ),
    "pandas_baseline": (
        "import sys; sys.path.insert(0, {bench!r}); from baseline_pandas import run; run({glob!r})"
    ),
    "ingest": (
        "import glob; from pipeline.db import Database; from pipeline.ingest import ingest_files; "
        "db = Database({db!r}); ingest_files(db, sorted(glob.glob({glob!r}))); db.close()"
    ),
    "build": (
        "from pipeline import config; from pipeline.build import build; from pipeline.db import Database; "
        "db = Database({db!r}); build(db, config.defaults()); db.close()"
    ),
    "report": (
        "from pathlib import Path; from pipeline.db import Database; from pipeline.report import write_report; "
        "db = Database({db!r}, read_only=True); write_report(db, Path({db!r}).parent / 'report')"
    ),
    "transitions": (
        "from pipeline.db import Database; from pipeline.paths import PathOptions, transitions; "
        "db = Database({db!r}, read_only=True); transitions(db, PathOptions(scope='user', level='touchpoint'))"
    ),
}


def run_stage(name: str, **values: object) -> dict[str, float]:
    code = (
        "import resource, time; t = time.perf_counter(); "
        + STAGE_CODE[name].format(**values)
        + "; print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"stage {name} failed:\n{out.stderr}")
    seconds, rss_kb = out.stdout.split()[-2:]
    return {"seconds": float(seconds), "peak_rss_mb": int(rss_kb) / 1024}


def bench(size: str) -> dict[str, object]:
    n = SIZES[size]
    data = HERE / "data" / size
    db = data / "bench.duckdb"
    glob = str(data / "*.parquet")
    results: dict[str, object] = {}
    if not any(data.glob("*.parquet")):
        data.mkdir(parents=True, exist_ok=True)
        results["generate"] = run_stage("generate", users=int(n / EVENTS_PER_USER), data=str(data))
    for path in (db, Path(f"{db}.wal")):
        path.unlink(missing_ok=True)
    n_events = int(
        subprocess.run(
            [sys.executable, "-c",
             f"import polars as pl; print(pl.scan_parquet({glob!r}).select(pl.len()).collect().item())"],
            capture_output=True, text=True, check=True,
        ).stdout
    )
    for stage in ("duckdb_scan", "pandas_baseline", "ingest", "build", "transitions", "report"):
        results[stage] = run_stage(stage, db=str(db), glob=glob, bench=str(HERE))
    pipeline = ("ingest", "build", "transitions", "report")
    results["end_to_end"] = {
        "seconds": sum(results[s]["seconds"] for s in pipeline),  # type: ignore[index]
        "peak_rss_mb": max(results[s]["peak_rss_mb"] for s in pipeline),  # type: ignore[index]
    }
    return {"size": size, "n_events": n_events, "stages": results}


def main() -> None:
    sizes = os.environ.get("BENCH_SIZE", "1m").split(",")
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"BENCH_SIZE: unknown size {unknown[0]!r}; valid: {', '.join(SIZES)}")
    (HERE / "results").mkdir(exist_ok=True)
    print(f"{'size':>5} {'stage':<12} {'seconds':>8} {'events/s':>12} {'peak RSS MB':>12}")
    for size in sizes:
        started = time.time()
        report = bench(size)
        report.update(machine=platform.machine(), cpus=os.cpu_count(), python=platform.python_version(),
                      run_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)))
        for stage, r in report["stages"].items():  # type: ignore[union-attr]
            rate = report["n_events"] / r["seconds"] if stage != "generate" else float("nan")
            print(f"{size:>5} {stage:<12} {r['seconds']:>8.2f} {rate:>12,.0f} {r['peak_rss_mb']:>12,.0f}")
        (HERE / "results" / f"{size}.json").write_text(json.dumps(report, indent=1) + "\n")
        stages = report["stages"]
        floor = stages["duckdb_scan"]["seconds"]  # type: ignore[index]
        total = stages["end_to_end"]["seconds"]  # type: ignore[index]
        core = stages["build"]["seconds"] + stages["transitions"]["seconds"]  # type: ignore[index]
        pandas_s = stages["pandas_baseline"]["seconds"]  # type: ignore[index]
        print(f"{size:>5} {'ratio':<12} end-to-end / raw DuckDB scan = {total / floor:.1f}x; "
              f"pandas baseline (sessions, transitions, funnel, no validation) / our build+transitions = "
              f"{pandas_s / core:.2f}x")


if __name__ == "__main__":
    main()
