"""``journeys funnel`` end to end through ``python -m pipeline``: output formats and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from tests.conftest import REPO, load_events, make_journeys

STEPS = "view_item,add_to_cart,begin_checkout,purchase"


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("funnel_cli") / "journeys.duckdb"
    with Database(path) as db:
        load_events(db, make_journeys({
            "u_buys_in_order": [("view_item", 0), ("add_to_cart", 1), ("begin_checkout", 2), ("purchase", 3)],
            "u_abandons_cart": [("view_item", 0), ("add_to_cart", 1)],
            "u_skips_checkout": [("view_item", 0), ("add_to_cart", 1), ("purchase", 2)],
            "u_views_only": [("view_item", 0)],
        }))
        build(db, config.defaults())
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "JOURNEYS_DB"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "funnel", *args], capture_output=True, text=True, cwd=REPO, env=env,
        timeout=120, check=False,
    )


def test_funnel_json_rows(db_path):
    done = run("--steps", STEPS, "--window", "7d", "--format", "json", "--db", str(db_path))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["n_entered"] for r in rows] == [4, 3, 1, 1]
    assert rows[1]["conversion_from_previous"] == pytest.approx(0.75)
    assert rows[0]["median_seconds_from_previous"] is None


def test_dropped_at_exports_exact_ids_as_csv(db_path):
    done = run("--steps", STEPS, "--dropped-at", "2", "--format", "csv", "--db", str(db_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["user_key", "u_abandons_cart", "u_skips_checkout"]


def test_why_runs_as_a_table(db_path):
    done = run("--steps", STEPS, "--why", "1", "--min-count", "1", "--db", str(db_path))
    assert done.returncode == 0, done.stderr
    assert "why they dropped at step 1" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--steps", "view_item,add_to_crt"), "did you mean 'add_to_cart'?"),
        (("--steps", STEPS, "--mode", "sideways"), "mode must be one of ordered, strict, unordered, open, reach"),
        (("--steps", STEPS, "--dropped-at", "4"), "must be a step number from 1 to 3"),
        (("--steps", STEPS, "--dropped-at", "1", "--why", "1"), "give either --dropped-at or --why, not both"),
        (("--steps", STEPS, "--by", "segment"), "--by segment needs a segments mapping"),
    ],
)
def test_usage_errors_exit_2_with_one_line(db_path, args, message):
    done = run(*args, "--db", str(db_path))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("usage error:")
    assert message in done.stderr


def test_missing_database_exits_1(tmp_path):
    done = run("--steps", STEPS, "--db", str(tmp_path / "missing.duckdb"))
    assert done.returncode == 1
    assert "does not exist" in done.stderr
