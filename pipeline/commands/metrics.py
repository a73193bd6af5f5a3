"""CLI: ``journeys abandonment``, ``conversion``, ``journey-map``, ``segments``, ``personas``,
``experiment`` and ``compare`` (metrics with confidence intervals).

Reads the built tables read-only through ``pipeline.metrics.*`` and the config (for ``[[segments]]``);
prints tables (``--format table|csv|json``); writes nothing. Bad arguments are usage errors (exit 2).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands.common import (
    DEFAULT_DB,
    ConfigOption,
    DbOption,
    FormatOption,
    UsageError,
    app,
    check_format,
    load_config,
    open_db,
)
from pipeline.output import emit

LevelOpt = Annotated[str, typer.Option("--level", help="session | user")]
ByOpt = Annotated[str, typer.Option(
    "--by", help="all | channel | device | country | landing_page | entry_touchpoint | visitor_type | day | week | "
                 "month | segment")]
GoalOpt = Annotated[str, typer.Option("--goal", help="Event name or touchpoint that counts as conversion.")]
StartOpt = Annotated[str | None, typer.Option("--start", help="First day (YYYY-MM-DD) of sessions to include.")]
EndOpt = Annotated[str | None, typer.Option("--end", help="Last day (YYYY-MM-DD, included).")]
SegmentOpt = Annotated[list[str] | None, typer.Option(
    "--segment", help="With --by segment: segment names to show (repeatable; default: built-in and configured).")]


def _metric_errors():
    from pipeline.metrics.conversion import MetricError
    from pipeline.metrics.segments import SegmentError

    return (MetricError, SegmentError)


def _window(start: str | None, end: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """--start/--end as days: [start 00:00, day after end 00:00)."""
    def day(value: str | None, name: str) -> dt.date | None:
        if value is None:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise UsageError(f"{name} must be a date like 2025-01-31, not {value!r}") from None

    first, last = day(start, "--start"), day(end, "--end")
    if first and last and last < first:
        raise UsageError("--end is before --start")
    return (dt.datetime.combine(first, dt.time()) if first else None,
            dt.datetime.combine(last + dt.timedelta(days=1), dt.time()) if last else None)


def _chosen_segments(database, config_path: Path | None, names: list[str] | None):
    from pipeline.metrics import segments as seg

    known = seg.segments(database, load_config(config_path))
    if not names:
        return known
    missing = [n for n in names if n not in known]
    if missing:
        import difflib

        close = difflib.get_close_matches(missing[0], list(known), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"unknown segment {missing[0]!r}{hint}")
    return {n: known[n] for n in names}


@app.command()
def abandonment(
    db: DbOption = Path(DEFAULT_DB),
    kind: Annotated[str, typer.Option("--kind", help="all | cart | checkout | stage")] = "all",
    level: LevelOpt = "session",
    by: ByOpt = "all",
    window_days: Annotated[float, typer.Option(
        "--window-days", min=0, help="User level: days after the first cart/checkout a purchase still counts.")] = 7.0,
    complete_windows_only: Annotated[bool, typer.Option(
        "--complete-windows-only", help="User level: leave out carts whose window reaches past the data.")] = False,
    goal: GoalOpt = "purchase",
    start: StartOpt = None,
    end: EndOpt = None,
    segment: SegmentOpt = None,
    config: ConfigOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Cart, checkout and stage abandonment with Wilson 95% bounds (cart rows show the ~70% benchmark).

    Example: journeys abandonment --kind cart --level user --window-days 7 --by week
    """
    from pipeline.metrics import abandonment as ab

    output = check_format(fmt)
    kinds = ab.KINDS if kind == "all" else (kind,)
    if kind != "all" and kind not in ab.KINDS:
        raise UsageError(f"--kind must be one of all, {', '.join(ab.KINDS)}, not {kind!r}")
    lower, upper = _window(start, end)
    with open_db(db, read_only=True) as database:
        try:
            chosen = _chosen_segments(database, config, segment) if by == "segment" else None
            frame = ab.abandonment(database, kinds=kinds, level=level, by=by, window_days=window_days, goal=goal,  # type: ignore[arg-type]
                                   start=lower, end=upper, segments=chosen, complete_windows_only=complete_windows_only)
        except _metric_errors() as exc:
            raise UsageError(str(exc)) from None
    emit(frame, output, title=f"abandonment (benchmark: {ab.CART_ABANDONMENT_BENCHMARK_SOURCE})")


@app.command()
def conversion(
    db: DbOption = Path(DEFAULT_DB),
    by: ByOpt = "all",
    level: LevelOpt = "session",
    goal: GoalOpt = "purchase",
    start: StartOpt = None,
    end: EndOpt = None,
    segment: SegmentOpt = None,
    config: ConfigOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Conversion rates with Wilson 95% bounds, by a breakdown.

    Example: journeys conversion --by channel --level user --goal purchase --format csv
    """
    from pipeline.metrics.conversion import conversion_rates

    output = check_format(fmt)
    lower, upper = _window(start, end)
    with open_db(db, read_only=True) as database:
        try:
            chosen = _chosen_segments(database, config, segment) if by == "segment" else None
            frame = conversion_rates(database, level=level, by=by, goal=goal, start=lower, end=upper,  # type: ignore[arg-type]
                                     segments=chosen)
        except _metric_errors() as exc:
            raise UsageError(str(exc)) from None
    emit(frame, output)


@app.command(name="journey-map")
def journey_map_command(
    db: DbOption = Path(DEFAULT_DB),
    scope: Annotated[str, typer.Option("--scope", help="user | session")] = "user",
    goal: GoalOpt = "purchase",
    top: Annotated[int, typer.Option("--top", min=1, help="Touchpoints listed per stage.")] = 3,
    fmt: FormatOption = "table",
) -> None:
    """Per stage: reach, progression, abandonment, time in stage, top touchpoints, revenue, satisfaction.

    Example: journeys journey-map --scope user --top 3 --format json
    """
    from pipeline.metrics.journey_map import journey_map

    output = check_format(fmt)
    with open_db(db, read_only=True) as database:
        try:
            frame = journey_map(database, scope=scope, goal=goal, top_n=top)  # type: ignore[arg-type]
        except _metric_errors() as exc:
            raise UsageError(str(exc)) from None
    emit(frame, output)


@app.command(name="segments")
def segments_command(
    db: DbOption = Path(DEFAULT_DB),
    segment: Annotated[list[str] | None, typer.Option("--segment", help="Segment names (repeatable; default all).")]
    = None,
    config: ConfigOption = None,
    fmt: FormatOption = "table",
) -> None:
    """Built-in and configured ([[segments]] in journeys.toml) segments: size, conversion, revenue.

    Example: journeys segments --config journeys.toml --segment mobile_de --format csv
    """
    from pipeline.metrics.segments import segment_summary

    output = check_format(fmt)
    with open_db(db, read_only=True) as database:
        try:
            frame = segment_summary(database, _chosen_segments(database, config, segment))
        except _metric_errors() as exc:
            raise UsageError(str(exc)) from None
    emit(frame, output)


@app.command()
def personas(
    db: DbOption = Path(DEFAULT_DB),
    k: Annotated[int, typer.Option("--k", min=1, help="Number of personas.")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same personas).")] = 0,
    top: Annotated[int, typer.Option("--top", min=1, help="Characteristic touchpoints per persona.")] = 3,
    fmt: FormatOption = "table",
) -> None:
    """Behavioural personas: users clustered (k-means) on their journeys.

    Example: journeys personas --k 4 --seed 0
    """
    from pipeline.metrics.personas import personas as run_personas

    output = check_format(fmt)
    with open_db(db, read_only=True) as database:
        try:
            result = run_personas(database, k=k, seed=seed, top_n=top)
        except _metric_errors() as exc:
            raise UsageError(str(exc)) from None
    emit(result.summary, output)


@app.command()
def experiment(
    db: DbOption = Path(DEFAULT_DB),
    variant_key: Annotated[str, typer.Option("--variant-key", help="Event properties key holding the variant.")]
    = "",
    control: Annotated[str | None, typer.Option("--control", help="Control variant (default: 'control').")] = None,
    weights: Annotated[str | None, typer.Option(
        "--weights", help="Expected split, e.g. control=50,treatment=50 (default: equal).")] = None,
    assignment_event: Annotated[str | None, typer.Option(
        "--assignment-event", help="Only events of this name assign a variant.")] = None,
    goal: GoalOpt = "purchase",
    fmt: FormatOption = "table",
) -> None:
    """A/B test: conversion per variant, lift vs control, p-value, sample ratio mismatch check.

    Example: journeys experiment --variant-key variant --control control --weights control=50,treatment=50
    """
    from pipeline.metrics.experiments import experiment as run_experiment
    from pipeline.metrics.experiments import parse_weights

    output = check_format(fmt)
    if not variant_key:
        raise UsageError("--variant-key is required (the event properties key that holds the variant)")
    with open_db(db, read_only=True) as database:
        try:
            frame = run_experiment(database, variant_key, control=control, goal=goal,
                                   weights=parse_weights(weights) if weights else None,
                                   assignment_event=assignment_event)
        except _metric_errors() as exc:
            raise UsageError(str(exc)) from None
    emit(frame, output)


@app.command()
def compare(
    db: DbOption = Path(DEFAULT_DB),
    before: Annotated[str, typer.Option("--before", help="First:last day, e.g. 2025-01-06:2025-01-19.")] = "",
    after: Annotated[str, typer.Option("--after", help="First:last day, e.g. 2025-01-20:2025-02-02.")] = "",
    steps: Annotated[str | None, typer.Option(
        "--steps", help="Funnel steps to compare, e.g. view_item,add_to_cart,purchase (default: stage reach).")]
    = None,
    alpha: Annotated[float, typer.Option("--alpha", min=0, max=1, help="Significance level (BH-adjusted).")] = 0.05,
    fmt: FormatOption = "table",
) -> None:
    """Before/after: every KPI and funnel step of two periods, difference, 95% CI, BH-adjusted p-value.

    Example: journeys compare --before 2025-01-06:2025-01-19 --after 2025-01-20:2025-02-02
    """
    from pipeline.metrics.experiments import compare_periods, parse_period

    output = check_format(fmt)
    if not before or not after:
        raise UsageError("give both --before FIRST:LAST and --after FIRST:LAST")
    with open_db(db, read_only=True) as database:
        try:
            frame = compare_periods(database, parse_period(before), parse_period(after), funnel_steps=steps,
                                    alpha=alpha)
        except _metric_errors() as exc:
            raise UsageError(str(exc)) from None
    emit(frame, output)
