"""CLI: ``journeys transitions`` and ``journeys paths`` (path mining views).

Reads the built tables read-only through ``pipeline.paths``; prints tables, writes a graph file
only when ``--export-graph`` asks for one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from pipeline.commands.common import DEFAULT_DB, DbOption, FormatOption, UsageError, app, check_format, open_db
from pipeline.output import emit, to_json

ScopeOpt = Annotated[str, typer.Option("--scope", help="session | user")]
LevelOpt = Annotated[str, typer.Option("--level", help="event | touchpoint | stage")]
GoalOpt = Annotated[str, typer.Option("--goal", help="Event or touchpoint that counts as conversion.")]
CollapseOpt = Annotated[bool, typer.Option("--collapse-repeats", help="Consecutive repeats count once.")]
ExcludeOpt = Annotated[str, typer.Option("--exclude", help="Comma-separated nodes to drop.")]
RenameOpt = Annotated[list[str] | None, typer.Option("--rename", help="REGEX=NEW_NAME (repeatable).")]
FirstOpt = Annotated[int, typer.Option("--first-n", min=0, help="Keep the first N steps (0 = all).")]
LastOpt = Annotated[int, typer.Option("--last-n", min=0, help="Keep the last N steps (0 = all).")]
UntilGoalOpt = Annotated[bool, typer.Option("--until-goal", help="A converting journey ends at its first goal.")]

VIEWS = ("variants", "next", "dropoff", "effort", "stages", "backtracking", "loops", "channels", "drivers")


def _options(scope, level, goal, collapse, exclude, rename, first_n, last_n, until_goal):
    from pipeline.paths import PathError, PathOptions, parse_rename

    try:
        return PathOptions(
            scope=scope, level=level, goal=goal, collapse_repeats=collapse,
            exclude=tuple(x.strip() for x in exclude.split(",") if x.strip()),
            rename=parse_rename(rename or []), first_n=first_n, last_n=last_n, until_goal=until_goal,
        )
    except PathError as exc:
        raise UsageError(str(exc)) from None


@app.command()
def transitions(
    db: DbOption = Path(DEFAULT_DB),
    scope: ScopeOpt = "user",
    level: LevelOpt = "touchpoint",
    goal: GoalOpt = "purchase",
    collapse_repeats: CollapseOpt = False,
    exclude: ExcludeOpt = "",
    rename: RenameOpt = None,
    first_n: FirstOpt = 0,
    last_n: LastOpt = 0,
    until_goal: UntilGoalOpt = False,
    export_graph: Annotated[
        Path | None, typer.Option("--export-graph", help="Also write the graph (.graphml or .json).")
    ] = None,
    fmt: FormatOption = "table",
) -> None:
    """Every edge of the transition graph, with path_start and path_end.

    Example: journeys transitions --scope session --level stage --format csv
    """
    from pipeline import paths

    options = _options(scope, level, goal, collapse_repeats, exclude, rename, first_n, last_n, until_goal)
    output = check_format(fmt)
    if export_graph is not None and export_graph.suffix not in (".graphml", ".json"):
        raise UsageError("--export-graph must end in .graphml or .json")
    with open_db(db, read_only=True) as database:
        edges = paths.transitions(database, options)
    if export_graph is not None:
        paths.export_graph(paths.transition_graph(edges), export_graph, export_graph.suffix.lstrip("."))
    emit(edges, output)


@app.command(name="paths")
def paths_command(
    db: DbOption = Path(DEFAULT_DB),
    view: Annotated[str, typer.Option("--view", help=" | ".join(VIEWS))] = "variants",
    scope: ScopeOpt = "user",
    level: LevelOpt = "touchpoint",
    goal: GoalOpt = "purchase",
    starting_at: Annotated[str | None, typer.Option("--starting-at", help="Paths from this node on.")] = None,
    ending_at: Annotated[str | None, typer.Option("--ending-at", help="Paths up to this node.")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="How many paths.")] = 20,
    max_steps: Annotated[int, typer.Option("--max-steps", min=0, help="Cut paths after K steps.")] = 0,
    outcome: Annotated[str, typer.Option("--outcome", help="all | converted | abandoned")] = "all",
    node: Annotated[str | None, typer.Option("--node", help="The node for --view next.")] = None,
    collapse_repeats: CollapseOpt = False,
    exclude: ExcludeOpt = "",
    rename: RenameOpt = None,
    first_n: FirstOpt = 0,
    last_n: LastOpt = 0,
    until_goal: UntilGoalOpt = False,
    fmt: FormatOption = "table",
) -> None:
    """Top paths, next/previous steps, drop-off points, effort to purchase, loops and drivers.

    Example: journeys paths --view dropoff --scope session --level touchpoint
    """
    from pipeline import paths

    if view not in VIEWS:
        raise UsageError(f"--view must be one of {', '.join(VIEWS)}, not {view!r}")
    if view == "next" and not node:
        raise UsageError("--view next needs --node NODE")
    options = _options(scope, level, goal, collapse_repeats, exclude, rename, first_n, last_n, until_goal)
    output = check_format(fmt)
    with open_db(db, read_only=True) as database:
        try:
            result = _view(paths, database, view, options, starting_at, ending_at, top, max_steps, outcome, node)
        except paths.PathError as exc:
            raise UsageError(str(exc)) from None
    if isinstance(result, dict):
        typer.echo(to_json(result)) if output == "json" else emit(pl.DataFrame([result]), output)
    else:
        emit(result, output)


def _view(paths, database, view, options, starting_at, ending_at, top, max_steps, outcome, node):
    if view == "variants":
        return paths.path_variants(database, options, top=top, starting_at=starting_at, ending_at=ending_at,
                                   max_steps=max_steps, outcome=outcome)
    if view == "next":
        return paths.next_previous(database, node, options)
    if view == "dropoff":
        return paths.dropoffs(database, options)
    if view == "effort":
        return paths.effort_summary(paths.touchpoints_to_goal(database, options))
    if view == "stages":
        return paths.stage_matrix(database, options)
    if view == "backtracking":
        return paths.backtracking(database, options)
    if view == "loops":
        return paths.loops(database, options).head(top)
    if view == "channels":
        return paths.channel_mix(database, options)
    return paths.path_drivers(database, options).head(top)
