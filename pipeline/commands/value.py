"""CLI: ``journeys clv``, ``attribution``, ``risk``, ``whatif`` and ``propensity`` (value models).

Reads the built tables read-only through ``pipeline.value.customers`` and ``pipeline.value.risk``;
prints tables (``--format table|csv|json``), writes nothing. Bad arguments exit with 2, a model that
cannot be answered on the data (nothing to fit, a fit that does not converge) with 1.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from pipeline.commands.common import (
    DEFAULT_DB,
    DbOption,
    FormatOption,
    UsageError,
    app,
    check_choice,
    check_format,
    open_db,
)
from pipeline.output import emit, print_table, to_json

ScopeOpt = Annotated[str, typer.Option("--scope", help="user | session (a journey is a user or one session).")]
ChainLevelOpt = Annotated[str, typer.Option("--level", help="touchpoint | stage")]
GoalOpt = Annotated[str, typer.Option("--goal", help="Event or touchpoint that counts as conversion.")]
HorizonOpt = Annotated[int, typer.Option("--horizon", help="Months (of 30 days) to project CLV over.")]
DiscountOpt = Annotated[float, typer.Option("--discount-rate", help="Discount rate per month, e.g. 0.01.")]
TimeUnitOpt = Annotated[str, typer.Option("--time-unit", help="day | week: the model's time unit.")]
CalEndOpt = Annotated[
    str | None,
    typer.Option("--calibration-end", help="Last day of the calibration window, YYYY-MM-DD (default: last event day)."),
]

ATTRIBUTION_CHOICES = ("first", "last", "linear", "position", "time_decay", "markov", "shapley", "all")
METRICS = ("conversions", "revenue", "share")
DEFAULT_FUNNEL = "product_page,cart,checkout,purchase"


def _clv_options(calibration_end: str | None, time_unit: str, horizon: int, discount_rate: float):
    from pipeline.value.customers import TIME_UNITS, ClvOptions, CustomerValueError

    check_choice("--time-unit", time_unit, TIME_UNITS)
    end = None
    if calibration_end is not None:
        try:
            end = dt.date.fromisoformat(calibration_end)
        except ValueError:
            raise UsageError(f"--calibration-end must be a date YYYY-MM-DD, not {calibration_end!r}") from None
    try:
        return ClvOptions(calibration_end=end, time_unit=time_unit, horizon_months=horizon,  # type: ignore[arg-type]
                          discount_rate=discount_rate)
    except CustomerValueError as exc:
        raise UsageError(str(exc)) from None


def _emit_record(record: dict, output: str, title: str) -> None:
    """One result that is not a table: a JSON object, a one-row CSV, or a parameter/value table."""
    if output == "json":
        typer.echo(to_json(record))
    elif output == "csv":
        emit(pl.DataFrame([record]), "csv")
    else:
        rows = pl.DataFrame(
            {"parameter": list(record), "value": [_fmt(v) for v in record.values()]},
            schema={"parameter": pl.String, "value": pl.String},
        )
        print_table(rows, title)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


@app.command()
def clv(
    db: DbOption = Path(DEFAULT_DB),
    calibration_end: CalEndOpt = None,
    time_unit: TimeUnitOpt = "day",
    horizon: HorizonOpt = 12,
    discount_rate: DiscountOpt = 0.01,
    customers: Annotated[bool, typer.Option("--customers", help="Per-customer RFM and predictions.")] = False,
    by: Annotated[
        str | None,
        typer.Option("--by", help="stage | acquisition_channel | entry_touchpoint | cohort | device | segment"),
    ] = None,
    segments: Annotated[
        Path | None, typer.Option("--segments", help="CSV user_key,segment for --by segment.", dir_okay=False)
    ] = None,
    fmt: FormatOption = "table",
) -> None:
    """Customer lifetime value: BG/NBD + Gamma-Gamma fitted on purchase days, per customer or segment.

    Prints the fitted parameters (r, alpha, a, b; p, q, gamma) and log-likelihoods; --customers adds
    P(alive), expected purchases and discounted CLV per customer; --by breaks historical and
    expected value down by furthest stage, acquisition channel, entry touchpoint, first-touch month,
    device or a segment mapping.

    Example: journeys clv --time-unit week --horizon 12 --discount-rate 0.01 --format json
    """
    from pipeline.value import customers as cv

    output = check_format(fmt)
    options = _clv_options(calibration_end, time_unit, horizon, discount_rate)
    if customers and by:
        raise UsageError("give --customers or --by, not both")
    if by is not None:
        check_choice("--by", by, cv.DIMENSIONS)
        if by == "segment" and segments is None:
            raise UsageError("--by segment needs --segments FILE (a CSV with columns user_key, segment)")
    if segments is not None and by != "segment":
        raise UsageError("--segments goes with --by segment")
    with open_db(db, read_only=True) as database:
        try:
            result = cv.fit_clv(database, options)
        except cv.CustomerValueError as exc:
            if by is None:
                raise
            typer.echo(f"note: historical value only, the CLV models cannot be fitted: {exc}", err=True)
            result = None
        if by is not None:
            emit(cv.value_by(database, result, by, segments), output, title=f"value by {by}")  # type: ignore[arg-type]
            return
        if result is None:  # fit_clv either returns a result or raised above
            raise RuntimeError("CLV models were not fitted")
        if customers:
            history = cv.customers(database).select(
                "user_key", "n_orders", "net_revenue", "average_order_value", "acquisition_channel"
            )
            table = result.customers.join(history, on="user_key", how="left").sort("user_key")
            emit(table, output, title="customers")
            return
    _emit_record(result.parameters(), output, "CLV models")


@app.command()
def attribution(
    db: DbOption = Path(DEFAULT_DB),
    model: Annotated[str, typer.Option("--model", help=" | ".join(ATTRIBUTION_CHOICES))] = "all",
    lookback: Annotated[
        str, typer.Option("--lookback", help="Touches within this time before a conversion: 30d, 12h, 2w.")
    ] = "30d",
    level: Annotated[str, typer.Option("--level", help="channel | touchpoint")] = "channel",
    ci: Annotated[bool, typer.Option("--ci", help="Bootstrap 95% intervals (resampling journeys).")] = False,
    n_boot: Annotated[int, typer.Option("--n-boot", min=1, help="Bootstrap replicates for --ci.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for --ci.")] = 0,
    half_life: Annotated[float, typer.Option("--half-life", help="Half-life in days of the time_decay model.")] = 7.0,
    metric: Annotated[
        str, typer.Option("--metric", help="conversions | revenue | share, for --model all.")
    ] = "conversions",
    fmt: FormatOption = "table",
) -> None:
    """Attribute first purchases to channels (or touchpoints) with heuristic, Markov and Shapley models.

    A journey is a user's history up to the first purchase (touches within --lookback before it) or
    the whole history of a user who never bought. --model all prints the models side by side.

    Example: journeys attribution --model all --lookback 30d --level channel
    Example: journeys attribution --model markov --ci --format json
    """
    from pipeline.value import attribution as attr
    from pipeline.value import customers as cv

    output = check_format(fmt)
    check_choice("--model", model, ATTRIBUTION_CHOICES)
    check_choice("--level", level, cv.ATTRIBUTION_LEVELS)
    check_choice("--metric", metric, METRICS)
    if not half_life > 0:
        raise UsageError("--half-life must be > 0 days")
    try:
        lookback_days = cv.parse_lookback(lookback)
    except cv.CustomerValueError as exc:
        raise UsageError(str(exc)) from None
    models = attr.MODELS if model == "all" else (model,)
    with open_db(db, read_only=True) as database:
        inputs = cv.attribution_inputs(database, level=level, lookback_days=lookback_days)  # type: ignore[arg-type]
        if model == "all" and _n_converting_labels(inputs) > attr.MAX_SHAPLEY_CHANNELS:
            typer.echo(
                f"note: shapley left out: more than {attr.MAX_SHAPLEY_CHANNELS} {level}s in converting journeys",
                err=True,
            )
            models = tuple(m for m in models if m != "shapley")
        frame = cv.attribute_db(database, models, level=level, lookback_days=lookback_days,  # type: ignore[arg-type]
                                ci=ci, n_boot=n_boot, seed=seed, half_life_days=half_life)
    if model == "all" and not ci:
        frame = frame.pivot(on="model", index=level, values=metric, sort_columns=False).sort(level)
    emit(frame, output, title=f"attribution ({metric if model == 'all' and not ci else model})")


def _n_converting_labels(inputs) -> int:
    converted = inputs.journeys.filter(pl.col("converted")).select("journey_id")
    return inputs.touches.join(converted, on="journey_id", how="semi")["channel"].n_unique()


@app.command()
def risk(
    db: DbOption = Path(DEFAULT_DB),
    level: Annotated[str, typer.Option("--level", help="touchpoint | stage | funnel | all")] = "all",
    scope: ScopeOpt = "user",
    goal: GoalOpt = "purchase",
    funnel: Annotated[
        str, typer.Option("--funnel", help="Funnel steps valued at --level funnel or all (last step = conversion).")
    ] = DEFAULT_FUNNEL,
    value_basis: Annotated[
        str, typer.Option("--value-basis", help="clv (order + a new customer's CLV) | aov (one order)")
    ] = "clv",
    value: Annotated[
        float | None, typer.Option("--value", help="Value of one conversion (overrides --value-basis).")
    ] = None,
    horizon: HorizonOpt = 12,
    discount_rate: DiscountOpt = 0.01,
    fmt: FormatOption = "table",
) -> None:
    """Revenue at risk: drop-off points ranked by leavers x P(conversion from the next step) x value.

    Drop-off points are touchpoint exits, stage exits and funnel steps (each level ranked on its
    own); a conversion is worth one average order (aov) or that plus a new customer's CLV (clv).

    Example: journeys risk --level touchpoint --value-basis aov --format csv
    """
    from pipeline.value import risk as rk

    output = check_format(fmt)
    check_choice("--level", level, (*rk.CHAIN_LEVELS, "funnel", "all"))
    check_choice("--scope", scope, ("user", "session"))
    check_choice("--value-basis", value_basis, rk.VALUE_BASES)
    if value is not None and not value >= 0:
        raise UsageError("--value must be >= 0")
    options = _clv_options(None, "day", horizon, discount_rate)
    levels = rk.CHAIN_LEVELS if level == "all" else (level,) if level != "funnel" else ()
    with open_db(db, read_only=True) as database:
        try:
            worth = value if value is not None else rk.conversion_value(database, value_basis, options)  # type: ignore[arg-type]
            frames = []
            if levels:
                frames.append(rk.revenue_at_risk(database, levels=levels, scope=scope, goal=goal,  # type: ignore[arg-type]
                                                 value_per_conversion=worth))
            if level in ("funnel", "all"):
                try:
                    frames.append(rk.revenue_at_risk(database, levels=(), scope=scope, value_per_conversion=worth,
                                                     funnel_steps=funnel))
                except rk.RiskArgumentError as exc:
                    if level == "funnel":
                        raise
                    typer.echo(f"note: funnel steps left out: {exc}", err=True)
        except rk.RiskArgumentError as exc:
            raise UsageError(str(exc)) from None
    emit(pl.concat(frames, how="vertical"), output, title="revenue at risk")


@app.command()
def whatif(
    db: DbOption = Path(DEFAULT_DB),
    change: Annotated[
        list[str] | None,
        typer.Option("--change", help="FROM>TO=+0.10 (signed: change in points) or FROM>TO=0.4 (new probability)."),
    ] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="Node whose visitors drop off instead.")] = None,
    add: Annotated[list[str] | None, typer.Option("--add", help="New edge FROM>TO=P (repeatable).")] = None,
    level: ChainLevelOpt = "touchpoint",
    scope: ScopeOpt = "user",
    goal: GoalOpt = "purchase",
    nodes: Annotated[bool, typer.Option("--nodes", help="Per-node P(conversion) before and after.")] = False,
    fmt: FormatOption = "table",
) -> None:
    """Project conversion rate, conversions and revenue after changing the journey graph.

    Example: journeys whatif --change "cart>checkout=+0.10"
    Example: journeys whatif --level stage --remove Consideration --format json
    """
    from pipeline.value import risk as rk

    output = check_format(fmt)
    check_choice("--level", level, rk.CHAIN_LEVELS)
    check_choice("--scope", scope, ("user", "session"))
    try:
        changes = [rk.parse_edit(c, "--change") for c in change or []]
        adds = [rk.parse_edit(a, "--add") for a in add or []]
    except rk.RiskError as exc:
        raise UsageError(str(exc)) from None
    with open_db(db, read_only=True) as database:
        try:
            result = rk.whatif(database, change=changes, remove=remove or [], add=adds, level=level,  # type: ignore[arg-type]
                               scope=scope, goal=goal)
        except rk.RiskArgumentError as exc:
            raise UsageError(str(exc)) from None
    emit(result.nodes if nodes else result.to_frame(), output, title="what-if")


@app.command()
def propensity(
    db: DbOption = Path(DEFAULT_DB),
    level: ChainLevelOpt = "touchpoint",
    scope: ScopeOpt = "user",
    goal: GoalOpt = "purchase",
    fmt: FormatOption = "table",
) -> None:
    """P(conversion) and expected further steps from every node of the journey graph.

    Example: journeys propensity --level stage --format json
    """
    from pipeline.value import risk as rk

    output = check_format(fmt)
    check_choice("--level", level, rk.CHAIN_LEVELS)
    check_choice("--scope", scope, ("user", "session"))
    with open_db(db, read_only=True) as database:
        try:
            frame = rk.propensity(database, level, scope, goal)  # type: ignore[arg-type]
        except rk.RiskArgumentError as exc:
            raise UsageError(str(exc)) from None
    emit(frame.sort("p_goal", "node", descending=[True, False]), output, title="propensity")
