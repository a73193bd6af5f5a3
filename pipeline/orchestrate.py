"""Optional Dagster definitions: one asset per layer and a daily schedule (``dagster dev -m pipeline.orchestrate``).

For teams that already orchestrate with Dagster; nothing else in the package imports this module,
and it needs the extra (``pip install 'journeys[dagster]'``). It is the scheduled batch of
``pipeline/run.py`` (``journeys run``) cut into Dagster assets, calling the same functions:

- ``raw_events``: the landing folder's files not loaded yet (``pipeline.run.landing_files``,
  ``pipeline.ingest.ingest_files``; files already in the manifest are skipped by content hash);
- ``staging_and_marts``: ``pipeline.build.build`` (incremental by default). It covers the staging,
  paths and marts layers together on purpose: a full build is one transaction, and an incremental
  one swaps the affected users' staging rows and rebuilds paths and marts in one transaction, so
  a failed build leaves the previous tables as they were. Separate assets would need separate
  transactions, and a failure between them would leave marts built from other staging rows;
- ``report``: ``pipeline.report.write_report`` (``<output_dir>/report.html`` and a dated copy);
- ``exports``: ``pipeline.export.export`` (``<exports_dir>/<table>.<format>``, for BI tools).

Reads the landing folder, the config file (``journeys.toml``) and the database; writes the
database, the report folder, the exports folder and the lock file ``<db>.lock``. Every run holds
that lock from its start to its end (the resource takes it; the jobs run in one process, the
in-process executor), the same lock ``journeys run`` takes, so a second run (Dagster or cron) fails
at once with "another journeys run holds ..." and writes nothing. Counts (files loaded, events,
users, sessions, build mode) are the assets' metadata; a rejected file fails the ``raw_events``
check ``no_rejected_files`` (severity WARN) without stopping the run, as in ``journeys run``.
Unlike ``journeys run``, runs are not recorded in ``raw.runs``: Dagster keeps the run history.

Paths and the schedule come from the environment when the definitions load (relative paths are
relative to the folder ``dagster`` was started in): ``JOURNEYS_DB`` (default
``data/journeys.duckdb``), ``JOURNEYS_LANDING`` (``data/landing``), ``JOURNEYS_OUT`` (``reports``),
``JOURNEYS_EXPORTS`` (``<out>/exports``), ``JOURNEYS_CONFIG`` (``journeys.toml`` when present),
``JOURNEYS_SCHEDULE_CRON`` (``0 6 * * *``) and ``JOURNEYS_SCHEDULE_TZ`` (``UTC``). Each resource
field can also be set per run in the launchpad (``resources.journeys.config``).
"""

# No `from __future__ import annotations` here: Dagster reads the asset functions' annotations (the
# context and resource types) when the decorators run.
import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

try:
    import dagster as dg
except ImportError as exc:
    raise ImportError(
        f"pipeline.orchestrate needs Dagster, an optional extra: pip install 'journeys[dagster]' ({exc})",
        name="dagster",
    ) from None

from pipeline import config as config_mod
from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files
from pipeline.run import landing_files, run_lock

__all__ = ["ASSETS", "DEFAULT_CRON", "JOB_NAME", "SCHEDULE_NAME", "JourneysResource", "defs", "exports",
           "make_definitions", "raw_events", "report", "resource_from_env", "staging_and_marts"]

JOB_NAME = "journeys_job"
SCHEDULE_NAME = "journeys_daily"
DEFAULT_CRON = "0 6 * * *"
GROUP = "journeys"
BUILD_MODES = ("auto", "full")


class JourneysResource(dg.ConfigurableResource):
    """Where the pipeline reads and writes; every run holds ``<db_path>.lock`` while it runs."""

    db_path: str = "data/journeys.duckdb"
    landing_dir: str = "data/landing"
    output_dir: str = "reports"
    exports_dir: str = ""  # '' = <output_dir>/exports
    config_path: str = ""  # '' = ./journeys.toml when it exists, else the defaults (as the CLI)
    build_mode: str = "auto"  # auto: incremental when only new files arrived; full: rebuild everything
    export_tables: list[str] = ["all"]  # table names as for `journeys export`, or all
    export_format: str = "parquet"  # csv | parquet

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["JourneysResource"]:
        """Hold the run lock for the whole run; raise ``RunLocked`` when another run has it."""
        from pipeline.export import EXPORT_FORMATS
        from pipeline.privacy import check_output_path

        if self.build_mode not in BUILD_MODES:
            raise ValueError(f"build_mode must be one of {', '.join(BUILD_MODES)}, not {self.build_mode!r}")
        if self.export_format not in EXPORT_FORMATS:
            raise ValueError(f"export_format must be one of {', '.join(EXPORT_FORMATS)}, not {self.export_format!r}")
        check_output_path(self.db_path)  # never create or write a database in a system folder
        with run_lock(Path(self.db_path)):
            if context.log is not None:
                context.log.info(f"holding the run lock {self.db_path}.lock")
            yield self

    def load_config(self) -> dict[str, Any]:
        return config_mod.load(self.config_path or None)

    @property
    def exports_folder(self) -> Path:
        return Path(self.exports_dir) if self.exports_dir else Path(self.output_dir) / "exports"


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb"},
    check_specs=[dg.AssetCheckSpec("no_rejected_files", asset="raw_events",
                                   description="every file of the landing folder could be loaded")],
)
def raw_events(context: dg.AssetExecutionContext, journeys: JourneysResource) -> dg.MaterializeResult:
    """raw.events, raw.quarantine, raw.manifest: the landing folder's files not loaded yet."""
    cfg = journeys.load_config()
    files = landing_files(Path(journeys.landing_dir))
    with Database(journeys.db_path, memory_limit=cfg["engine"]["memory_limit"]) as db:
        results = ingest_files(db, files, future_tolerance_hours=cfg["ingest"]["future_tolerance_hours"],
                               privacy_settings=cfg["privacy"])
        n_raw = int(db.scalar("select count(*) from raw.events"))
    new = [r for r in results if r.status == "loaded"]
    rejected = [r for r in results if r.status == "rejected"]
    for r in rejected:
        context.log.warning(f"rejected: {r.message}")
    context.log.info(f"{len(new)} new of {len(files)} files, {sum(r.n_loaded for r in new):,} events loaded")
    return dg.MaterializeResult(
        metadata={
            "n_files": len(files),
            "n_new_files": len(new),
            "n_already_loaded": sum(r.status == "already_loaded" for r in results),
            "n_rejected": len(rejected),
            "n_loaded": sum(r.n_loaded for r in new),
            "n_duplicate": sum(r.n_duplicate for r in new),
            "n_quarantined": sum(r.n_quarantined for r in new),
            "n_forgotten": sum(r.n_forgotten for r in new),
            "new_files": [Path(r.path).name for r in new],
            "dagster/row_count": n_raw,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="no_rejected_files",
                passed=not rejected,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"n_rejected": len(rejected), "messages": "\n".join(r.message for r in rejected)},
            )
        ],
    )


@dg.asset(group_name=GROUP, kinds={"duckdb"}, deps=[raw_events])
def staging_and_marts(context: dg.AssetExecutionContext, journeys: JourneysResource) -> dg.MaterializeResult:
    """The staging, paths and marts tables (sql/), built in one transaction; incremental when it can be."""
    cfg = journeys.load_config()
    with Database(journeys.db_path, memory_limit=cfg["engine"]["memory_limit"]) as db:
        summary = build(db, cfg, mode=journeys.build_mode)  # type: ignore[arg-type] # checked by the resource
    context.log.info(f"build {summary.mode}: {summary.n_events:,} events, {summary.n_users:,} users, "
                     f"{summary.n_sessions:,} sessions")
    metadata: dict[str, Any] = {
        "build_mode": summary.mode,
        "n_events": summary.n_events,
        "n_users": summary.n_users,
        "n_sessions": summary.n_sessions,
        "n_unmapped_events": summary.n_unmapped_events,
        "n_tables_built": len(summary.tables),
        "seconds": round(sum(summary.seconds.values()), 3),
        "dagster/row_count": summary.n_events,
    }
    if summary.n_affected_users is not None:
        metadata["n_affected_users"] = summary.n_affected_users
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(group_name=GROUP, kinds={"html"}, deps=[staging_and_marts])
def report(journeys: JourneysResource) -> dg.MaterializeResult:
    """The self-contained HTML report: <output_dir>/report.html and a copy named by the data's last day."""
    from pipeline.report import write_report

    cfg = journeys.load_config()
    with Database(journeys.db_path, read_only=True, memory_limit=cfg["engine"]["memory_limit"]) as db:
        path = write_report(db, Path(journeys.output_dir))
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)), "n_bytes": path.stat().st_size}
    )


@dg.asset(group_name=GROUP, kinds={"csv", "parquet"}, deps=[report])
def exports(context: dg.AssetExecutionContext, journeys: JourneysResource) -> dg.MaterializeResult:
    """Staging/marts tables and analysis outputs as one file each, for BI tools (<exports_dir>/<name>.<format>)."""
    from pipeline.export import export

    out = journeys.exports_folder
    with Database(journeys.db_path, read_only=True) as db:
        results = export(db, journeys.export_tables, journeys.export_format, out)  # type: ignore[arg-type]
    skipped = [r for r in results if r.error is not None]
    for r in skipped:
        context.log.warning(f"not exported: {r.name}: {r.error}")
    written = [r for r in results if r.error is None]
    return dg.MaterializeResult(
        metadata={
            "folder": dg.MetadataValue.path(str(out)),
            "format": journeys.export_format,
            "n_files": len(written),
            "n_rows": sum(r.n_rows for r in written),
            "n_skipped": len(skipped),
            "files": [Path(r.path).name for r in written if r.path],
        }
    )


ASSETS = [raw_events, staging_and_marts, report, exports]


def resource_from_env(environ: Mapping[str, str] | None = None) -> JourneysResource:
    """The resource with the paths of the ``JOURNEYS_*`` variables (or their defaults)."""
    env = os.environ if environ is None else environ
    return JourneysResource(
        db_path=env.get("JOURNEYS_DB", "data/journeys.duckdb"),
        landing_dir=env.get("JOURNEYS_LANDING", "data/landing"),
        output_dir=env.get("JOURNEYS_OUT", "reports"),
        exports_dir=env.get("JOURNEYS_EXPORTS", ""),
        config_path=env.get("JOURNEYS_CONFIG", ""),
    )


def make_definitions(environ: Mapping[str, str] | None = None) -> dg.Definitions:
    """Assets, the job over all of them, the daily schedule and the resource, from the environment."""
    env = os.environ if environ is None else environ
    job = dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.assets(*ASSETS),
                              description="the scheduled batch: new landing files -> build -> report -> exports")
    schedule = dg.ScheduleDefinition(
        name=SCHEDULE_NAME,
        job=job,
        cron_schedule=env.get("JOURNEYS_SCHEDULE_CRON", DEFAULT_CRON),
        execution_timezone=env.get("JOURNEYS_SCHEDULE_TZ", "UTC"),
        description="daily run of every journeys asset (JOURNEYS_SCHEDULE_CRON, JOURNEYS_SCHEDULE_TZ)",
    )
    return dg.Definitions(
        assets=ASSETS,
        jobs=[job],
        schedules=[schedule],
        resources={"journeys": resource_from_env(env)},
        # One process per run: the run lock is held from the first step to the last, and DuckDB has
        # one writer per file anyway.
        executor=dg.in_process_executor,
    )


defs = make_definitions()
