"""The value commands end to end through the real CLI (subprocess) on a real DuckDB file: exit codes
(0 ok, 1 handled failure, 2 usage error) and JSON output (an array of row objects, or one object for
the fitted CLV parameters)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipeline.build import build
from pipeline.db import Database
from tests.conftest import REPO, load_events, make_journeys


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


@pytest.fixture(scope="module")
def dbfile(tmp_path_factory):
    from pipeline import config
    from pipeline.simulate import simulate

    path = tmp_path_factory.mktemp("cli") / "value.duckdb"
    db = Database(path)
    load_events(db, simulate(users=2000, days=90, seed=7))
    build(db, config.defaults())
    db.close()
    return str(path)


def _json(*args):
    out = _cli(*args, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_clv_json(dbfile):
    params = _json("clv", "--db", dbfile)
    assert isinstance(params, dict)
    for key in ("r", "alpha", "a", "b", "p", "q", "gamma", "bgnbd_log_likelihood", "gamma_gamma_log_likelihood"):
        assert isinstance(params[key], float), key
    assert params["time_unit"] == "day" and params["horizon_months"] == 12
    week = _json("clv", "--db", dbfile, "--time-unit", "week", "--horizon", "6", "--discount-rate", "0.02",
                 "--calibration-end", "2025-03-31")
    assert week["calibration_end"] == "2025-03-31" and week["alpha"] < params["alpha"]
    customers = _json("clv", "--db", dbfile, "--customers")
    assert isinstance(customers, list) and len(customers) == params["n_customers"]
    assert {"user_key", "frequency", "recency", "age", "p_alive", "expected_purchases", "predicted_clv",
            "net_revenue"} <= set(customers[0])
    assert sum(c["predicted_clv"] for c in customers) == pytest.approx(params["total_predicted_clv"])
    stages = _json("clv", "--db", dbfile, "--by", "stage")
    assert [s["value"] for s in stages][-1] == "Loyalty"
    assert sum(s["n_users"] for s in stages) >= len(customers)


def test_clv_table_and_csv(dbfile):
    table = _cli("clv", "--db", dbfile)
    assert table.returncode == 0 and "alpha" in table.stdout and "gamma_gamma_log_likelihood" in table.stdout
    csv = _cli("clv", "--db", dbfile, "--by", "device", "--format", "csv")
    assert csv.returncode == 0 and csv.stdout.splitlines()[0].startswith("dimension,value,sort_order,n_users")


def test_attribution_json(dbfile):
    wide = _json("attribution", "--db", dbfile)
    assert {"channel", "first", "last", "linear", "position", "time_decay", "markov", "shapley"} == set(wide[0])
    for model in ("first", "last", "markov", "shapley"):
        totals = sum(row[model] for row in wide)
        assert totals == pytest.approx(sum(row["last"] for row in wide))  # every model credits every conversion
    ci = _json("attribution", "--db", dbfile, "--model", "linear", "--ci", "--n-boot", "20", "--lookback", "14d")
    assert all(r["conversions_lower"] <= r["conversions"] <= r["conversions_upper"] for r in ci)
    touch = _json("attribution", "--db", dbfile, "--model", "last", "--level", "touchpoint")
    assert "touchpoint" in touch[0]


def test_risk_whatif_propensity_json(dbfile):
    rows = _json("risk", "--db", dbfile, "--value-basis", "aov")
    assert {"touchpoint", "stage"} <= {r["level"] for r in rows}
    assert all(r["revenue_at_risk"] >= 0 for r in rows)
    clv_rows = _json("risk", "--db", dbfile, "--level", "stage")
    assert {r["value_basis"] for r in clv_rows} == {"clv"}
    assert clv_rows[0]["value_per_conversion"] > rows[0]["value_per_conversion"]
    same = _json("whatif", "--db", dbfile, "--change", "cart>checkout=+0")
    assert len(same) == 1 and same[0]["p_projected"] == pytest.approx(same[0]["p_current"])
    assert same[0]["revenue_projected"] == pytest.approx(same[0]["revenue_current"])
    up = _json("whatif", "--db", dbfile, "--change", "cart>checkout=+0.05")[0]
    assert up["p_projected"] > up["p_current"] and up["conversions_projected"] > up["conversions_current"]
    nodes = _json("whatif", "--db", dbfile, "--level", "stage", "--remove", "Consideration", "--nodes")
    assert {"node", "p_goal_current", "p_goal_projected"} == set(nodes[0])
    props = _json("propensity", "--db", dbfile, "--level", "stage")
    assert props[0]["node"] == "purchase" and props[0]["p_goal"] == 1.0


def test_usage_errors_exit_2(dbfile):
    for args, message in (
        (("clv", "--time-unit", "month"), "--time-unit must be one of"),
        (("clv", "--calibration-end", "2025-02-30"), "--calibration-end must be a date"),
        (("clv", "--by", "planet"), "--by must be one of"),
        (("clv", "--by", "segment"), "needs --segments"),
        (("clv", "--horizon", "0"), "horizon"),
        (("attribution", "--model", "lasst"), "--model must be one of"),
        (("attribution", "--lookback", "soon"), "lookback"),
        (("whatif", "--change", "cart>chekout=+0.1"), "did you mean 'checkout'"),
        (("whatif", "--change", "cart=0.1"), "FROM>TO=VALUE"),
        (("risk", "--goal", "purchse"), "did you mean 'purchase'"),
        (("propensity", "--format", "xml"), "--format must be"),
    ):
        out = _cli(*args, "--db", dbfile)
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


def test_handled_failures_exit_1(tmp_path, cfg):
    missing = _cli("clv", "--db", str(tmp_path / "none.duckdb"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    tiny = tmp_path / "tiny.duckdb"
    db = Database(tiny)
    load_events(db, make_journeys({"u1": [("view_item", 0), ("purchase", 1, {"revenue": 10.0})]}))
    build(db, cfg)
    db.close()
    out = _cli("clv", "--db", str(tiny))
    assert out.returncode == 1 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    early = _cli("clv", "--db", str(tiny), "--calibration-end", "2020-01-01")
    assert early.returncode == 1 and "no customer made a first purchase" in early.stderr
    # value by segment still answers with the historical part, and says why the rest is missing
    by_stage = _cli("clv", "--db", str(tiny), "--by", "stage", "--format", "json")
    assert by_stage.returncode == 0 and "historical value only" in by_stage.stderr
    assert json.loads(by_stage.stdout)[-1]["historical_revenue"] == 10.0
