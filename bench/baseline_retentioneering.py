"""The benchmark's Parquet through retentioneering (PyPI): its transition graph and funnel.

Runs in its own venv (``make bench`` builds ``bench/.venv-retentioneering``, pins in
``bench/requirements-retentioneering.txt``): retentioneering 5.x, its current release (Apache-2.0,
DuckDB inside). Its last 3.x (pandas inside) is left out: its licence allows only academic and
internal use, and it pulls in 1.3 GB (jupyterlab, numba); measured once at 1M it took 15.7-16.8 s.
Reads the benchmark's Parquet files (only the columns an Eventstream needs); writes nothing but the
``--out`` JSON. Steps, as a retentioneering user would write them:

- Eventstream: path (user) = coalesce(user_id, anonymous_id), event = event_name, timestamp = ts.
  There is no identity stitching: a visitor's anonymous events before sign-in are another path.
  ``--stitch`` joins them to the user the way ``sql/staging/stg_identity.sql`` does (first user_id
  seen with the anonymous_id, by ts then user_id), to check that the numbers then agree with ours;
  the benchmark runs without it.
- Transition graph edge weights with path_start / path_end, both the number of transitions and the
  number of distinct paths per edge (our transitions have n_transitions and n_users):
  ``transition_graph_data`` with edge_weight "count" and "unique_paths" (the widget's headless twin).
- Funnel view_item > add_to_cart > begin_checkout > purchase, users per step: ``funnel_data`` (a
  user is at step k after steps 1..k-1 in time order, anything between) is our ``mode='ordered'``
  funnel by user with no window, which is what the benchmark compares it with.

Telemetry: retentioneering reports usage to its authors' servers by default; this module turns it
off (RETENTIONEERING_NO_TRACK=1).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

os.environ.setdefault("RETENTIONEERING_NO_TRACK", "1")

import pandas as pd  # noqa: E402

STEPS = ["view_item", "add_to_cart", "begin_checkout", "purchase"]


def load(pattern: str, stitch: bool = False) -> pd.DataFrame:
    columns = ["user_id", "anonymous_id", "ts", "event_name"]
    events = pd.concat([pd.read_parquet(p, columns=columns) for p in sorted(glob.glob(pattern))], ignore_index=True)
    user = events["user_id"]
    if stitch:
        links = (events.dropna(subset=["anonymous_id", "user_id"]).sort_values(["ts", "user_id"])
                 .drop_duplicates("anonymous_id").set_index("anonymous_id")["user_id"])
        user = user.fillna(events["anonymous_id"].map(links))
    events["user_key"] = user.fillna(events["anonymous_id"])
    return events[["user_key", "event_name", "ts"]]


def _run(events: pd.DataFrame) -> dict[str, object]:
    from retentioneering import Eventstream

    stream = Eventstream(events, schema={"path_cols": ["user_key"], "event_col": "event_name", "timestamp_col": "ts",
                                         "custom_cols": []})
    counts = stream.transition_graph_data(edge_weight="count").stack()
    paths = stream.transition_graph_data(edge_weight="unique_paths").stack()
    funnel = stream.funnel_data(steps=list(STEPS))
    return {
        "funnel_mode": "funnel_data (ordered)",
        "funnel": [int(s["unique_paths"]) for s in funnel["steps"]],
        "edges": [[str(a), str(b), int(n), int(paths[a, b])] for (a, b), n in counts[counts > 0].items()],
    }


def run(pattern: str, out: str | None = None, stitch: bool = False) -> dict[str, object]:
    import retentioneering

    version = retentioneering.__version__
    events = load(pattern, stitch)
    result = _run(events)
    edges = result["edges"]
    result = {"version": version, "stitched": stitch, "n_events": len(events),
              "n_paths": int(events["user_key"].nunique()), "n_edges": len(edges),  # type: ignore[arg-type]
              "n_transitions": sum(e[2] for e in edges), **result}  # type: ignore[union-attr]
    if out:
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pattern", help="Parquet glob, e.g. bench/data/1m/*.parquet")
    parser.add_argument("--out", help="write the counts here as JSON")
    parser.add_argument("--stitch", action="store_true", help="stitch anonymous_id to user_id as our build does")
    args = parser.parse_args()
    json.dump(run(args.pattern, args.out, args.stitch), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
