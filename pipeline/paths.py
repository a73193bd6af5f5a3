"""Path mining: transition graphs, path variants, drop-off points, effort to purchase, non-linear
journeys and path drivers.

Reads ``staging.stg_touchpoints`` (and ``staging.stg_users``) through the analysis queries in
``sql/analysis/``; writes only a temp table ``journey_steps`` for the duration of a request, so it
works on a read-only connection. Set-based work is SQL; networkx gets the aggregated edge table;
statistics on aggregated counts use ``pipeline.metrics.stats``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import networkx as nx
import numpy as np
import polars as pl

from pipeline.db import Database, load_sql
from pipeline.metrics import stats

Scope = Literal["session", "user"]
Level = Literal["event", "touchpoint", "stage"]
Outcome = Literal["all", "converted", "abandoned"]
SCOPES: tuple[str, ...] = ("session", "user")
LEVELS: tuple[str, ...] = ("event", "touchpoint", "stage")
OUTCOMES: tuple[str, ...] = ("all", "converted", "abandoned")
PATH_START, PATH_END = "path_start", "path_end"


class PathError(ValueError):
    """A request that cannot be answered as asked (unknown goal or node); the message says why."""


@dataclass(frozen=True)
class PathOptions:
    """How journeys are cut and cleaned; every option comes from this closed list."""

    scope: Scope = "user"
    level: Level = "touchpoint"
    goal: str = "purchase"
    collapse_repeats: bool = False
    exclude: tuple[str, ...] = ()
    rename: tuple[tuple[str, str], ...] = ()  # (regex, replacement): first match rewrites the node
    first_n: int = 0
    last_n: int = 0
    until_goal: bool = False
    goal_kind: Literal["event", "touchpoint"] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise PathError(f"scope must be one of {', '.join(SCOPES)}, not {self.scope!r}")
        if self.level not in LEVELS:
            raise PathError(f"level must be one of {', '.join(LEVELS)}, not {self.level!r}")
        if self.first_n < 0 or self.last_n < 0:
            raise PathError("first_n and last_n must be >= 0 (0 keeps every step)")


def _resolve_goal(db: Database, options: PathOptions) -> tuple[str, str]:
    """Which column the goal names: an event name first, then a touchpoint; else a clear error."""
    if options.goal_kind is not None:
        return options.goal, options.goal_kind
    found = db.query(
        "select bool_or(event_name = $goal) as is_event, bool_or(touchpoint = $goal) as is_touchpoint "
        "from staging.stg_touchpoints",
        {"goal": options.goal},
    ).row(0)
    if found[0]:
        return options.goal, "event"
    if found[1]:
        return options.goal, "touchpoint"
    names = db.query(
        "select distinct event_name as name from staging.stg_touchpoints where event_name is not null "
        "union select distinct touchpoint from staging.stg_touchpoints"
    )["name"].to_list()
    close = difflib.get_close_matches(options.goal, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise PathError(f"goal {options.goal!r} is neither an event name nor a touchpoint in the data{hint}")


def journey_params(db: Database, options: PathOptions) -> dict[str, object]:
    goal, goal_kind = _resolve_goal(db, options)
    return {
        "scope": options.scope,
        "level": options.level,
        "goal": goal,
        "goal_kind": goal_kind,
        "rename_patterns": [p for p, _ in options.rename],
        "rename_replacements": [r for _, r in options.rename],
        "exclude": list(options.exclude),
        "collapse_repeats": options.collapse_repeats,
        "first_n": options.first_n,
        "last_n": options.last_n,
        "until_goal": options.until_goal,
    }


def prepare_steps(db: Database, options: PathOptions) -> None:
    """Materialise the cleaned journeys of one request as the temp table ``journey_steps``."""
    db.materialize_request("journey_steps", load_sql("analysis/journey_steps.sql"), journey_params(db, options))


def _run(db: Database, options: PathOptions, query: str, params: dict[str, object] | None = None) -> pl.DataFrame:
    prepare_steps(db, options)
    return db.query(load_sql(f"analysis/{query}.sql"), params)


# -- transition graph ---------------------------------------------------------------------------
# sql/analysis/transitions.sql on the journeys as prepared (pipeline/value/risk.py renames the goal)
AS_PREPARED: dict[str, object] = {"goal_node": None, "collapse_renamed": False, "count_users": True}


def transitions(db: Database, options: PathOptions = PathOptions()) -> pl.DataFrame:
    """Every edge: from_node, to_node, n_transitions, n_users, probability (no truncation)."""
    if options == PathOptions(scope=options.scope, level=options.level, goal=options.goal):
        # Journeys without cleaning are the stored steps as they are: the edges come straight from
        # stg_touchpoints, without preparing journey_steps (sql/analysis/transitions_stored.sql).
        _resolve_goal(db, options)  # an unknown goal is refused on either route
        return db.query(load_sql("analysis/transitions_stored.sql"), {"scope": options.scope, "level": options.level})
    return _run(db, options, "transitions", AS_PREPARED)


def transition_graph(edges: pl.DataFrame) -> nx.DiGraph:
    """The edge table as a networkx DiGraph; edge attributes are the table's columns."""
    graph = nx.DiGraph()
    for row in edges.iter_rows(named=True):  # one row per aggregated edge, never per event
        graph.add_edge(row["from_node"], row["to_node"], **{k: v for k, v in row.items() if k not in ("from_node",
                                                                                                     "to_node")})
    return graph


def export_graph(graph: nx.DiGraph, path: str | Path, fmt: Literal["graphml", "json"]) -> Path:
    from pipeline.files import atomic_write

    target = Path(path)
    if fmt == "graphml":
        atomic_write(target, '<?xml version="1.0" encoding="utf-8"?>\n' + "\n".join(nx.generate_graphml(graph)))
    else:
        atomic_write(target, json.dumps(nx.node_link_data(graph, edges="links"), indent=1))
    return target


def next_previous(db: Database, node: str, options: PathOptions = PathOptions()) -> pl.DataFrame:
    """For one node, the share of each node right after it and right before it."""
    edges = transitions(db, options)
    if node not in set(edges["from_node"]) | set(edges["to_node"]):
        close = difflib.get_close_matches(node, sorted(set(edges["from_node"])), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise PathError(f"node {node!r} is not in the journeys{hint}")
    after = edges.filter(pl.col("from_node") == node).select(
        pl.lit("next").alias("direction"), pl.col("to_node").alias("node"), "n_transitions",
        (pl.col("n_transitions") / pl.col("n_transitions").sum()).alias("share"),
    )
    before = edges.filter(pl.col("to_node") == node).select(
        pl.lit("previous").alias("direction"), pl.col("from_node").alias("node"), "n_transitions",
        (pl.col("n_transitions") / pl.col("n_transitions").sum()).alias("share"),
    )
    return pl.concat([after, before]).sort("direction", "n_transitions", "node", descending=[False, True, False])


# -- paths and drop-off -------------------------------------------------------------------------
def path_variants(
    db: Database,
    options: PathOptions = PathOptions(),
    *,
    top: int = 20,
    starting_at: str | None = None,
    ending_at: str | None = None,
    max_steps: int = 0,
    outcome: Outcome = "all",
) -> pl.DataFrame:
    """The most frequent complete paths with count, share, conversion rate and median duration."""
    if starting_at and ending_at:
        raise PathError("give --starting-at or --ending-at, not both")
    if outcome not in OUTCOMES:
        raise PathError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
    if top < 1 or max_steps < 0:
        raise PathError("top must be >= 1 and max_steps >= 0")
    return _run(db, options, "path_variants", {
        "starting_at": starting_at, "ending_at": ending_at, "max_steps": max_steps, "outcome": outcome, "top": top,
    })


def dropoffs(db: Database, options: PathOptions = PathOptions()) -> pl.DataFrame:
    """Drop-off points ranked: where non-converting journeys end, with rate and previous nodes."""
    return _run(db, options, "dropoffs")


# -- effort to purchase -------------------------------------------------------------------------
def touchpoints_to_goal(db: Database, options: PathOptions = PathOptions()) -> pl.DataFrame:
    """Per converting user: touchpoints, sessions, channels and days before the first goal step."""
    user_options = PathOptions(**{**_fields(options), "scope": "user", "until_goal": True, "first_n": 0,
                                  "last_n": 0})
    return _run(db, user_options, "touchpoints_to_goal")


def effort_summary(per_user: pl.DataFrame, by: str | None = "acquisition_channel") -> pl.DataFrame:
    """Quantiles of each effort measure, overall and per group, with both tails (p10 and p90)."""
    measures = ("n_touchpoints", "n_sessions", "n_channels", "days_to_goal")
    frames = [per_user.with_columns(pl.lit("all").alias("group"))]
    if by:
        frames.append(per_user.with_columns(pl.col(by).fill_null("unknown").alias("group")))
    data = pl.concat(frames)
    aggregations = [pl.len().alias("n_converted")]
    for m in measures:
        aggregations += [
            pl.col(m).quantile(0.1, "nearest").alias(f"{m}_p10"),
            pl.col(m).median().alias(f"{m}_median"),
            pl.col(m).quantile(0.9, "nearest").alias(f"{m}_p90"),
            pl.col(m).mean().alias(f"{m}_mean"),
        ]
    return data.group_by("group").agg(aggregations).sort(pl.col("group") != "all", "group")


def effort_histogram(per_user: pl.DataFrame, measure: str = "n_touchpoints") -> pl.DataFrame:
    """How many converting users needed each number of touchpoints (or sessions, channels)."""
    return (
        per_user.group_by(measure).agg(pl.len().alias("n_users")).sort(measure)
        .with_columns((pl.col("n_users") / pl.col("n_users").sum()).alias("share"))
    )


# -- non-linear journeys ------------------------------------------------------------------------
def stage_moves(db: Database, options: PathOptions = PathOptions()) -> pl.DataFrame:
    return _run(db, PathOptions(**{**_fields(options), "level": "stage"}), "stage_moves")


def stage_matrix(db: Database, options: PathOptions = PathOptions()) -> pl.DataFrame:
    """Stage to stage moves (going back included) with probability and median time in stage."""
    moves = stage_moves(db, options)
    return (
        moves.group_by("from_stage", "to_stage")
        .agg(
            pl.len().alias("n_transitions"),
            pl.col("is_backward").first(),
            pl.col("seconds_in_stage").median().alias("median_seconds_in_stage"),
        )
        .with_columns((pl.col("n_transitions") / pl.col("n_transitions").sum().over("from_stage")).alias("probability"))
        .sort("from_stage", "n_transitions", descending=[False, True])
    )


def backtracking(db: Database, options: PathOptions = PathOptions()) -> dict[str, object]:
    """Share of journeys that go back to an earlier stage, and how those journeys convert."""
    moves = stage_moves(db, options)
    journeys = moves.group_by("journey_id").agg(
        pl.col("is_backward").any().alias("has_backtrack"), pl.col("is_converted").first()
    )
    n = journeys.height
    back = journeys.filter(pl.col("has_backtrack"))
    rest = journeys.filter(~pl.col("has_backtrack"))
    z, p = stats.two_proportion_test(back["is_converted"].sum(), back.height, rest["is_converted"].sum(), rest.height)
    return {
        "n_journeys": n,
        "n_backtracking": back.height,
        "backtracking_share": back.height / n if n else None,
        "conversion_rate_backtracking": back["is_converted"].mean() if back.height else None,
        "conversion_rate_linear": rest["is_converted"].mean() if rest.height else None,
        "p_value": None if np.isnan(p) else float(p),
    }


def backward_transitions(db: Database, options: PathOptions = PathOptions()) -> pl.DataFrame:
    moves = stage_moves(db, options).filter(pl.col("is_backward"))
    return (
        moves.group_by("from_stage", "to_stage").agg(pl.len().alias("n_transitions"),
                                                     pl.col("journey_id").n_unique().alias("n_journeys"))
        .sort("n_transitions", "from_stage", descending=[True, False])
    )


def loops(db: Database, options: PathOptions = PathOptions()) -> pl.DataFrame:
    """A > B > A loops with counts and the conversion of journeys that loop."""
    return _run(db, options, "loops")


def channel_mix(db: Database, options: PathOptions = PathOptions()) -> pl.DataFrame:
    """Single- versus cross-channel journeys: counts, conversion with Wilson bounds, and a z-test."""
    frame = _run(db, options, "channel_mix")
    low, high = stats.wilson_interval(frame["n_converted"].to_numpy(), frame["n_journeys"].to_numpy())
    frame = frame.with_columns(pl.Series("conversion_rate_low", low), pl.Series("conversion_rate_high", high))
    if frame.height == 2:
        a, b = frame.row(0, named=True), frame.row(1, named=True)
        _, p = stats.two_proportion_test(a["n_converted"], a["n_journeys"], b["n_converted"], b["n_journeys"])
        frame = frame.with_columns(pl.lit(float(p)).alias("p_value"))
    return frame


# -- path drivers -------------------------------------------------------------------------------
def path_drivers(db: Database, options: PathOptions = PathOptions(), *, min_journeys: int = 10) -> pl.DataFrame:
    """Sub-paths (2-4 nodes) over- or under-represented before conversion versus abandonment.

    For each sub-path: journeys with it that converted / abandoned, the conversion rate with it
    and without it, lift = P(convert | with) / P(convert), the odds ratio with a Woolf interval, a
    chi-square p-value and its Benjamini-Hochberg adjustment over all sub-paths tested.
    """
    prepare_steps(db, PathOptions(**{**_fields(options), "until_goal": True}))
    totals = db.query(
        "select count(distinct journey_id) filter (where is_converted) as c, "
        "count(distinct journey_id) filter (where not is_converted) as a from journey_steps"
    ).row(0)
    n_conv, n_aband = int(totals[0] or 0), int(totals[1] or 0)
    grams = db.query(load_sql("analysis/ngrams.sql")).filter(
        pl.col("n_converted_with") + pl.col("n_abandoned_with") >= min_journeys
    )
    if grams.height == 0 or n_conv == 0 or n_aband == 0:
        return grams.with_columns(*(pl.lit(None, pl.Float64).alias(c) for c in (
            "conversion_rate_with", "conversion_rate_without", "lift", "odds_ratio", "odds_ratio_low",
            "odds_ratio_high", "p_value", "p_adjusted")))
    a = grams["n_converted_with"].to_numpy()
    b = grams["n_abandoned_with"].to_numpy()
    c, d = n_conv - a, n_aband - b
    ratio, low, high, p = stats.odds_ratio(a, b, c, d)
    base = n_conv / (n_conv + n_aband)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_with = a / (a + b)
        rate_without = np.where(c + d > 0, c / (c + d), np.nan)
    return grams.with_columns(
        pl.Series("conversion_rate_with", rate_with),
        pl.Series("conversion_rate_without", rate_without),
        pl.Series("lift", rate_with / base),
        pl.Series("odds_ratio", ratio),
        pl.Series("odds_ratio_low", low),
        pl.Series("odds_ratio_high", high),
        pl.Series("p_value", p),
        pl.Series("p_adjusted", stats.benjamini_hochberg(p)),
    ).sort("p_value", "ngram")


def _fields(options: PathOptions) -> dict[str, object]:
    return {f: getattr(options, f) for f in options.__dataclass_fields__}


def parse_rename(values: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``["^/product/.*=product_page", ...]`` -> ((pattern, replacement), ...)."""
    rules = []
    for value in values:
        pattern, sep, replacement = value.rpartition("=")
        if not sep or not pattern:
            raise PathError(f"--rename {value!r} must look like REGEX=NEW_NAME")
        rules.append((pattern, replacement))
    return tuple(rules)
