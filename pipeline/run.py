"""The scheduled batch: new files from a landing folder -> ingest -> build -> report, under a lock.

Reads the landing folder and the database; writes the database (``raw.runs`` keeps the history),
the report folder and the lock file ``<db>.lock``. A second run while one holds the lock stops at
once with ``RunLocked`` (its own exit code in the CLI), so two runs never write at the same time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import file_kind, ingest_files

LANDING_PATTERNS = ("*.csv", "*.csv.gz", "*.tsv", "*.tsv.gz", "*.parquet", "*.ndjson", "*.ndjson.gz", "*.jsonl",
                    "*.jsonl.gz", "*.json", "*.json.gz")


class RunLocked(Exception):
    """Another run holds the lock on this database."""


@dataclass
class RunSummary:
    run_id: int = 0
    status: str = "ok"
    n_files: int = 0
    n_new_files: int = 0
    n_loaded: int = 0
    n_quarantined: int = 0
    n_forgotten: int = 0
    n_rejected: int = 0
    n_events: int = 0
    n_sessions: int = 0
    seconds: float = 0.0
    report: str | None = None
    messages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"run {self.run_id} {self.status}: {self.n_new_files} new of {self.n_files} files, "
            f"loaded {self.n_loaded:,}, quarantined {self.n_quarantined:,}, rejected {self.n_rejected}, "
            f"events {self.n_events:,}, sessions {self.n_sessions:,} in {self.seconds:.1f}s"
        )


@contextlib.contextmanager
def run_lock(db_path: Path) -> Iterator[None]:
    """An exclusive, non-blocking lock next to the database; released when the process ends."""
    lock_path = Path(f"{db_path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"another journeys run holds {lock_path}; this run did nothing") from None
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(handle)


def landing_files(landing: Path) -> list[Path]:
    if not landing.is_dir():
        raise FileNotFoundError(f"landing folder {landing} does not exist")
    found = {p for pattern in LANDING_PATTERNS for p in landing.glob(pattern) if p.is_file()}
    return sorted(p for p in found if _loadable(p))


def _loadable(path: Path) -> bool:
    try:
        file_kind(path)
    except Exception:
        return False
    return not path.name.startswith(".")


def _ensure_runs(db: Database) -> None:
    db.execute(
        "create table if not exists raw.runs (run_id bigint, started_at timestamp, finished_at timestamp, "
        "status varchar, n_new_files bigint, n_loaded bigint, n_quarantined bigint, n_rejected bigint, "
        "seconds double, message varchar)"
    )


def batch_run(
    db_path: Path,
    landing: Path,
    config: dict[str, dict[str, Any]],
    report_dir: Path | None = None,
) -> RunSummary:
    """One scheduled run. Raises RunLocked when another run is active."""
    started = time.perf_counter()
    started_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    summary = RunSummary()
    with run_lock(db_path):
        files = landing_files(landing)
        summary.n_files = len(files)
        with Database(db_path, memory_limit=config["engine"]["memory_limit"]) as db:
            _ensure_runs(db)
            summary.run_id = int(db.scalar("select coalesce(max(run_id), 0) + 1 from raw.runs"))
            try:
                results = ingest_files(db, files, future_tolerance_hours=config["ingest"]["future_tolerance_hours"],
                                       privacy_settings=config["privacy"])
                new = [r for r in results if r.status == "loaded"]
                summary.n_new_files = len(new)
                summary.n_loaded = sum(r.n_loaded for r in new)
                summary.n_quarantined = sum(r.n_quarantined for r in new)
                summary.n_forgotten = sum(r.n_forgotten for r in new)
                rejected = [r for r in results if r.status == "rejected"]
                summary.n_rejected = len(rejected)
                summary.messages += [r.message for r in rejected]
                if new or not db.has_table("staging", "stg_events"):
                    built = build(db, config)
                else:
                    built = None
                summary.n_events = int(db.scalar("select count(*) from staging.stg_events"))
                summary.n_sessions = int(db.scalar("select count(*) from staging.stg_sessions"))
                if report_dir is not None and (built is not None or not (report_dir / "report.html").exists()):
                    from pipeline.report import write_report

                    summary.report = str(write_report(db, report_dir))
                summary.status = "partial" if rejected else "ok"
            except Exception as exc:
                summary.status = "failed"
                summary.messages.append(str(exc))
                raise
            finally:
                summary.seconds = round(time.perf_counter() - started, 3)
                db.execute(
                    "insert into raw.runs values ($run_id, $started_at, $finished_at, $status, $n_new, $n_loaded, "
                    "$n_quarantined, $n_rejected, $seconds, $message)",
                    {"run_id": summary.run_id, "started_at": started_at,
                     "finished_at": dt.datetime.now(dt.UTC).replace(tzinfo=None), "status": summary.status,
                     "n_new": summary.n_new_files, "n_loaded": summary.n_loaded,
                     "n_quarantined": summary.n_quarantined, "n_rejected": summary.n_rejected,
                     "seconds": summary.seconds, "message": "; ".join(summary.messages)[:2000]},
                )
    return summary
