"""The optional Dagster module: real runs in process (no daemon, no mocks) on sample files in tmp dirs."""

from __future__ import annotations

import ast
import datetime as dt
import fcntl
import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

dg = pytest.importorskip("dagster")

from pipeline import config  # noqa: E402
from pipeline import orchestrate as orch  # noqa: E402
from pipeline.build import build  # noqa: E402
from pipeline.db import Database  # noqa: E402
from pipeline.ingest import ingest_files  # noqa: E402
from pipeline.run import batch_run  # noqa: E402
from tests.conftest import REPO  # noqa: E402

SAMPLE_FILES = sorted((REPO / "data" / "sample").glob("*.csv.gz"))[:3]
LAYERS = ("staging", "paths", "marts")


def _resource(tmp_path: Path) -> orch.JourneysResource:
    return orch.JourneysResource(db_path=str(tmp_path / "j.duckdb"), landing_dir=str(tmp_path / "landing"),
                                 output_dir=str(tmp_path / "reports"))


def _table_counts(db_path: Path) -> dict[str, int]:
    """Rows of every model table (staging, paths, marts), build_log aside."""
    with Database(db_path, read_only=True) as db:
        tables = db.query(
            "select table_schema, table_name from information_schema.tables where table_schema in "
            "('staging', 'paths', 'marts') and table_type = 'BASE TABLE' and table_name <> 'build_log' "
            "order by 1, 2"
        ).rows()
        return {f"{s}.{t}": int(db.scalar(f'select count(*) from "{s}"."{t}"')) for s, t in tables}  # noqa: S608


def _metadata(result, node: str) -> dict[str, object]:
    [event] = result.asset_materializations_for_node(node)
    return {key: value.value for key, value in event.metadata.items()}


def test_assets_ingest_build_report_export_then_build_incrementally(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for f in SAMPLE_FILES[:2]:
        shutil.copy(f, landing)
    journeys = _resource(tmp_path)
    db_path = Path(journeys.db_path)

    first = dg.materialize(orch.ASSETS, resources={"journeys": journeys})
    assert first.success

    # The same files through `journeys run`'s function give the same tables.
    ref_landing = tmp_path / "ref_landing"
    ref_landing.mkdir()
    for f in SAMPLE_FILES[:2]:
        shutil.copy(f, ref_landing)
    ref_summary = batch_run(tmp_path / "ref.duckdb", ref_landing, config.defaults(), None)
    counts = _table_counts(db_path)
    assert counts == _table_counts(tmp_path / "ref.duckdb")
    assert {"staging.stg_events", "staging.stg_sessions", "staging.stg_users", "staging.stg_touchpoints"} <= set(counts)

    raw = _metadata(first, "raw_events")
    assert (raw["n_files"], raw["n_new_files"], raw["n_rejected"]) == (2, 2, 0)
    assert raw["n_loaded"] == ref_summary.n_loaded > 0
    built = _metadata(first, "staging_and_marts")
    assert built["build_mode"] == "full"
    assert built["n_events"] == counts["staging.stg_events"] == ref_summary.n_events
    assert built["n_sessions"] == counts["staging.stg_sessions"] == ref_summary.n_sessions
    assert built["n_users"] == counts["staging.stg_users"] > 0
    with Database(db_path, read_only=True) as db:
        assert raw["dagster/row_count"] == db.scalar("select count(*) from raw.events")
    [check] = first.get_asset_check_evaluations()
    assert check.check_name == "no_rejected_files" and check.passed

    report_path = tmp_path / "reports" / "report.html"
    assert report_path.is_file() and report_path.stat().st_size > 10_000
    assert _metadata(first, "report")["path"] == str(report_path)
    exported = _metadata(first, "exports")
    assert exported["n_files"] > 0 and exported["format"] == "parquet"
    assert (tmp_path / "reports" / "exports" / "stg_sessions.parquet").is_file()
    handle = os.open(f"{db_path}.lock", os.O_RDWR)  # the run took the lock of `journeys run` ...
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ... and released it at its end
    finally:
        os.close(handle)

    # One more file (and one that cannot be used): the next build is incremental, and equal to a full one.
    shutil.copy(SAMPLE_FILES[2], landing)
    (landing / "bad.csv").write_text("a,b\n1,2\n")
    second = dg.materialize(orch.ASSETS, resources={"journeys": journeys},
                            selection=[orch.raw_events, orch.staging_and_marts])
    assert second.success  # a rejected file warns (failed check) but does not stop the run
    raw2 = _metadata(second, "raw_events")
    assert (raw2["n_files"], raw2["n_new_files"], raw2["n_already_loaded"], raw2["n_rejected"]) == (4, 1, 2, 1)
    assert raw2["new_files"] == [SAMPLE_FILES[2].name]
    [check2] = second.get_asset_check_evaluations()
    assert not check2.passed and check2.severity == dg.AssetCheckSeverity.WARN
    built2 = _metadata(second, "staging_and_marts")
    assert built2["build_mode"] == "incremental" and built2["n_affected_users"] > 0
    with Database(db_path, read_only=True) as db:
        assert db.query("select mode from staging.build_log order by build_id")["mode"].to_list() == [
            "full", "incremental"]
    full = tmp_path / "full.duckdb"
    with Database(full) as db:
        ingest_files(db, SAMPLE_FILES)
        assert build(db, config.defaults(), mode="full").mode == "full"
    counts2 = _table_counts(db_path)
    assert counts2 == _table_counts(full)
    assert built2["n_events"] == counts2["staging.stg_events"] > built["n_events"]
    assert built2["n_users"] == counts2["staging.stg_users"]
    assert built2["n_sessions"] == counts2["staging.stg_sessions"]


def test_a_run_fails_at_once_while_another_holds_the_lock(tmp_path):
    (tmp_path / "landing").mkdir()
    shutil.copy(SAMPLE_FILES[0], tmp_path / "landing")
    journeys = _resource(tmp_path)
    handle = os.open(f"{journeys.db_path}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running `journeys run` or Dagster run would
    try:
        result = dg.materialize(orch.ASSETS, resources={"journeys": journeys}, raise_on_error=False)
    finally:
        os.close(handle)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.RESOURCE_INIT_FAILURE]
    assert failure.event_specific_data.error.message.startswith("pipeline.run.RunLocked: another journeys run holds")
    assert not Path(journeys.db_path).exists()  # it did nothing
    assert not result.asset_materializations_for_node("raw_events")


def test_schedule_job_and_definitions_load(tmp_path):
    orch.defs.validate_loadable(orch.defs)
    job = orch.defs.resolve_job_def(orch.JOB_NAME)
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {
        "raw_events", "staging_and_marts", "report", "exports"}
    assert job.executor_def.name == "in_process"
    schedule = orch.defs.resolve_schedule_def(orch.SCHEDULE_NAME)
    assert schedule.cron_schedule == orch.DEFAULT_CRON == "0 6 * * *"
    assert schedule.job_name == orch.JOB_NAME and schedule.execution_timezone == "UTC"

    tick = dt.datetime(2025, 3, 1, 6, 0, tzinfo=dt.UTC)
    data = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=tick))
    [request] = data.run_requests
    assert isinstance(request, dg.RunRequest) and request.job_name in (None, orch.JOB_NAME)

    env = {"JOURNEYS_SCHEDULE_CRON": "30 2 * * 1-5", "JOURNEYS_SCHEDULE_TZ": "Europe/Berlin",
           "JOURNEYS_DB": str(tmp_path / "x.duckdb"), "JOURNEYS_LANDING": str(tmp_path / "in"),
           "JOURNEYS_OUT": str(tmp_path / "out")}
    custom = orch.make_definitions(env)
    custom_schedule = custom.resolve_schedule_def(orch.SCHEDULE_NAME)
    assert (custom_schedule.cron_schedule, custom_schedule.execution_timezone) == ("30 2 * * 1-5", "Europe/Berlin")
    resource = orch.resource_from_env(env)
    assert (resource.db_path, resource.landing_dir, resource.output_dir) == (
        env["JOURNEYS_DB"], env["JOURNEYS_LANDING"], env["JOURNEYS_OUT"])
    assert resource.exports_folder == tmp_path / "out" / "exports"


def test_without_dagster_the_import_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dagster", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "pipeline.orchestrate")
    with pytest.raises(ImportError, match=r"pip install 'journeys\[dagster\]'"):
        importlib.import_module("pipeline.orchestrate")


def test_no_other_module_imports_dagster():
    importers = []
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        if path.name == "orchestrate.py" and path.parent.name == "pipeline":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "dagster" or n.startswith("dagster.") or n == "pipeline.orchestrate" for n in names):
                importers.append(str(path.relative_to(REPO)))
    assert importers == []
