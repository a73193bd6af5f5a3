"""Benchmark: time each pipeline stage on generated data and print a table.

Reads nothing but what it generates (``bench/data/<size>/``, cached, git-ignored); writes
``bench/results/<size>.json``. Each stage runs in its own process so its peak RSS is its own.
Sizes: ``BENCH_SIZE=100k|1m|10m|100m`` (default ``1m``; several separated by commas); 100m is
generated as ten disjoint 10M chunks. ``BENCH_SKIP=stage,...`` skips stages (``incremental`` skips
the incremental pair); at 100m the pandas and retentioneering baselines are skipped by default.
``BENCH_MEMORY_LIMIT=6GB`` runs our stages with that ``[engine] memory_limit`` (DuckDB's cap, as a
project config sets it) and writes ``bench/results/<size>-memory-<limit>.json`` instead, so that a
run proving the memory target does not replace the uncapped figures.

The retentioneering stages run ``baseline_retentioneering.py`` with the python of their own venv
(``make bench`` builds them); a venv that is missing or a run that fails is reported as
"unavailable: <reason>" and the other stages go on. After the build, a check (not timed) compares
their funnel and transition counts with ours on the same definitions.
"""

from __future__ import annotations

import glob as globbing
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline import config

HERE = Path(__file__).resolve().parent
SIZES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000, "100m": 100_000_000}
EVENTS_PER_USER = 16.25  # measured on the simulator's defaults (97,484 events for 6,000 users)

# Above 10M the simulator's frame would not fit in memory (11.5 GB at 10M): bigger sizes are
# disjoint 10M chunks (seeds 7, 8, ...), their ids prefixed with the chunk number so that no user,
# session or event is shared, each chunk in its own folder.
CHUNK = 10_000_000
# Stages skipped by default at 100M: by extrapolation of their 10M peaks (9 GB, 4 GB) they would
# need about 90 GB and 40 GB here. BENCH_SKIP=stage,... skips others (e.g. report,incremental).
SKIP_AT = {"100m": {"pandas_baseline", "retentioneering"}}

STAGE_CODE = {
    "generate_chunk": (
        "import polars as pl; from pipeline.simulate import simulate, write_sample; "
        "ids = ('event_id', 'user_id', 'anonymous_id', 'session_id'); "
        "frame = simulate(users={users}, days=90, seed={seed}); "
        "frame = frame.with_columns([(pl.lit({prefix!r}) + pl.col(c)).alias(c) for c in ids]); "
        "write_sample(frame, {data!r}, fmt='parquet')"
    ),
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
        "db = Database({db!r}, memory_limit={memory_limit!r}); ingest_files(db, sorted(glob.glob({glob!r}))); "
        "db.close()"
    ),
    "build": (
        "from pipeline import config; from pipeline.build import build; from pipeline.db import Database; "
        "db = Database({db!r}, memory_limit={memory_limit!r}); build(db, config.defaults()); db.close()"
    ),
    "report": (
        "from pathlib import Path; from pipeline.db import Database; from pipeline.report import write_report; "
        "db = Database({db!r}, read_only=True, memory_limit={memory_limit!r}); "
        "write_report(db, Path({db!r}).parent / 'report')"
    ),
    "transitions": (
        "from pipeline.db import Database; from pipeline.paths import PathOptions, transitions; "
        "db = Database({db!r}, read_only=True, memory_limit={memory_limit!r}); "
        "transitions(db, PathOptions(scope='user', level='touchpoint'))"
    ),
    # The incremental build: the data but its last day loaded and fully built (setup, not timed
    # in the table), then the last day (about 1% of the events) loaded and built incrementally.
    # The base is one file per source file: at 100M a single base file (one transaction) spilled
    # its scratch tables past the 38 GB free on this disk.
    "incremental_setup": (
        "import glob, pathlib, polars as pl; from pipeline import config; from pipeline.build import build; "
        "from pipeline.db import Database; from pipeline.ingest import ingest_files; "
        "files = sorted(glob.glob({glob!r})); base = pathlib.Path({base!r}); base.mkdir(exist_ok=True); "
        "events = pl.scan_parquet(files); cutoff = events.select(pl.col('ts').max()).collect().item() "
        "- __import__('datetime').timedelta(days=1); "
        "parts = [str(base / f'part-{{i:03d}}.parquet') for i in range(len(files))]; "
        "[pl.scan_parquet(f).filter(pl.col('ts') < cutoff).sink_parquet(p) for f, p in zip(files, parts)]; "
        "events.filter(pl.col('ts') >= cutoff).sink_parquet({day!r}); "
        "db = Database({db!r}, memory_limit={memory_limit!r}); ingest_files(db, parts); "
        "build(db, config.defaults(), mode='full'); db.close()"
    ),
    "incremental_ingest": (
        "from pipeline.db import Database; from pipeline.ingest import ingest_files; "
        "db = Database({db!r}, memory_limit={memory_limit!r}); ingest_files(db, [{day!r}]); db.close()"
    ),
    "incremental_build": (
        "from pipeline import config; from pipeline.build import build; from pipeline.db import Database; "
        "db = Database({db!r}, memory_limit={memory_limit!r}); s = build(db, config.defaults()); db.close(); "
        "print(f'incremental build: mode={{s.mode}}, {{s.n_affected_users}} users touched')"
    ),
    # load + Eventstream + transition graph edge weights + funnel; counts written to {out}
    "retentioneering": (
        "import sys; sys.path.insert(0, {bench!r}); from baseline_retentioneering import run; run({glob!r}, {out!r})"
    ),
}
# Stage -> its venv (Makefile: RETE_VENV).
RETENTIONEERING = {"retentioneering": HERE / ".venv-retentioneering"}
FUNNEL_STEPS = ["view_item", "add_to_cart", "begin_checkout", "purchase"]
# Our side of the check, on retentioneering's definitions: event-level nodes (no channel steps),
# one journey per user, path_start/path_end edges; the ordered funnel by user with no window (what
# retentioneering's funnel_data counts: steps in time order, anything between).
OURS_CODE = (
    "import json; from pipeline.db import Database; from pipeline.metrics.funnel import funnel; "
    "from pipeline.paths import PathOptions, transitions; db = Database({db!r}, read_only=True); "
    "edges = transitions(db, PathOptions(scope='user', level='event')); "
    "steps = funnel(db, {steps!r}, mode='ordered', scope='user'); "
    "print(json.dumps({{'n_users': db.scalar('select count(distinct user_key) from staging.stg_touchpoints'), "
    "'funnel': steps['n_entered'].to_list(), "
    "'edges': edges.select('from_node', 'to_node', 'n_transitions', 'n_users').rows()}}))"
)


def run_stage(name: str, python: str = sys.executable, optional: bool = False, **values: object) -> dict[str, object]:
    code = (
        "import resource, time; t = time.perf_counter(); "
        + STAGE_CODE[name].format(**values)
        + "; print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        if optional:
            lines = [line for line in out.stderr.splitlines() if line.strip()]
            return {"unavailable": f"run failed: {lines[-1] if lines else f'exit {out.returncode}'}"}
        raise SystemExit(f"stage {name} failed:\n{out.stderr}")
    *lines, last = out.stdout.strip().splitlines()
    if lines:
        print("  " + "\n  ".join(lines))
    seconds, rss_kb = last.split()[-2:]
    # as each stage ends, so that a long run's figures show before the table (and survive a later failure)
    print(f"  ({name}: {float(seconds):.2f} s, peak RSS {int(rss_kb) / 1024:,.0f} MB)", flush=True)
    return {"seconds": float(seconds), "peak_rss_mb": int(rss_kb) / 1024}


def unavailable(venv: Path) -> str | None:
    """Why a retentioneering venv cannot run (None when it can): the install log's error line."""
    if (venv / ".installed").exists() and (venv / "bin" / "python").exists():
        return None
    log = venv / "install.log"
    if not log.exists():
        return f"{venv.name} is not installed (make bench installs it)"
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "needs python" in line.lower()]
    return f"install failed: {(errors or lines or ['empty install.log'])[-1]}"


def run_retentioneering(stage: str, glob: str, out: Path) -> dict[str, object]:
    venv = RETENTIONEERING[stage]
    reason = unavailable(venv)
    if reason:
        return {"unavailable": reason}
    out.unlink(missing_ok=True)
    result = run_stage("retentioneering", python=str(venv / "bin" / "python"), optional=True, glob=glob,
                       bench=str(HERE), out=str(out))
    if "seconds" in result:
        counts = json.loads(out.read_text())
        result["version"] = counts["version"]
    return result


def check(stage: str, glob: str, out: Path, ours: dict[str, object]) -> dict[str, object]:
    """Retentioneering's counts (paths = coalesce(user_id, anonymous_id)) next to ours, then the
    same run with ``--stitch`` (anonymous_id joined to its user as our build does), edge by edge."""
    theirs = json.loads(out.read_text())
    python = str(RETENTIONEERING[stage] / "bin" / "python")
    stitched_out = out.with_name(out.stem + "_stitched.json")
    done = subprocess.run([python, str(HERE / "baseline_retentioneering.py"), glob, "--stitch", "--out",
                           str(stitched_out)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.splitlines() or ["no output"]
        return {"version": theirs["version"], "as_run": _compare(theirs, ours), "stitched_error": lines[-1]}
    stitched = json.loads(stitched_out.read_text())
    return {"version": theirs["version"], "as_run": _compare(theirs, ours), "stitched": _compare(stitched, ours)}


def _compare(theirs: dict[str, object], ours: dict[str, object]) -> dict[str, object]:
    mine = {(a, b): (n, u) for a, b, n, u in ours["edges"]}  # type: ignore[union-attr]
    their = {(a, b): (n, u) for a, b, n, u in theirs["edges"]}  # type: ignore[union-attr]
    summary = {
        "paths": theirs["n_paths"], "users": ours["n_users"],
        "funnel": theirs["funnel"], "our_funnel": ours["funnel"],
        "transitions": sum(n for n, _ in their.values()), "our_transitions": sum(n for n, _ in mine.values()),
        "edges": len(their), "our_edges": len(mine),
        "edges_differing": sum(1 for e in mine.keys() | their.keys() if mine.get(e) != their.get(e)),
    }
    summary["agree"] = (summary["paths"] == summary["users"] and summary["funnel"] == summary["our_funnel"]
                        and summary["edges_differing"] == 0)
    return summary


def generate(size: str, data: Path) -> dict[str, object]:
    n = SIZES[size]
    if n <= CHUNK:
        data.mkdir(parents=True, exist_ok=True)
        return run_stage("generate", users=int(n / EVENTS_PER_USER), data=str(data))
    parts = [run_stage("generate_chunk", users=int(CHUNK / EVENTS_PER_USER), seed=7 + k, prefix=f"c{k}-",
                       data=str(data / f"c{k}")) for k in range(n // CHUNK)]
    return {"seconds": sum(p["seconds"] for p in parts), "peak_rss_mb": max(p["peak_rss_mb"] for p in parts)}


def bench(size: str, memory_limit: str = "") -> dict[str, object]:
    data = HERE / "data" / size
    db = data / "bench.duckdb"
    glob = str(data / ("*.parquet" if SIZES[size] <= CHUNK else "c*/*.parquet"))
    skip = SKIP_AT.get(size, set()) | {s for s in os.environ.get("BENCH_SKIP", "").split(",") if s}
    results: dict[str, Any] = {}
    if not globbing.glob(glob):
        results["generate"] = generate(size, data)
    for path in (db, Path(f"{db}.wal")):
        path.unlink(missing_ok=True)
    n_events = int(
        subprocess.run(
            [sys.executable, "-c",
             f"import polars as pl; print(pl.scan_parquet({glob!r}).select(pl.len()).collect().item())"],
            capture_output=True, text=True, check=True,
        ).stdout
    )

    def skipped(stage: str) -> bool:
        if stage in skip:
            results[stage] = {"unavailable": f"skipped at {size} (BENCH_SKIP, or too big for this machine)"}
        return stage in skip

    for stage in ("duckdb_scan", "pandas_baseline"):
        if not skipped(stage):
            results[stage] = run_stage(stage, db=str(db), glob=glob, bench=str(HERE))
    for stage in RETENTIONEERING:
        if not skipped(stage):
            results[stage] = run_retentioneering(stage, glob, data / f"{stage}.json")
    for stage in ("ingest", "build", "transitions", "report"):
        if not skipped(stage):
            results[stage] = run_stage(stage, db=str(db), glob=glob, bench=str(HERE), memory_limit=memory_limit)
    if not skipped("incremental"):
        incremental = data / "incremental"
        incremental.mkdir(exist_ok=True)
        values = {"glob": glob, "db": str(incremental / "bench.duckdb"), "base": str(incremental / "base"),
                  "day": str(incremental / "day.parquet"), "memory_limit": memory_limit}
        for path in (Path(values["db"]), Path(values["db"] + ".wal"), incremental / "base.parquet"):
            path.unlink(missing_ok=True)
        setup = run_stage("incremental_setup", optional=True, **values)
        if "unavailable" in setup:  # the stages before keep their figures
            for stage in ("incremental_ingest", "incremental_build"):
                results[stage] = {"unavailable": f"setup: {setup['unavailable']}"}
        else:
            count = f"import polars as pl; print(pl.scan_parquet({values['day']!r}).select(pl.len()).collect().item())"
            n_day = int(subprocess.run([sys.executable, "-c", count], capture_output=True, text=True,
                                       check=True).stdout)
            for stage in ("incremental_ingest", "incremental_build"):
                results[stage] = {**run_stage(stage, **values), "n_events_added": n_day}
    checks = {}
    ran = [stage for stage in RETENTIONEERING if "seconds" in results.get(stage, {})]
    if ran and "seconds" in results.get("build", {}):
        ours = json.loads(subprocess.run([sys.executable, "-c", OURS_CODE.format(db=str(db), steps=FUNNEL_STEPS)],
                                         capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        checks = {stage: check(stage, glob, data / f"{stage}.json", ours) for stage in ran}
    pipeline = [s for s in ("ingest", "build", "transitions", "report") if "seconds" in results.get(s, {})]
    results["end_to_end"] = {
        "stages": pipeline,
        "seconds": sum(results[s]["seconds"] for s in pipeline),
        "peak_rss_mb": max((results[s]["peak_rss_mb"] for s in pipeline), default=0),
    }
    return {"size": size, "n_events": n_events, "memory_limit": memory_limit or None, "stages": results,
            "retentioneering_check": checks}


def main() -> None:
    sizes = os.environ.get("BENCH_SIZE", "1m").split(",")
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"BENCH_SIZE: unknown size {unknown[0]!r}; valid: {', '.join(SIZES)}")
    memory_limit = os.environ.get("BENCH_MEMORY_LIMIT", "").strip()
    try:  # the config's own check of [engine] memory_limit
        config.validate({"engine": {"memory_limit": memory_limit}}, origin="BENCH_MEMORY_LIMIT")
    except config.ConfigError as exc:
        raise SystemExit(str(exc)) from None
    (HERE / "results").mkdir(exist_ok=True)
    if memory_limit:
        print(f"our stages run with [engine] memory_limit = {memory_limit!r} (DuckDB's cap)")
    print(f"{'size':>5} {'stage':<17} {'seconds':>8} {'events/s':>12} {'peak RSS MB':>12}")
    for size in sizes:
        started = time.time()
        report = bench(size, memory_limit)
        report.update(machine=platform.machine(), cpus=os.cpu_count(), python=platform.python_version(),
                      run_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)))
        for stage, r in report["stages"].items():  # type: ignore[union-attr]
            if "unavailable" in r:
                print(f"{size:>5} {stage:<17} unavailable: {r['unavailable']}")
                continue
            rate = r.get("n_events_added", report["n_events"]) / r["seconds"] if stage != "generate" else float("nan")
            version = f"  ({r['version']})" if "version" in r else ""
            print(f"{size:>5} {stage:<17} {r['seconds']:>8.2f} {rate:>12,.0f} {r['peak_rss_mb']:>12,.0f}{version}")
        name = f"{size}-memory-{memory_limit}" if memory_limit else size
        (HERE / "results" / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
        print_ratios(size, report)


def print_ratios(size: str, report: dict[str, Any]) -> None:
    stages = report["stages"]

    def seconds(stage: str) -> float:
        return float(stages.get(stage, {}).get("seconds", 0.0))

    if seconds("end_to_end") and seconds("duckdb_scan"):
        print(f"{size:>5} {'ratio':<17} end-to-end ({'+'.join(stages['end_to_end']['stages'])}) / raw DuckDB "
              f"scan = {seconds('end_to_end') / seconds('duckdb_scan'):.1f}x")
    core = seconds("build") + seconds("transitions")
    if not (seconds("build") and seconds("transitions")):
        return
    if seconds("pandas_baseline"):
        print(f"{size:>5} {'ratio':<17} pandas baseline (sessions, transitions, funnel, no validation) / our "
              f"build+transitions = {seconds('pandas_baseline') / core:.2f}x")
    if seconds("incremental_build"):
        share = stages["incremental_build"]["n_events_added"] / report["n_events"]
        print(f"{size:>5} {'ratio':<17} incremental build of the last day ({share:.1%} of the events) / full build "
              f"= {seconds('incremental_build') / seconds('build'):.0%}")
    for stage in RETENTIONEERING:
        r = stages.get(stage, {})
        if "seconds" in r:
            print(f"{size:>5} {'ratio':<17} retentioneering {r['version']} transition graph + funnel / "
                  f"our build+transitions = {r['seconds'] / core:.2f}x")
    for c in report["retentioneering_check"].values():
        print_check(size, c)


def print_check(size: str, c: dict[str, object]) -> None:
    def line(label: str, s: dict[str, object]) -> None:
        def steps(values: object) -> str:
            return "/".join(f"{v:,}" for v in values)  # type: ignore[union-attr]

        verdict = "agree" if s["agree"] else "differ"
        print(f"{size:>5} {'check':<17} retentioneering {c['version']} {label}: {verdict}: "
              f"paths {s['paths']:,} vs our users {s['users']:,}; funnel {steps(s['funnel'])} vs ordered "
              f"{steps(s['our_funnel'])}; transitions {s['transitions']:,} on {s['edges']} edges vs "
              f"{s['our_transitions']:,} on {s['our_edges']} (event level), {s['edges_differing']} edges differ")

    line("as benchmarked (path = coalesce(user_id, anonymous_id))", c["as_run"])  # type: ignore[arg-type]
    if "stitched" in c:
        line("with --stitch (anonymous_id joined to its user, as our build does)", c["stitched"])  # type: ignore[arg-type]
    else:
        print(f"{size:>5} {'check':<17} retentioneering {c['version']} with --stitch failed: {c['stitched_error']}")


if __name__ == "__main__":
    main()
