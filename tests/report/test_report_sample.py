"""The report on the committed sample: every section computed, findings from the data, written
atomically (plus a copy dated by the data). Its time is measured by `make bench`, not here."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from pipeline.db import Database
from pipeline.report import write_report
from tests.conftest import REPO

pytestmark = pytest.mark.slow

SECTIONS = ("kpis", "journey-map", "funnel", "paths", "transitions", "dropoffs", "effort", "attribution", "value",
            "segments", "personas", "experiments", "data-quality")


def test_every_section_is_computed(sample_report):
    assert sample_report.errors == {}
    html = sample_report.path.read_text(encoding="utf-8")
    for anchor in SECTIONS:
        assert f'<section class="card" id="{anchor}">' in html, anchor
    assert "data-section-error" not in html


def test_self_contained_offline_page(sample_report):
    html = sample_report.path.read_text(encoding="utf-8")
    size_mb = len(html.encode()) / 1e6
    assert 4 < size_mb < 9
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "", html, flags=re.S)  # the page, without the scripts
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", markup)  # nothing fetched from the network
    assert "<link" not in markup and "@import" not in markup
    blocks = re.findall(r'<script type="application/json" id="fig-[^"]*">(.*?)</script>', html)
    figures = [json.loads(m) for m in blocks]
    trace_types = {trace.get("type") for figure in figures for trace in figure["data"]}
    assert len(figures) >= 15 and trace_types <= {"bar", "scatter", "heatmap", "sankey"}, trace_types  # no maps


def test_planted_behaviours_are_the_headlines(sample_report):
    html = sample_report.path.read_text(encoding="utf-8")
    # the mobile checkout loop (planted: 30% of mobile checkout sessions, 0 elsewhere)
    loop = re.search(r"(\d+)% of mobile sessions at checkout loop checkout &gt; cart &gt; checkout", html)
    assert loop and 24 <= int(loop.group(1)) <= 34
    # the previous period comes from the data's last day, not from the clock
    assert "09 Mar – 05 Apr 2025" in html and "09 Feb – 08 Mar 2025" in html


def test_write_report_is_atomic_and_dated_by_the_data(sample_db, tmp_path):
    with Database(sample_db, read_only=True) as db:
        path = write_report(db, tmp_path)
    assert path == tmp_path / "report.html"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report-2025-04-05.html", "report.html"]
    assert path.read_bytes()[:15] == b"<!doctype html>"


def test_cli_report_is_quiet_when_not_on_a_terminal(sample_db, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pipeline", "report", "--db", str(sample_db), "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {tmp_path / 'report.html'}"
    assert done.stderr == ""
    missing = subprocess.run([sys.executable, "-m", "pipeline", "report", "--db", str(tmp_path / "none.duckdb")],
                             capture_output=True, text=True, cwd=REPO, check=False)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1


def test_report_inputs_match_their_modules(sample_db):
    # The report computes the stage chain first and effort while the touchpoint chain's journeys are
    # prepared (pipeline/report/data.py): the rows must be those of the modules called on their own.
    from pipeline import paths
    from pipeline.report.data import GOAL, ReportData
    from pipeline.value import risk

    database = Database(sample_db, read_only=True)
    try:
        data = ReportData(database)
        report_risk, report_effort = data.revenue_at_risk, data.effort
        assert report_risk["level"].unique(maintain_order=True).to_list() == ["touchpoint", "stage"]
        alone = risk.revenue_at_risk(database, levels=("touchpoint", "stage"), goal=GOAL)
        assert report_risk.equals(alone)
        effort = paths.touchpoints_to_goal(database, paths.PathOptions(scope="user", level="touchpoint", goal=GOAL))
        assert report_effort.sort("user_key").equals(effort.sort("user_key"))
    finally:
        database.close()
