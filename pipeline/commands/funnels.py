"""``journeys funnel``: funnels, drop-off drill-down and why-dropped, over pipeline.metrics.funnel.

Reads the database (read-only) and the options; prints one table. Bad steps or options are usage
errors (exit 2) that name the value and suggest the closest valid one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.commands.common import (
    DEFAULT_DB,
    DbOption,
    FormatOption,
    UsageError,
    app,
    check_format,
    open_db,
)
from pipeline.output import emit


@app.command("funnel")
def funnel_command(
    steps: Annotated[
        str,
        typer.Option(
            "--steps",
            help="Comma-separated steps; a|b = either; event:/touchpoint:/stage: prefixes, else resolved "
            "against event names, then touchpoints, then stages.",
        ),
    ],
    mode: Annotated[str, typer.Option("--mode", help="ordered | strict | unordered | open | reach")] = "ordered",
    scope: Annotated[str, typer.Option("--scope", help="user | session: the journey a funnel runs in.")] = "user",
    window: Annotated[
        str, typer.Option("--window", help="Conversion window from step 1: 30m, 2h, 7d, 2w or none.")
    ] = "none",
    step_window: Annotated[
        str | None,
        typer.Option("--step-window", help="Per-step windows after step 1, e.g. 1h,none,30m (steps - 1 values)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Exclusion step, repeatable: EVENT (whole funnel) or EVENT@2-3."),
    ] = None,
    count: Annotated[
        str | None,
        typer.Option("--count", help="users | sessions | conversions (default: users, or sessions with --scope "
                     "session)."),
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Breakdown: channel | device | country | cohort | variant.")
    ] = None,
    variant_key: Annotated[
        str | None, typer.Option("--variant-key", help="Event property holding the variant (with --by variant).")
    ] = None,
    dropped_at: Annotated[
        int | None, typer.Option("--dropped-at", help="List the journeys that entered step K and did not go on.")
    ] = None,
    why: Annotated[
        int | None, typer.Option("--why", help="What those who dropped at step K saw, versus those who went on.")
    ] = None,
    min_count: Annotated[int, typer.Option("--min-count", help="With --why: fewest journeys per feature.")] = 5,
    fmt: FormatOption = "table",
    db: DbOption = Path(DEFAULT_DB),
) -> None:
    """Funnel conversion per step, with rates, intervals, times, breakdowns and drill-downs.

    Example: journeys funnel --steps "view_item,add_to_cart,begin_checkout,purchase" --window 7d --by device
    """
    from pipeline.metrics.funnel import FunnelError, funnel_spec, run_dropped, run_funnel, run_why

    output = check_format(fmt)
    if dropped_at is not None and why is not None:
        raise UsageError("give either --dropped-at or --why, not both")
    if by == "segment":
        raise UsageError("--by segment needs a segments mapping: use the Python API funnel(..., segments=...)")
    with open_db(db, read_only=True) as database:
        try:
            spec = funnel_spec(
                database, steps, mode=mode, scope=scope, window=window, step_windows=step_window,
                exclude=exclude or (), count=count, by=by, variant_key=variant_key,
            )
            if dropped_at is not None:
                frame, title = run_dropped(database, spec, dropped_at), f"dropped at step {dropped_at}"
            elif why is not None:
                frame, title = run_why(database, spec, why, min_count=min_count), f"why they dropped at step {why}"
            else:
                frame, title = run_funnel(database, spec), f"funnel ({spec.mode}, per {spec.count})"
        except FunnelError as exc:
            raise UsageError(str(exc)) from None
    emit(frame, output, title=title)
    if output == "table" and frame.is_empty():
        typer.echo("no journeys match", err=True)
