"""Data gathering for the report and the exports: every number the report shows comes from here.

Reads the built tables through the package's analysis APIs (``pipeline.paths``,
``pipeline.metrics.*``, ``pipeline.value.*``) and a few aggregate queries of its own on the staging
tables; writes only temp tables (the analysis APIs' ``journey_steps`` and metric tables), so it runs
on a read-only connection. No number is computed twice: a :class:`ReportData` caches each result for
the sections that share it.

The reference time is the data's own: the last day with a session start. "Current" is the last 28
days up to and including it, "previous" the 28 days before (never the wall clock).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline import paths
from pipeline.db import Database, load_sql

# Imported at the top: no metric module imports pipeline.report, so there is no cycle. Inside ReportData the
# module names (journey_map, personas, experiments) are the modules: methods of the same name do not shadow
# globals.
from pipeline.metrics import abandonment, conversion, experiments, funnel, journey_map, personas, segments, stats

PERIOD_DAYS = 28
GOAL = "purchase"
SANKEY_TOP, SANKEY_TOP_CONVERTED = 14, 6


@dataclass(frozen=True)
class Period:
    """Both periods are whole UTC days, first and last day included."""

    data_first_day: dt.date
    data_last_day: dt.date
    current: tuple[dt.date, dt.date]
    previous: tuple[dt.date, dt.date]

    @property
    def has_previous(self) -> bool:
        return self.previous[0] >= self.data_first_day

    def label(self, which: str) -> str:
        a, b = self.current if which == "current" else self.previous
        return f"{a:%d %b} – {b:%d %b %Y}"


class ReportData:
    """Lazily computed, cached inputs of the report sections (one instance per report)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- helpers --------------------------------------------------------------------------------
    def _analysis(self, options: paths.PathOptions, query: str, params: dict[str, Any] | None = None) -> pl.DataFrame:
        """One ``sql/analysis`` query on the journeys of ``options`` (prepared once per options and data)."""
        paths.prepare_steps(self.db, options)
        return self.db.query(load_sql(f"analysis/{query}.sql"), params)

    # -- period and KPIs ------------------------------------------------------------------------
    @functools.cached_property
    def period(self) -> Period:
        first, last = self.db.query(
            "select cast(min(started_at) as date) as first_day, cast(max(started_at) as date) as last_day "
            "from staging.stg_sessions"
        ).row(0)
        if last is None:
            raise ValueError("there are no sessions; load and build data first")
        cur = (last - dt.timedelta(days=PERIOD_DAYS - 1), last)
        prev = (cur[0] - dt.timedelta(days=PERIOD_DAYS), cur[0] - dt.timedelta(days=1))
        return Period(first, last, cur, prev)

    @functools.cached_property
    def currency(self) -> str | None:
        return self.db.scalar(
            "select mode(currency) from staging.stg_events where revenue is not null and currency is not null"
        )

    @functools.cached_property
    def totals(self) -> dict[str, Any]:
        return self.db.query(
            "select (select count(*) from staging.stg_events) as n_events, "
            "(select count(*) from staging.stg_sessions) as n_sessions, "
            "(select count(*) from staging.stg_users) as n_users, "
            "(select cast(sum(revenue) as double) from staging.stg_sessions) as revenue, "
            "(select sum(n_purchases) from staging.stg_sessions) as n_orders, "
            "(select count(*) from staging.stg_users where is_customer) as n_customers"
        ).row(0, named=True)

    @functools.cached_property
    def period_counts(self) -> pl.DataFrame:
        """Per period (current, previous): sessions, users, orders, revenue, new customers."""
        p = self.period
        return self.db.query(
            """
            with periods as (
                select 'current' as period, cast($cur_start as date) as first_day, cast($cur_end as date) as last_day
                union all
                select 'previous', cast($prev_start as date), cast($prev_end as date)
            ),
            sessions as (
                select s.*, cast(s.started_at as date) as day from staging.stg_sessions as s
            ),
            per_period as (
                select
                    p.period,
                    count(s.session_key) as n_sessions,
                    count(distinct s.user_key) as n_users,
                    coalesce(sum(s.n_purchases), 0) as n_orders,
                    coalesce(cast(sum(s.revenue) as double), 0) as revenue
                from periods as p
                left join sessions as s on s.day between p.first_day and p.last_day
                group by p.period
            ),
            new_customers as (
                select p.period, count(u.user_key) as n_new_customers
                from periods as p
                left join staging.stg_users as u
                    on cast(u.first_purchase_session_at as date) between p.first_day and p.last_day
                group by p.period
            )
            select pp.*, nc.n_new_customers
            from per_period as pp join new_customers as nc on pp.period = nc.period
            order by pp.period
            """,
            {"cur_start": p.current[0], "cur_end": p.current[1], "prev_start": p.previous[0],
             "prev_end": p.previous[1]},
        )

    @functools.cached_property
    def weekly(self) -> pl.DataFrame:
        """Sessions, conversion and revenue per ISO week (Monday) of session start, for the trend."""
        return self.db.query(
            "select cast(date_trunc('week', started_at) as date) as week, count(*) as n_sessions, "
            "avg(cast(has_purchase as double)) as conversion_rate, cast(sum(revenue) as double) as revenue "
            "from staging.stg_sessions group by week order by week"
        )

    @functools.cached_property
    def before_after(self) -> pl.DataFrame:
        """``pipeline.metrics.experiments.compare_periods`` of the previous vs the current period."""
        return experiments.compare_periods(self.db, self.period.previous, self.period.current)

    def kpi_table(self) -> pl.DataFrame:
        """Every headline KPI: current, previous, change, p-value (adjusted) where a test applies."""
        counts = {r["period"]: r for r in self.period_counts.iter_rows(named=True)}
        cur, prev = counts["current"], counts["previous"]
        rows: list[dict[str, Any]] = []
        for key, label in (("n_sessions", "Sessions"), ("n_users", "Visitors"), ("n_orders", "Orders"),
                           ("revenue", "Revenue"), ("n_new_customers", "New customers")):
            a, b = float(prev[key] or 0), float(cur[key] or 0)
            rows.append({"metric": key, "label": label, "kind": "count", "previous": a, "current": b,
                         "change": (b - a) / a if a else None, "p_value": None, "p_adjusted": None,
                         "is_significant": None})
        try:
            compared = self.before_after
        except Exception:  # noqa: BLE001 - the counts stand on their own
            compared = None
        if compared is not None:
            labels = {"session_conversion_rate": "Conversion rate (sessions)",
                      "cart_abandonment_rate": "Cart abandonment", "checkout_abandonment_rate": "Checkout abandonment",
                      "average_order_value": "Average order value", "revenue_per_session": "Revenue per session",
                      "user_conversion_rate": "Conversion rate (visitors)"}
            for r in compared.iter_rows(named=True):
                if r["metric"] not in labels:
                    continue
                rows.append({"metric": r["metric"], "label": labels[r["metric"]], "kind": r["kind"],
                             "previous": r["before_value"], "current": r["after_value"],
                             "change": r["difference"] if r["kind"] == "rate" else r["relative_change"],
                             "p_value": r["p_value"], "p_adjusted": r["p_adjusted"],
                             "is_significant": r["is_significant"]})
        p = self.period
        return pl.DataFrame(rows, schema={
            "metric": pl.String, "label": pl.String, "kind": pl.String, "previous": pl.Float64,
            "current": pl.Float64, "change": pl.Float64, "p_value": pl.Float64, "p_adjusted": pl.Float64,
            "is_significant": pl.Boolean,
        }).with_columns(
            pl.lit(p.previous[0]).alias("previous_first_day"), pl.lit(p.previous[1]).alias("previous_last_day"),
            pl.lit(p.current[0]).alias("current_first_day"), pl.lit(p.current[1]).alias("current_last_day"),
        )

    @functools.cached_property
    def channel_changes(self) -> pl.DataFrame:
        """Session conversion per channel, previous vs current period, z-test, BH-adjusted."""
        p = self.period
        one = dt.timedelta(days=1)
        before = conversion.conversion_rates(self.db, by="channel", start=p.previous[0], end=p.previous[1] + one)
        after = conversion.conversion_rates(self.db, by="channel", start=p.current[0], end=p.current[1] + one)
        joined = before.select("group", pl.col("n_units").alias("n_before"), pl.col("n_converted").alias("x_before"),
                               pl.col("conversion_rate").alias("rate_before")).join(
            after.select("group", pl.col("n_units").alias("n_after"), pl.col("n_converted").alias("x_after"),
                         pl.col("conversion_rate").alias("rate_after")), on="group", how="full", coalesce=True,
        ).fill_null(0)
        _, pv = stats.two_proportion_test(joined["x_after"].to_numpy(), joined["n_after"].to_numpy(),
                                          joined["x_before"].to_numpy(), joined["n_before"].to_numpy())
        return joined.with_columns(
            (pl.col("rate_after") - pl.col("rate_before")).alias("difference"),
            pl.Series("p_value", pv),
            pl.Series("p_adjusted", stats.benjamini_hochberg(pv)),
        ).rename({"group": "channel"}).sort("n_after", descending=True)

    # -- journey map, funnel --------------------------------------------------------------------
    @functools.cached_property
    def journey_map_frame(self) -> pl.DataFrame:
        return journey_map.from_mart(self.db)  # the build's mart: user scope, goal purchase, top 3

    def journey_map(self) -> pl.DataFrame:
        frame = self.journey_map_frame
        risk = self.stage_risk_marks
        return frame.join(risk, on="stage", how="left") if risk is not None else frame

    @functools.cached_property
    def touchpoint_stages(self) -> dict[str, str]:
        rows = self.db.query(
            "select touchpoint, any_value(stage) as stage from staging.stg_touchpoints "
            "where touchpoint is not null group by touchpoint"
        )
        return dict(rows.iter_rows())

    @functools.cached_property
    def stage_risk_marks(self) -> pl.DataFrame | None:
        """Per stage: its touchpoint with the most revenue at risk (the drop-off point to mark)."""
        try:
            risk = self.revenue_at_risk.filter(pl.col("level") == "touchpoint")
        except Exception:  # noqa: BLE001 - the map is drawn without marks
            return None
        stages = self.touchpoint_stages
        marked = risk.with_columns(pl.col("node").replace_strict(stages, default=None).alias("stage")).filter(
            pl.col("stage").is_not_null() & (pl.col("revenue_at_risk") > 0)
        )
        if marked.height == 0:
            return None
        top = marked.sort("revenue_at_risk", descending=True).group_by("stage", maintain_order=True).first()
        return top.select(
            "stage", pl.col("node").alias("dropoff_touchpoint"), pl.col("n_dropoffs").alias("dropoff_n"),
            pl.col("revenue_at_risk").alias("dropoff_revenue_at_risk"),
        )

    @functools.cached_property
    def stage_names(self) -> list[str]:
        rows = self.db.query(
            "select stage, min(stage_order) as stage_order from staging.stg_touchpoints "
            "where stage_order is not null group by stage order by stage_order, stage"
        )
        return rows["stage"].to_list()

    @functools.cached_property
    def goal_stage_order(self) -> int | None:
        """The stage order of the goal's steps (the purchase)."""
        return self.db.scalar(
            "select min(stage_order) from staging.stg_touchpoints where event_name = $goal", {"goal": GOAL}
        )

    @functools.cached_property
    def post_goal_nodes(self) -> set[str]:
        """Touchpoints that are the goal or come after it (leaving there is not a drop-off)."""
        rows = self.db.query(
            "select distinct touchpoint from staging.stg_touchpoints "
            "where event_name = $goal or stage_order > (select min(stage_order) from staging.stg_touchpoints "
            "where event_name = $goal)",
            {"goal": GOAL},
        )
        return set(rows["touchpoint"].to_list())

    @functools.cached_property
    def stage_funnel_steps(self) -> list[str]:
        """The stages in order with the purchase itself after the goal's stage: the stage funnel."""
        goal_order = self.goal_stage_order
        orders = dict(self.db.query(
            "select stage, min(stage_order) from staging.stg_touchpoints where stage_order is not null group by stage"
        ).iter_rows())
        steps: list[str] = []
        for name in self.stage_names:
            if goal_order is not None and orders[name] > goal_order and f"event:{GOAL}" not in steps:
                steps.append(f"event:{GOAL}")
            steps.append(f"stage:{name}")
        if goal_order is not None and f"event:{GOAL}" not in steps:
            steps.append(f"event:{GOAL}")
        return steps

    @functools.cached_property
    def stage_funnel_frame(self) -> pl.DataFrame:
        """``pipeline.metrics.funnel.funnel`` over the stages in order, the purchase after its stage
        (ordered mode, people)."""
        return funnel.funnel(self.db, self.stage_funnel_steps, mode="ordered", scope="user")

    def stage_funnel(self) -> pl.DataFrame:
        return self.stage_funnel_frame

    @functools.cached_property
    def checkout_funnel_by_device(self) -> pl.DataFrame:
        return funnel.funnel(self.db, "view_item,add_to_cart,begin_checkout,purchase", mode="ordered",
                             scope="session", count="sessions", by="device")

    # -- paths ----------------------------------------------------------------------------------
    SESSION_TOUCHPOINTS = paths.PathOptions(scope="session", level="touchpoint", goal=GOAL)
    SESSION_PATHS = paths.PathOptions(scope="session", level="touchpoint", goal=GOAL, collapse_repeats=True,
                                      until_goal=True)

    @functools.cached_property
    def session_transitions(self) -> pl.DataFrame:
        return paths.transitions(self.db, self.SESSION_TOUCHPOINTS)

    @functools.cached_property
    def loops_by_device(self) -> pl.DataFrame:
        """Per loop A > B > A (the 8 in the most session journeys) and device: sessions that visit A,
        that loop, share."""
        return self._analysis(self.SESSION_TOUCHPOINTS, "loop_devices", {"top": 8})

    @functools.cached_property
    def top_paths(self) -> pl.DataFrame:
        """The most frequent session paths (repeats collapsed, cut at the purchase) plus the most
        frequent converting ones, for the Sankey."""
        params = {"starting_at": None, "ending_at": None, "max_steps": 0}
        top = self._analysis(self.SESSION_PATHS, "path_variants", {**params, "outcome": "all", "top": SANKEY_TOP})
        converted = self._analysis(self.SESSION_PATHS, "path_variants",
                                   {**params, "outcome": "converted", "top": SANKEY_TOP_CONVERTED})
        n_all = int(self.db.scalar("select count(distinct journey_id) from journey_steps"))
        both = pl.concat([top.select("path", "n_steps", "n_journeys", "conversion_rate", "median_duration_seconds"),
                          converted.select("path", "n_steps", "n_journeys", "conversion_rate",
                                           "median_duration_seconds")])
        return both.unique("path", keep="first", maintain_order=True).with_columns(
            (pl.col("n_journeys") / n_all).alias("share_of_sessions")
        ).sort("n_journeys", descending=True)

    def export_path_variants(self) -> pl.DataFrame:
        return self._analysis(self.SESSION_PATHS, "path_variants",
                              {"starting_at": None, "ending_at": None, "max_steps": 0, "outcome": "all", "top": 200})

    def export_transitions(self) -> pl.DataFrame:
        return paths.transitions(self.db, paths.PathOptions(scope="user", level="touchpoint", goal=GOAL))

    @functools.cached_property
    def effort(self) -> pl.DataFrame:
        """Per converting user: touchpoints, sessions, channels and days before the first purchase."""
        return paths.touchpoints_to_goal(self.db, paths.PathOptions(scope="user", level="touchpoint", goal=GOAL))

    # -- value ----------------------------------------------------------------------------------
    @functools.cached_property
    def revenue_at_risk(self) -> pl.DataFrame:
        """Touchpoint then stage drop-off points by revenue at risk. The stage chain is valued first so
        that the touchpoint chain's journeys (user scope, cut at the purchase) are the ones prepared
        last: effort reads exactly those journeys, so it is computed here rather than preparing them
        again later (3 s at 10M events). Its own errors are left for its section to report."""
        from pipeline.value import risk
        from pipeline.value.customers import CustomerValueError

        levels = ("stage", "touchpoint")
        try:  # the value section's CLV fit, made once for both (1.8 s at 10M events, 33 s at 100M)
            value = risk.conversion_value(self.db, "clv", fitted=self.clv_result)
        except (CustomerValueError, risk.RiskError) as exc:  # the fit, or the prediction from it
            if isinstance(exc, risk.RiskError) and "CLV" not in str(exc):
                raise
            # no repeat buyers yet: a conversion is worth its order (the section says which basis)
            value = risk.conversion_value(self.db, "aov")
        frame = risk.revenue_at_risk(self.db, levels=levels, goal=GOAL, value_per_conversion=value)
        with contextlib.suppress(Exception):
            self.effort  # noqa: B018 - computed for its cache (see the docstring)
        return pl.concat([frame.filter(pl.col("level") == level) for level in ("touchpoint", "stage")])

    def export_revenue_at_risk(self) -> pl.DataFrame:
        return self.revenue_at_risk

    @functools.cached_property
    def attribution_frame(self) -> pl.DataFrame:
        from pipeline.value import attribution as attr
        from pipeline.value import customers

        return customers.attribute_db(self.db, attr.MODELS, goal=GOAL)

    def attribution(self) -> pl.DataFrame:
        return self.attribution_frame

    @functools.cached_property
    def clv_result(self):
        from pipeline.value import customers

        return customers.fit_clv(self.db)

    @functools.cached_property
    def value_by(self) -> dict[str, pl.DataFrame]:
        from pipeline.value import customers

        result = self.clv_result
        return {dim: customers.value_by(self.db, result, dim) for dim in ("acquisition_channel", "cohort", "stage")}

    def export_value_by(self) -> pl.DataFrame:
        return pl.concat(list(self.value_by.values()), how="diagonal_relaxed")

    def export_clv_predictions(self) -> pl.DataFrame:
        return self.clv_result.customers

    # -- segments -------------------------------------------------------------------------------
    @functools.cached_property
    def conversion_by(self) -> dict[str, pl.DataFrame]:
        return {by: conversion.conversion_rates(self.db, by=by) for by in ("channel", "device")}

    @functools.cached_property
    def abandonment_by_device(self) -> pl.DataFrame:
        return abandonment.cart_checkout_abandonment(self.db, by="device")

    @functools.cached_property
    def abandonment_overall(self) -> pl.DataFrame:
        return abandonment.cart_checkout_abandonment(self.db, by="all")

    def export_conversion_by(self) -> pl.DataFrame:
        frames = [f.rename({"group": "group_value"}) for f in self.conversion_by.values()]
        ab = self.abandonment_by_device.rename({"group": "group_value"})
        return pl.concat([*frames, ab], how="diagonal_relaxed")

    @functools.cached_property
    def segment_summary(self) -> pl.DataFrame:
        from pipeline import config

        try:
            cfg = config.load(None)
        except Exception:  # noqa: BLE001 - built-in segments only
            cfg = {}
        chosen = segments.segments(self.db, cfg.get("segments") if isinstance(cfg, dict) else None)
        return segments.segment_summary(self.db, chosen)

    @functools.cached_property
    def personas(self):
        return personas.personas(self.db, k=4, seed=0, n_init=4)

    @functools.cached_property
    def experiment_keys(self) -> list[str]:
        """Event property keys that look like experiment assignments (variant, experiment...)."""
        keys = self.db.query(
            "select distinct unnest(json_keys(properties)) as key from staging.stg_events "
            "where properties is not null and json_type(properties) = 'OBJECT'"
        )["key"].to_list()
        return sorted(k for k in keys if any(w in k.lower() for w in ("variant", "experiment", "ab_test", "arm")))

    @functools.cached_property
    def experiments(self) -> dict[str, pl.DataFrame]:
        return {key: experiments.experiment(self.db, variant_key=key) for key in self.experiment_keys[:3]}

    # -- data quality ---------------------------------------------------------------------------
    @functools.cached_property
    def manifest(self) -> pl.DataFrame:
        return self.db.query(
            "select path, format, n_read, n_loaded, n_duplicate, n_quarantined, loaded_at "
            "from raw.manifest order by file_id"
        )

    @functools.cached_property
    def quarantine(self) -> pl.DataFrame:
        return self.db.query(
            "select reason, field, count(*) as n_rows, count(distinct path) as n_files, "
            "min(original_text) as example from raw.quarantine group by reason, field order by n_rows desc, reason"
        )

    @functools.cached_property
    def unmapped(self) -> pl.DataFrame:
        return self.db.query(
            "select event_name, count(*) as n_events, count(distinct user_key) as n_users "
            "from staging.stg_touchpoints where not is_mapped and not is_channel_step "
            "group by event_name order by n_events desc, event_name"
        )


def to_jsonable(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.write_json())
