"""Fixtures for the report tests: the sample built once per session, a hostile dataset ingested
through the real CLI, and a headless Chromium page (playwright driving Debian's /usr/bin/chromium)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from pipeline.ingest import ingest_files

REPO = Path(__file__).resolve().parents[2]
SAMPLE_FILES = sorted((REPO / "data" / "sample").glob("*.csv.gz"))
CHROMIUM = os.environ.get("JOURNEYS_CHROMIUM", "/usr/bin/chromium")

# Strings an attacker could put in event names, campaigns, channels, devices and URLs.
HOSTILE_EVENT = "<script>alert(1)</script>"
HOSTILE_IMG = '"><img src=x onerror=alert(1)>'
HOSTILE_CLOSE = "</script><script>alert(3)</script><!--"
HOSTILE_URL = "javascript:alert(document.domain)"
HOSTILE_CHANNEL = "<img src=x onerror=alert('channel')>"
HOSTILE_DEVICE = "<b>tab</b><svg onload=alert(2)>"
HOSTILE_FORMULA = "=HYPERLINK(\"http://evil.example\",\"x\")"


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, check=False, timeout=600)


@pytest.fixture(scope="session")
def sample_db(tmp_path_factory) -> Path:
    """The committed sample, ingested and built (API calls, as the CLI makes them)."""
    path = tmp_path_factory.mktemp("sample") / "sample.duckdb"
    cfg = config.defaults()
    with Database(path) as db:
        results = ingest_files(db, SAMPLE_FILES, future_tolerance_hours=cfg["ingest"]["future_tolerance_hours"])
        assert all(r.status == "loaded" for r in results)
        build(db, cfg)
    return path


@dataclass
class Written:
    path: Path
    seconds: float
    n_charts: int
    errors: dict = field(default_factory=dict)
    section_seconds: dict = field(default_factory=dict)


@pytest.fixture(scope="session")
def sample_report(sample_db, tmp_path_factory) -> Written:
    from pipeline.files import atomic_write
    from pipeline.report import render_report

    out = tmp_path_factory.mktemp("report")
    started = time.perf_counter()
    with Database(sample_db, read_only=True) as db:
        result = render_report(db)
    target = out / "report.html"
    atomic_write(target, result.html)
    seconds = time.perf_counter() - started
    return Written(target, seconds, result.n_charts, result.errors, result.seconds)


def hostile_events() -> pl.DataFrame:
    """A small simulated clickstream with hostile strings in every user-controlled column."""
    from pipeline.simulate import simulate

    frame = simulate(users=400, days=60, seed=7)
    return frame.with_columns(
        pl.when(pl.col("event_name") == "search").then(pl.lit(HOSTILE_EVENT))
        .when(pl.col("event_name") == "view_item_list").then(pl.lit(HOSTILE_IMG))
        .when(pl.col("event_name") == "newsletter_signup").then(pl.lit(HOSTILE_CLOSE))
        .otherwise(pl.col("event_name")).alias("event_name"),
        pl.when(pl.col("campaign").is_not_null()).then(pl.lit(HOSTILE_IMG)).alias("campaign"),
        pl.when(pl.col("source") == "facebook").then(pl.lit(HOSTILE_CHANNEL)).otherwise(pl.col("channel"))
        .alias("channel"),
        pl.when(pl.col("device") == "tablet").then(pl.lit(HOSTILE_DEVICE)).otherwise(pl.col("device"))
        .alias("device"),
        pl.when(pl.col("event_name") == "page_view").then(pl.lit(HOSTILE_URL)).otherwise(pl.col("page_url"))
        .alias("page_url"),
        pl.when(pl.col("source") == "bing").then(pl.lit(HOSTILE_FORMULA)).otherwise(pl.col("source")).alias("source"),
    ).with_columns(pl.col("event_name").alias("raw_event_name"))


@pytest.fixture(scope="session")
def hostile_build(tmp_path_factory) -> tuple[Path, Path]:
    """Hostile events through the real pipeline: ``journeys ingest``, ``build``, ``report``."""
    root = tmp_path_factory.mktemp("hostile")
    csv = root / "hostile.csv"
    hostile_events().write_csv(csv)
    dbfile = root / "hostile.duckdb"
    for args in (("ingest", str(csv), "--db", str(dbfile)), ("build", "--db", str(dbfile)),
                 ("report", "--db", str(dbfile), "--out", str(root / "reports"))):
        done = _cli(*args)
        assert done.returncode == 0, done.stderr
    return dbfile, root / "reports" / "report.html"


# -- the browser ----------------------------------------------------------------------------------


@dataclass
class Opened:
    console_errors: list
    dialogs: list
    seconds: float
    info: dict
    screenshot: Path


def _need_browser():
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium) or set JOURNEYS_CHROMIUM")
    return playwright


PAGE_PROBE = """() => {
  const charts = Array.from(document.querySelectorAll('div.chart'));
  const handlers = [];
  for (const el of document.querySelectorAll('*')) {
    for (const a of el.attributes) {
      if (a.name.toLowerCase().startsWith('on')) handlers.push(el.tagName + '[' + a.name + ']');
    }
  }
  const scripts = Array.from(document.scripts).filter(s => (s.type || 'text/javascript') !== 'application/json');
  return {
    n_chart_divs: charts.length,
    n_drawn: charts.filter(d => d.classList.contains('js-plotly-plot') && d.data && d.data.length > 0).length,
    not_drawn: charts.filter(d => !(d.classList.contains('js-plotly-plot') && d.data && d.data.length > 0))
                     .map(d => d.id),
    drawn_attr: document.body.getAttribute('data-charts-drawn'),
    failed_attr: document.body.getAttribute('data-charts-failed'),
    handlers: handlers,
    n_exec_scripts: scripts.length,
    images: Array.from(document.images).map(i => i.getAttribute('src')),
    svg_in_body: document.querySelectorAll('main svg:not(.main-svg):not([class])').length,
    bold: document.querySelectorAll('main b').length,
    anchors: Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))
                  .filter(h => !h.startsWith('#')),
    text: document.body.innerText,
    svg_text: Array.from(document.querySelectorAll('svg text')).map(t => t.textContent).join('\\n'),
    section_errors: Array.from(document.querySelectorAll('[data-section-error]')).map(s => s.id),
  };
}"""


@pytest.fixture
def open_report(tmp_path):
    """Open a report file in headless Chromium; returns what the page did and contains."""
    playwright = _need_browser()
    manager = playwright.sync_playwright().start()
    browser = manager.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run"],
    )

    def run(report: Path, name: str = "report") -> Opened:
        context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
        page = context.new_page()
        errors, dialogs = [], []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (errors.append(f"network request: {route.request.url}"), route.abort()))
        started = time.perf_counter()
        page.goto(report.resolve().as_uri(), wait_until="load")
        page.wait_for_function("document.body.getAttribute('data-charts-drawn') !== null", timeout=60_000)
        seconds = time.perf_counter() - started
        info = page.evaluate(PAGE_PROBE)
        shot = tmp_path / f"{name}.png"
        page.screenshot(path=str(shot), full_page=True)
        opened = Opened(errors, dialogs, seconds, info, shot)
        opened.page = page  # type: ignore[attr-defined]
        return opened

    yield run
    browser.close()
    manager.stop()


def copy_for_debug(path: Path) -> None:
    """Keep an artefact when JOURNEYS_KEEP_ARTIFACTS names a folder (for looking at a failure)."""
    keep = os.environ.get("JOURNEYS_KEEP_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / path.name)
