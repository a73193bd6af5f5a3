"""The core stages written the way an analyst would in plain pandas, for the benchmark's ratio.

Reads the benchmark's Parquet files; writes nothing. Stages: dedupe by event_id, stitch
identities, sessionize at 30 minutes, session table, touchpoint-free event transitions with
path_start/path_end, and an ordered view_item > add_to_cart > purchase funnel by user.
"""

from __future__ import annotations

import glob
import sys

import pandas as pd


def run(pattern: str) -> dict[str, int]:
    events = pd.concat([pd.read_parquet(p) for p in sorted(glob.glob(pattern))], ignore_index=True)
    events = events.drop_duplicates("event_id")
    links = (events.dropna(subset=["anonymous_id", "user_id"]).sort_values("ts")
             .drop_duplicates("anonymous_id")[["anonymous_id", "user_id"]]
             .rename(columns={"user_id": "stitched"}))
    events = events.merge(links, on="anonymous_id", how="left")
    events["user_key"] = events["user_id"].fillna(events["stitched"]).fillna(events["anonymous_id"])
    events = events.sort_values(["user_key", "ts", "event_id"])
    gap = events.groupby("user_key")["ts"].diff()
    events["session"] = (gap.isna() | (gap > pd.Timedelta(minutes=30))).cumsum()
    sessions = events.groupby("session").agg(
        user_key=("user_key", "first"), started=("ts", "min"), ended=("ts", "max"), n_events=("ts", "size"),
        revenue=("revenue", "sum"),
    )
    events["previous"] = events.groupby("session")["event_name"].shift().fillna("path_start")
    edges = events.groupby(["previous", "event_name"]).size()
    ends = events.groupby("session")["event_name"].last().value_counts()
    firsts = {}
    for step in ("view_item", "add_to_cart", "purchase"):
        firsts[step] = events[events["event_name"] == step].groupby("user_key")["ts"].min()
    funnel = pd.DataFrame(firsts)
    reached_cart = funnel["add_to_cart"] >= funnel["view_item"]
    reached_purchase = reached_cart & (funnel["purchase"] >= funnel["add_to_cart"])
    return {"sessions": len(sessions), "edges": len(edges) + len(ends), "view": int(funnel["view_item"].notna().sum()),
            "cart": int(reached_cart.sum()), "purchase": int(reached_purchase.sum())}


if __name__ == "__main__":
    print(run(sys.argv[1]))
