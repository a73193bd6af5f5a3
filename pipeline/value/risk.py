"""Revenue at risk, propensity and what-if projections on the journey transition graph.

Reads the cleaned journeys of one request (the temp table ``journey_steps`` that
:func:`pipeline.paths.prepare_steps` makes) through ``sql/analysis/risk_*.sql``, the drop-off points
of :func:`pipeline.paths.dropoffs` and the historical value in ``marts.mart_customers``; writes only
temp tables and registered frames, so it works on a read-only connection. The absorbing-chain
algebra is :mod:`pipeline.value.markov`, on the aggregated edge table.

The chain (``chain_edges``) is the transition graph of :func:`pipeline.paths.transitions` with every
goal step named after the goal (``sql/analysis/transitions.sql`` with ``$goal_node``): at the
touchpoint level this is the transitions table itself; at the stage level it separates the purchase
from the rest of stage Purchase, so the chain has a goal to absorb into. Journeys are cut at their
first goal step (``until_goal``) by default: what a customer does after converting says nothing
about how people get to the conversion. At the stage level consecutive steps in one stage count once
(``collapse_repeats``), so the stage chain is about moves between stages ("Consideration>Purchase"
is the share of people leaving Consideration who go on to Purchase, not of every step taken in
Consideration).

Revenue at risk of a drop-off point (a node where non-converting journeys ended)::

    revenue_at_risk = n_dropoffs x p_conversion_if_continued x value_per_conversion

* ``p_conversion_if_continued``: the propensity (``markov.absorption`` p_goal) of the node the leavers
  would have moved to, averaged over the node's observed continuations (its out-edges other than
  ``path_end``, weighted by their counts). Leaving at checkout when everyone who continues from
  checkout buys puts a whole conversion at risk per leaver; leaving at a product page only the
  conversion probability of the next page.
* ``value_per_conversion`` (``value_basis``):
  ``"aov"``: the average order value (net revenue per order, ``marts.mart_customers``), the value of
  the one lost order; ``"clv"`` (default): that order plus the predicted CLV of a just-converted
  customer (BG/NBD + Gamma-Gamma at x = 0, t_x = 0, T = 0 over the horizon, discounted; see
  :meth:`pipeline.value.customers.ClvResult.new_customer_clv`), the value of the lost customer.
  A number can be given instead (``value_per_conversion``).

Funnel steps (``funnel_steps``, through :mod:`pipeline.metrics.funnel`) are valued the same way:
leavers at step k x the funnel's conversion from step k+1 to its last step x value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import polars as pl

from pipeline import paths
from pipeline.db import Database, load_sql
from pipeline.metrics import funnel as fn
from pipeline.value import markov
from pipeline.value.customers import ClvOptions, ClvResult, CustomerValueError, average_order_value, fit_clv

ChainLevel = Literal["touchpoint", "stage"]
CHAIN_LEVELS: tuple[str, ...] = get_args(ChainLevel)
ValueBasis = Literal["clv", "aov"]
VALUE_BASES: tuple[str, ...] = get_args(ValueBasis)


class RiskError(ValueError):
    """A request that cannot be answered on the data; the message says why."""


class RiskArgumentError(RiskError):
    """A bad argument: an unknown goal or node, an edit that is not a probability."""


def _options(level: str, scope: str, goal: str, until_goal: bool) -> paths.PathOptions:
    if level not in CHAIN_LEVELS:
        raise RiskArgumentError(f"level must be one of {', '.join(CHAIN_LEVELS)}, not {level!r}")
    try:
        return paths.PathOptions(scope=scope, level=level, goal=goal, until_goal=until_goal)  # type: ignore[arg-type]
    except paths.PathError as exc:
        raise RiskArgumentError(str(exc)) from None


def _goal_edges(db: Database, goal: str, level: str, *, count_users: bool = True) -> pl.DataFrame:
    """The edge table of the ``journey_steps`` already prepared, goal steps named ``goal``
    (``n_users`` null unless ``count_users``: the chain itself needs only ``n_transitions``)."""
    return db.query(
        load_sql("analysis/transitions.sql"),
        {"goal_node": goal, "collapse_renamed": level == "stage", "count_users": count_users},
    )


def chain_edges(
    db: Database,
    level: ChainLevel = "touchpoint",
    scope: str = "user",
    goal: str = "purchase",
    *,
    until_goal: bool = True,
) -> pl.DataFrame:
    """Edges (from_node, to_node, n_transitions, n_users, probability) of the chain with the goal."""
    options = _options(level, scope, goal, until_goal)
    try:
        paths.prepare_steps(db, options)
    except paths.PathError as exc:
        raise RiskArgumentError(str(exc)) from None
    return _goal_edges(db, goal, level)


def propensity(
    db: Database, level: ChainLevel = "touchpoint", scope: str = "user", goal: str = "purchase",
    *, until_goal: bool = True,
) -> pl.DataFrame:
    """Per node: P(conversion) and the expected number of further steps (``markov.absorption``)."""
    edges = chain_edges(db, level, scope, goal, until_goal=until_goal)
    _check_goal_in(edges, goal)
    visits = (
        pl.concat([
            edges.select(node="to_node", n=pl.col("n_transitions").cast(pl.Int64)),
            edges.select(node="from_node", n=pl.lit(0, pl.Int64)),
        ])
        .group_by("node")
        .agg(n_visits=pl.col("n").sum())
    )
    return (
        markov.absorption(edges, goal=goal)
        .join(visits, on="node", how="left")
        .select("node", "n_visits", "p_goal", "expected_steps", "expected_steps_given_goal", "is_absorbing")
    )


def _check_goal_in(edges: pl.DataFrame, goal: str) -> None:
    if edges.height == 0:
        raise RiskError("there are no journeys; load and build data first")
    if goal not in set(edges["to_node"].to_list()):
        raise RiskError(f"no journey reaches the goal {goal!r}: conversion probabilities are all 0")


# --------------------------------------------------------------------------------------------------
# Revenue at risk
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversionValue:
    """What one more conversion is worth, and how that number was made."""

    value: float
    basis: str
    average_order_value: float | None
    new_customer_clv: float | None = None


def conversion_value(
    db: Database, basis: ValueBasis = "clv", clv_options: ClvOptions | None = None, *, fitted: ClvResult | None = None
) -> ConversionValue:
    """``aov``: net revenue per order; ``clv``: that plus a new customer's predicted CLV, from
    ``fitted`` when the caller has already fitted the CLV models (the report does, for its value
    section), else from a fit with ``clv_options``."""
    if basis not in VALUE_BASES:
        raise RiskError(f"value basis must be one of {', '.join(VALUE_BASES)}, not {basis!r}")
    aov = average_order_value(db)
    if aov is None:
        raise RiskError("there are no orders, so a conversion has no observed value")
    if basis == "aov":
        return ConversionValue(aov, "aov", aov)
    try:
        future = (fitted or fit_clv(db, clv_options or ClvOptions())).new_customer_clv()
    except CustomerValueError as exc:
        raise RiskError(f"cannot value a conversion by CLV ({exc}); use the value basis 'aov'") from None
    return ConversionValue(aov + future, "clv", aov, future)


def revenue_at_risk(
    db: Database,
    *,
    levels: Sequence[ChainLevel] = CHAIN_LEVELS,  # type: ignore[assignment]
    scope: str = "user",
    goal: str = "purchase",
    value_basis: ValueBasis = "clv",
    value_per_conversion: float | ConversionValue | None = None,
    clv_options: ClvOptions | None = None,
    until_goal: bool = True,
    funnel_steps: str | Sequence[str] | None = None,
) -> pl.DataFrame:
    """Drop-off points of each level ranked by the revenue they put at risk (module docstring).

    One row per (level, node) with ``n_dropoffs``, ``n_journeys_through``, ``dropoff_rate``,
    ``next_node``, ``p_conversion_if_continued``, ``expected_lost_conversions``,
    ``value_per_conversion``, ``revenue_at_risk``, ``share_of_risk`` (within the level), ``rank``
    (within the level) and ``value_basis``. Levels are listed in the order given, each by rank.
    With ``funnel_steps`` (e.g. ``"product_page,cart,checkout,purchase"``) the steps of that funnel
    are valued too (level ``funnel``, see ``_funnel_dropoffs``).
    """
    if value_per_conversion is None:
        value_per_conversion = conversion_value(db, value_basis, clv_options)
    if isinstance(value_per_conversion, ConversionValue):
        value, basis = value_per_conversion.value, value_per_conversion.basis
    else:
        value, basis = float(value_per_conversion), "given"
    frames = []
    for level in levels:
        options = _options(level, scope, goal, until_goal)
        try:
            exits = paths.dropoffs(db, options)  # also prepares journey_steps for this level
        except paths.PathError as exc:
            raise RiskArgumentError(str(exc)) from None
        edges = _goal_edges(db, goal, level, count_users=False)
        _check_goal_in(edges, goal)
        frames.append(_value_dropoffs(db, level, exits, edges, markov.absorption(edges, goal=goal), value))
    if funnel_steps is not None:
        frames.append(_funnel_dropoffs(db, funnel_steps, scope, value))
    if not frames:
        raise RiskArgumentError("no level to value: give at least one level or funnel steps")
    return pl.concat(frames, how="vertical").with_columns(pl.lit(basis).alias("value_basis"))


def _funnel_dropoffs(db: Database, steps: str | Sequence[str], scope: str, value: float) -> pl.DataFrame:
    """Funnel steps as drop-off points: leavers at step k x P(last step | step k+1) x value.

    The funnel is :func:`pipeline.metrics.funnel.funnel` in its default (ordered) mode at ``scope``;
    its last step is the conversion. P(last step | step k+1) is the funnel's conversion from the next
    step: conversion_from_first of the last step / conversion_from_first of step k+1. The rows go
    through the same SQL as the chain's drop-offs (a path funnel is a chain whose only continuation
    of step k is step k+1).
    """
    try:
        frame = fn.funnel(db, steps, scope=scope)  # type: ignore[arg-type]
    except fn.FunnelError as exc:
        raise RiskArgumentError(f"funnel: {exc}") from None
    labels = [str(x) for x in frame["step"].to_list()]
    if len(set(labels)) < len(labels):
        labels = [f"{i}. {label}" for i, label in enumerate(labels, 1)]
    entered = frame["n_entered"].to_list()
    dropped = frame["n_dropped"].to_list()
    from_first = [0.0 if v is None else float(v) for v in frame["conversion_from_first"].to_list()]
    last = from_first[-1]
    exits = pl.DataFrame(
        {
            "node": labels[:-1],
            "n_dropoffs": dropped[:-1],
            "n_journeys_through": entered[:-1],
            "dropoff_rate": [d / e if e else None for d, e in zip(dropped[:-1], entered[:-1], strict=True)],
        },
        schema={"node": pl.String, "n_dropoffs": pl.Int64, "n_journeys_through": pl.Int64, "dropoff_rate": pl.Float64},
    )
    edges = pl.DataFrame(
        {"from_node": labels[:-1], "to_node": labels[1:], "n_transitions": [1] * (len(labels) - 1)},
        schema={"from_node": pl.String, "to_node": pl.String, "n_transitions": pl.Int64},
    )
    props = pl.DataFrame(
        {"node": labels[1:], "p_goal": [last / f if f > 0 else 0.0 for f in from_first[1:]]},
        schema={"node": pl.String, "p_goal": pl.Float64},
    )
    return _value_dropoffs(db, "funnel", exits, edges, props, value)


def _value_dropoffs(
    db: Database, level: str, exits: pl.DataFrame, edges: pl.DataFrame, props: pl.DataFrame, value: float
) -> pl.DataFrame:
    frames = {
        "risk_exits": exits.select("node", "n_dropoffs", "n_journeys_through", "dropoff_rate"),
        "risk_edges": edges.select("from_node", "to_node", "n_transitions"),
        "risk_propensity": props.select("node", "p_goal"),
    }
    for name, frame in frames.items():
        db.register(name, frame)
    try:
        return db.query(
            load_sql("analysis/risk_dropoff_value.sql"), {"level": level, "value_per_conversion": float(value)}
        )
    finally:
        for name in frames:
            db.unregister(name)


# --------------------------------------------------------------------------------------------------
# What-if
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeEdit:
    """One ``from>to=value`` edit; ``signed`` when the value was written with + or - (a delta)."""

    from_node: str
    to_node: str
    value: float
    signed: bool


def parse_edit(text: str, what: str = "--change") -> EdgeEdit:
    """``"cart>checkout=+0.10"`` -> EdgeEdit("cart", "checkout", 0.10, signed=True)."""
    left, sep, number = str(text).rpartition("=")
    source, arrow, target = left.partition(">")
    source, target, number = source.strip(), target.strip(), number.strip()
    if not sep or not arrow or not source or not target or not number:
        raise RiskArgumentError(f"{what} {text!r} must look like FROM>TO=VALUE, e.g. cart>checkout=+0.10")
    try:
        value = float(number)
    except ValueError:
        raise RiskArgumentError(f"{what} {text!r}: {number!r} is not a number") from None
    return EdgeEdit(source, target, value, number[0] in "+-")


def whatif(
    db: Database,
    *,
    change: Iterable[EdgeEdit] = (),
    remove: Iterable[str] = (),
    add: Iterable[EdgeEdit] = (),
    level: ChainLevel = "touchpoint",
    scope: str = "user",
    goal: str = "purchase",
    until_goal: bool = True,
) -> markov.WhatIf:
    """Current vs projected conversion, conversions and revenue after editing the chain.

    ``change`` edits are absolute changes in probability points when signed (``+0.10`` turns 0.30
    into 0.40) and new probabilities when unsigned (``0.4``); one request uses one kind. Other
    out-edges of the edited node are rescaled proportionally (:func:`pipeline.value.markov.whatif`).
    ``remove`` reroutes every transition into a node to ``path_end``; ``add`` adds an edge with the
    given probability. Revenue = conversions x the average order value (``marts.mart_customers``).
    """
    change, add, remove = list(change), list(add), list(remove)
    kinds = {e.signed for e in change}
    if len(kinds) > 1:
        raise RiskArgumentError("--change values are either all signed (+0.1: a change) or all unsigned (0.4: the new "
                        "probability), not a mix")
    edges = chain_edges(db, level, scope, goal, until_goal=until_goal)
    _check_goal_in(edges, goal)
    nodes = set(edges["from_node"].to_list()) | set(edges["to_node"].to_list())
    for edit in [*change, *add]:
        for node in (edit.from_node, edit.to_node):
            if node not in nodes and not (edit in add and node == edit.to_node):
                raise RiskArgumentError(f"node {node!r} is not in the {level} graph{_suggest(node, nodes)}")
    for node in remove:
        if node not in nodes:
            raise RiskArgumentError(f"node {node!r} is not in the {level} graph{_suggest(node, nodes)}")
    try:
        return markov.whatif(
            edges,
            change=_pairs(change),
            remove=remove,
            add=_pairs(add),
            goal=goal,
            change_mode="delta" if kinds != {False} else "set",
            avg_order_value=average_order_value(db),
        )
    except ValueError as exc:
        raise RiskArgumentError(str(exc)) from None


def _pairs(edits: Iterable[EdgeEdit]) -> Mapping[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for e in edits:
        if (e.from_node, e.to_node) in out:
            raise RiskArgumentError(f"edge {e.from_node}>{e.to_node} is edited twice")
        out[(e.from_node, e.to_node)] = e.value
    return out


def _suggest(name: str, choices: Iterable[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
