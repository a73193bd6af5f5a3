"""The report in real headless Chromium: it loads offline with no console error, every chart draws,
a CSV downloads, and hostile strings ingested through the real pipeline stay text."""

from __future__ import annotations

import pytest

from tests.report.conftest import (
    HOSTILE_CHANNEL,
    HOSTILE_CLOSE,
    HOSTILE_DEVICE,
    HOSTILE_EVENT,
    HOSTILE_IMG,
    copy_for_debug,
)

pytestmark = pytest.mark.slow


def test_sample_report_loads_without_errors_and_draws_every_chart(sample_report, open_report):
    opened = open_report(sample_report.path, "sample")
    info = opened.info
    copy_for_debug(opened.screenshot)
    assert opened.console_errors == []
    assert opened.dialogs == []
    assert info["n_chart_divs"] == sample_report.n_charts >= 15
    assert info["n_drawn"] == info["n_chart_divs"], f"charts without data: {info['not_drawn']}"
    assert info["drawn_attr"] == str(sample_report.n_charts) and info["failed_attr"] == "0"
    assert info["section_errors"] == []
    assert info["n_exec_scripts"] == 2  # plotly.js and the report's own script, nothing else
    assert info["handlers"] == []  # no inline event handler anywhere
    assert info["anchors"] == []  # no link leaves the page
    assert opened.screenshot.stat().st_size > 50_000
    print(f"\nrender {opened.seconds:.2f}s, page {sample_report.path.stat().st_size / 1e6:.2f} MB")


def test_every_section_states_its_finding(sample_report, open_report):
    text = open_report(sample_report.path, "sections").info["text"]
    for heading in ("How to read this", "Stage", "Reach", "Abandoned here", "Drop-off point"):
        assert heading in text
    # titles are computed findings with numbers, not labels
    assert "loses the most" in text and "%" in text
    assert "are worth the most" in text
    assert "Half of buyers need" in text


def test_csv_download_from_the_page(sample_report, open_report, tmp_path):
    opened = open_report(sample_report.path, "download")
    page = opened.page
    with page.expect_download() as info:
        page.click("#journey-map button.csv")
    download = info.value
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    text = target.read_text(encoding="utf-8-sig")
    assert download.suggested_filename == "journey_map.csv"
    assert text.splitlines()[0].startswith("stage,stage_order,n_reached")
    assert len(text.splitlines()) == 6  # header + five stages


def _stored_hostile(dbfile) -> set[str]:
    """The hostile values as the pipeline stored them (event names are normalised on ingest)."""
    from pipeline.db import Database

    with Database(dbfile, read_only=True) as db:
        rows = db.query(
            "select event_name as v from staging.stg_events where event_name like '%<%' union "
            "select channel from staging.stg_sessions where channel like '%<%' union "
            "select device from staging.stg_sessions where device like '%<%'"
        )
    return set(rows["v"].to_list())


def test_hostile_strings_are_text_not_markup(hostile_build, open_report):
    dbfile, report = hostile_build
    stored = _stored_hostile(dbfile)
    assert len(stored) >= 5  # three event names, a channel, a device
    html = report.read_text(encoding="utf-8")
    opened = open_report(report, "hostile")
    info = opened.info
    copy_for_debug(opened.screenshot)
    assert opened.dialogs == []
    assert opened.console_errors == []
    assert info["handlers"] == []
    assert info["n_exec_scripts"] == 2
    assert info["images"] == []  # no <img> from data
    assert info["bold"] == 0  # "<b>" in a device name is not bold
    assert info["anchors"] == []  # javascript: URLs never become links
    # the strings are shown, as text, in tables and chart labels
    visible = info["text"] + "\n" + info["svg_text"]
    for hostile in stored | {HOSTILE_EVENT, HOSTILE_CHANNEL, HOSTILE_DEVICE}:
        assert hostile in visible, hostile
    # and never raw in the file: every '<' of data is escaped (entity in HTML, \u003c in JSON)
    for hostile in stored | {HOSTILE_EVENT, HOSTILE_IMG, HOSTILE_CLOSE, HOSTILE_CHANNEL, HOSTILE_DEVICE}:
        assert hostile not in html, hostile
    assert html.count("<script") == html.count("</script>")
