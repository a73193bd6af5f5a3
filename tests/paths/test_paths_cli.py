"""The path-mining commands end to end through the real CLI (subprocess), on a real DuckDB file."""

from __future__ import annotations

import json
import subprocess
import sys

from pipeline.build import build
from pipeline.db import Database
from tests.conftest import REPO, load_events, make_journeys


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_transitions_and_paths_commands(tmp_path, cfg):
    dbfile = tmp_path / "cli.duckdb"
    db = Database(dbfile)
    load_events(db, make_journeys({
        "u1": [("view_item", 0), ("add_to_cart", 1), ("purchase", 2)],
        "u2": [("view_item", 0), ("add_to_cart", 1)],
    }))
    build(db, cfg)
    db.close()
    out = _cli("transitions", "--db", str(dbfile), "--scope", "session", "--level", "event", "--format", "json",
               "--export-graph", str(tmp_path / "g.graphml"))
    assert out.returncode == 0, out.stderr
    edges = {(e["from_node"], e["to_node"]): e["n_transitions"] for e in json.loads(out.stdout)}
    assert edges == {("path_start", "view_item"): 2, ("view_item", "add_to_cart"): 2, ("add_to_cart", "purchase"): 1,
                     ("add_to_cart", "path_end"): 1, ("purchase", "path_end"): 1}
    assert (tmp_path / "g.graphml").read_text().startswith("<?xml")
    drop = _cli("paths", "--db", str(dbfile), "--view", "dropoff", "--level", "event", "--format", "csv")
    assert drop.returncode == 0, drop.stderr
    assert drop.stdout.splitlines()[1].startswith("add_to_cart,1,2,0.5")
    back = _cli("paths", "--db", str(dbfile), "--view", "backtracking", "--format", "json")
    assert back.returncode == 0 and json.loads(back.stdout)["n_journeys"] == 2
    bad = _cli("paths", "--db", str(dbfile), "--view", "sideways")
    assert bad.returncode == 2 and "--view must be one of" in bad.stderr
    goal = _cli("paths", "--db", str(dbfile), "--goal", "purchse")
    assert goal.returncode == 2 and "did you mean 'purchase'" in goal.stderr and "Traceback" not in goal.stderr
