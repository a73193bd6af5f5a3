"""Drop-off drill-down: from the stage funnel to the step that loses the most people, who they are,
what they last did, where they came from, and what fixing that step would be worth.

Reads the built tables read-only through ``pipeline.metrics.funnel`` (the funnel and the people who
dropped), ``staging.stg_touchpoints`` / ``stg_sessions`` (their last steps, channels and devices)
and ``pipeline.value.risk.whatif`` (the Markov projection); writes only temp tables and registered
views. ``notebooks/dropoff_exploration.ipynb`` is these functions called in order; the notebook
holds no logic of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipeline.db import Database
from pipeline.report.data import GOAL, ReportData

_DROPPED_VIEW = "drilldown_dropped"


@dataclass(frozen=True)
class DropStep:
    """The funnel step whose continuation rate is lowest (before the purchase)."""

    steps: tuple[str, ...]  # the funnel's steps, as given to pipeline.metrics.funnel
    at: int  # 1-based index of the step people dropped *after*
    from_step: str
    to_step: str
    n_at_step: int
    n_dropped: int
    conversion: float  # share of the people at ``from_step`` who reached ``to_step``

    @property
    def from_node(self) -> str:
        return _node(self.from_step)

    @property
    def to_node(self) -> str:
        return _node(self.to_step)

    def describe(self) -> str:
        return (f"{self.n_dropped:,} of {self.n_at_step:,} people at {self.from_node} never reached {self.to_node} "
                f"({1 - self.conversion:.1%} lost)")


def _node(step: str) -> str:
    return step.split(":", 1)[1] if ":" in step else step


def stage_funnel(db: Database) -> tuple[tuple[str, ...], pl.DataFrame]:
    """The report's stage funnel: (its steps, the per-step table of ``pipeline.metrics.funnel``)."""
    data = ReportData(db)
    return tuple(data.stage_funnel_steps), data.stage_funnel()


def largest_dropoff(steps: tuple[str, ...], funnel: pl.DataFrame) -> DropStep:
    """The step transition with the lowest conversion from the previous step, up to the purchase."""
    goal_index = steps.index(f"event:{GOAL}") + 1 if f"event:{GOAL}" in steps else len(steps)
    candidates = funnel.filter((pl.col("step_index") > 1) & (pl.col("step_index") <= goal_index)
                               & pl.col("conversion_from_previous").is_not_null())
    if candidates.height == 0:
        raise ValueError("the funnel has no step after the first one with people in it")
    worst = candidates.sort("conversion_from_previous", "step_index").row(0, named=True)
    previous = funnel.filter(pl.col("step_index") == worst["step_index"] - 1).row(0, named=True)
    return DropStep(
        steps=steps, at=int(previous["step_index"]), from_step=previous["step"], to_step=worst["step"],
        n_at_step=int(previous["n_entered"]), n_dropped=int(previous["n_dropped"]),
        conversion=float(worst["conversion_from_previous"]),
    )


def dropped_users(db: Database, step: DropStep) -> pl.DataFrame:
    """``user_key`` of everyone who reached ``step.from_step`` and did not go on (funnel drill-down)."""
    from pipeline.metrics import funnel

    return funnel.funnel_dropped(db, list(step.steps), step.at, mode="ordered", scope="user")


def _with_users(db: Database, users: pl.DataFrame, sql: str, params: dict | None = None) -> pl.DataFrame:
    db.register(_DROPPED_VIEW, users.select("user_key"))
    try:
        return db.query(sql, params)
    finally:
        db.unregister(_DROPPED_VIEW)


def last_touchpoints(db: Database, users: pl.DataFrame, n_last: int = 3, top: int = 15) -> pl.DataFrame:
    """The most common sequences of their last ``n_last`` touchpoints (channel steps included), with
    the share of the dropped people who ended that way."""
    return _with_users(db, users, """
        with steps as (
            select t.user_key, t.user_step_index, t.touchpoint
            from staging.stg_touchpoints as t
            join drilldown_dropped as d on d.user_key = t.user_key
            qualify row_number() over (partition by t.user_key order by t.user_step_index desc) <= $n_last
        ),
        sequences as (
            select user_key, string_agg(touchpoint, ' > ' order by user_step_index) as last_touchpoints
            from steps group by user_key
        )
        select last_touchpoints, count(*) as n_people, count(*) / sum(count(*)) over () as share
        from sequences group by last_touchpoints
        order by n_people desc, last_touchpoints limit $top
    """, {"n_last": n_last, "top": top})


def channel_device_mix(db: Database, users: pl.DataFrame) -> pl.DataFrame:
    """Channel and device of their last session, against everyone: where the dropped are over-represented.

    Columns: dimension ('channel' | 'device'), value, n_dropped, share_dropped, share_all, index
    (share_dropped / share_all; above 1 = more common among those who dropped)."""
    return _with_users(db, users, """
        with last_sessions as (
            select user_key, coalesce(channel, 'unknown') as channel, coalesce(device, 'unknown') as device,
                user_key in (select user_key from drilldown_dropped) as is_dropped
            from staging.stg_sessions
            qualify row_number() over (partition by user_key order by session_index desc) = 1
        ),
        long as (
            select 'channel' as dimension, channel as value, is_dropped from last_sessions
            union all
            select 'device', device, is_dropped from last_sessions
        ),
        counts as (
            select dimension, value, count(*) filter (where is_dropped) as n_dropped, count(*) as n_all
            from long group by dimension, value
        )
        select dimension, value, n_dropped,
            n_dropped / nullif(sum(n_dropped) over (partition by dimension), 0) as share_dropped,
            n_all / sum(n_all) over (partition by dimension) as share_all,
            (n_dropped / nullif(sum(n_dropped) over (partition by dimension), 0))
                / (n_all / sum(n_all) over (partition by dimension)) as index
        from counts
        order by dimension, n_dropped desc, value
    """)


def why_dropped(db: Database, step: DropStep, top: int = 15) -> pl.DataFrame:
    """What is over-represented among the people who dropped (``pipeline.metrics.funnel.funnel_why``),
    most significant first."""
    from pipeline.metrics import funnel

    return funnel.funnel_why(db, list(step.steps), step.at, mode="ordered", scope="user").head(top)


def whatif_fix(db: Database, step: DropStep, delta: float = 0.05):
    """Project conversions and revenue if ``delta`` more of the people leaving ``from_node`` moved on
    to ``to_node`` (stage-level Markov chain, ``pipeline.value.risk.whatif``)."""
    from pipeline.value import risk

    return risk.whatif(db, change=[risk.EdgeEdit(step.from_node, step.to_node, float(delta), True)],
                       level="stage", goal=GOAL)
