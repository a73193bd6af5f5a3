"""Absorbing Markov chains on the aggregated transition graph, and what-if projections.

Input is the edge table the transition graph uses (DESIGN.md section 3): one row per
``(from_node, to_node)`` with ``n_transitions``, where the synthetic node ``path_start`` opens every
journey, ``path_end`` closes it (drop-off) and a goal node such as ``purchase`` is the conversion.
Duplicate ``(from_node, to_node)`` rows are summed; rows with ``n_transitions == 0`` only declare nodes.

All functions are pure: they read a polars frame and return numbers or frames; nothing walks
journeys. The chain is first order and fitted by maximum likelihood (a node's out-edge probabilities
are its out-counts divided by its total out-count), so P(reaching the goal) is a *model* estimate:
it equals the observed share of journeys that reach the goal only when the first-order assumption
holds. Probabilities are solved exactly from the fundamental matrix ``N = (I - Q)^-1`` (through a
linear solve, never by simulation), dense for small graphs and sparse LU for large ones.

Conventions (documented once, used everywhere here):

* The goal and ``end`` are absorbing: their out-edges are dropped (what a customer does after the
  purchase does not change whether the purchase happened). A node with no out-edges at all (a sink
  other than goal/end) is absorbing too and counts as a non-conversion.
* ``p_goal`` of a node is the probability of reaching the goal from it (its *propensity*);
  ``expected_steps`` is the expected number of further transitions until absorption (0 at an
  absorbing node; infinite when the chain can be trapped in a loop that never absorbs, which only
  hand-made what-if edits can produce); ``expected_steps_given_goal`` is the same expectation
  conditional on reaching the goal (Doob h-transform: ``(N h)_i / h_i``), null where ``p_goal == 0``.
* A node whose only out-edge is a self-loop is absorbing as well (it never leaves).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.csgraph
import scipy.sparse.linalg

START = "path_start"
END = "path_end"
GOAL = "purchase"
EDGE_COLUMNS = ("from_node", "to_node", "n_transitions")

ChangeMode = Literal["delta", "set"]

# Graphs up to this many transient states are solved densely; bigger ones with a sparse LU.
_DENSE_LIMIT = 1500
_TOL = 1e-12


# --------------------------------------------------------------------------------------------
# building blocks


def _check_edges(edges: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in EDGE_COLUMNS if c not in edges.columns]
    if missing:
        raise ValueError(f"edge table is missing column(s) {missing}; expected {list(EDGE_COLUMNS)}")
    out = edges.select(
        pl.col("from_node").cast(pl.String),
        pl.col("to_node").cast(pl.String),
        pl.col("n_transitions").cast(pl.Float64),
    )
    if out.select(pl.any_horizontal(pl.all().is_null()).any()).item():
        raise ValueError("edge table has null from_node, to_node or n_transitions")
    if out.select((pl.col("n_transitions") < 0).any()).item():
        raise ValueError("edge table has negative n_transitions")
    return out


def _node_order(nodes: Iterable[str], start: str = START) -> list[str]:
    """``start`` first (when present), then every other node in sorted order."""
    uniq = sorted(set(nodes))
    if start in uniq:
        uniq.remove(start)
        uniq.insert(0, start)
    return uniq


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _require_node(name: str, states: list[str], what: str) -> None:
    if name not in states:
        raise ValueError(f"{what} {name!r} is not a node of the edge table{_suggest(name, states)}")


def _counts(edges: pl.DataFrame, states: list[str]) -> sp.csr_matrix:
    index = {s: i for i, s in enumerate(states)}
    agg = edges.group_by("from_node", "to_node").agg(pl.col("n_transitions").sum())
    rows = np.fromiter((index[s] for s in agg["from_node"]), dtype=np.int64, count=agg.height)
    cols = np.fromiter((index[s] for s in agg["to_node"]), dtype=np.int64, count=agg.height)
    n = len(states)
    return sp.csr_matrix((agg["n_transitions"].to_numpy(), (rows, cols)), shape=(n, n))


def _row_normalise(counts: sp.csr_matrix, absorbing: np.ndarray) -> sp.csr_matrix:
    """Row-stochastic matrix: absorbing rows (given, or without out-count) become ``P[i, i] = 1``."""
    n = counts.shape[0]
    counts = counts.tocsr(copy=True)
    keep = ~absorbing
    counts = sp.diags(keep.astype(float)) @ counts  # drop the out-edges of absorbing states
    totals = np.asarray(counts.sum(axis=1)).ravel()
    sink = totals <= 0
    inv = np.divide(1.0, totals, out=np.zeros(n), where=~sink)
    P = sp.diags(inv) @ counts
    P = P + sp.diags(sink.astype(float))
    P.eliminate_zeros()
    return P.tocsr()


def _reaches(P: sp.csr_matrix, targets: np.ndarray) -> np.ndarray:
    """Boolean mask of states from which some state in ``targets`` is reachable (targets included)."""
    n = P.shape[0]
    if not targets.any():
        return np.zeros(n, dtype=bool)
    # reversed graph plus a super node n with an edge to every target; BFS from the super node
    A = (P != 0).astype(np.int8).T.tocsr()
    t = np.flatnonzero(targets)
    sup = sp.csr_matrix((np.ones(t.size, dtype=np.int8), (np.zeros(t.size, dtype=np.int64), t)), shape=(1, n))
    G = sp.vstack(
        [sp.hstack([A, sp.csr_matrix((n, 1), dtype=np.int8)]), sp.hstack([sup, sp.csr_matrix((1, 1), dtype=np.int8)])]
    ).tocsr()
    order = scipy.sparse.csgraph.breadth_first_order(G, n, directed=True, return_predecessors=False)
    mask = np.zeros(n + 1, dtype=bool)
    mask[order] = True
    return mask[:n]


def _factor(A: sp.csr_matrix):
    """A solve function for ``A x = b`` (dense LU for small systems, sparse LU otherwise)."""
    if A.shape[0] == 0:
        return lambda b: np.zeros_like(b, dtype=float)
    if A.shape[0] <= _DENSE_LIMIT:
        lu = scipy.linalg.lu_factor(A.toarray(), check_finite=False)
        return lambda b: scipy.linalg.lu_solve(lu, b, check_finite=False)
    lu = scipy.sparse.linalg.splu(A.tocsc())
    return lu.solve


@dataclass(frozen=True)
class _Absorbed:
    p_goal: np.ndarray
    expected_steps: np.ndarray
    expected_steps_given_goal: np.ndarray


def _absorb(P: sp.csr_matrix, absorbing: np.ndarray, goal: int, *, steps: bool = True) -> _Absorbed:
    """Solve the absorbing chain ``P`` (row-stochastic, absorbing rows are identity rows)."""
    n = P.shape[0]
    p_goal = np.zeros(n)
    p_goal[goal] = 1.0
    exp_steps = np.zeros(n)
    given = np.full(n, np.nan)
    given[goal] = 0.0
    live = _reaches(P, absorbing) & ~absorbing  # transient states that can be absorbed
    trapped = ~absorbing & ~live  # transient states that never absorb
    idx = np.flatnonzero(live)
    if idx.size:
        Q = P[idx][:, idx]
        r = np.asarray(P[idx][:, [goal]].todense()).ravel()
        solve = _factor(sp.identity(idx.size, format="csr") - Q)
        if steps:
            x = solve(np.column_stack([r, np.ones(idx.size)]))
            h, t = x[:, 0], x[:, 1]
        else:
            h, t = solve(r), np.zeros(idx.size)
        h = np.clip(h, 0.0, 1.0)
        p_goal[idx] = h
        if steps:
            leaky = _reaches(P, trapped)[idx]
            exp_steps[idx] = np.where(leaky, np.inf, t)
            pos = h > _TOL
            if pos.any():
                y = solve(h)
                given[idx[pos]] = y[pos] / h[pos]
    exp_steps[trapped] = np.inf
    return _Absorbed(p_goal, exp_steps, given)


def _chain(
    edges: pl.DataFrame, *, goal: str, end: str, start: str = START
) -> tuple[list[str], sp.csr_matrix, np.ndarray]:
    edges = _check_edges(edges)
    states = _node_order(pl.concat([edges["from_node"], edges["to_node"]]).to_list(), start)
    _require_node(goal, states, "goal")
    absorbing = np.isin(np.array(states, dtype=object), [goal, end])
    P = _row_normalise(_counts(edges, states), absorbing)
    absorbing = absorbing | _is_identity_row(P)
    return states, P, absorbing


def _is_identity_row(P: sp.csr_matrix) -> np.ndarray:
    return np.isclose(P.diagonal(), 1.0, rtol=0.0, atol=_TOL)


# --------------------------------------------------------------------------------------------
# public API


def transition_matrix(
    edges: pl.DataFrame, *, absorbing: Iterable[str] = (), start: str = START
) -> tuple[list[str], np.ndarray]:
    """Maximum-likelihood transition matrix of the edge table.

    Returns ``(states, P)`` with ``states`` = ``start`` first, then every other node sorted, and
    ``P[i, j]`` = n(i -> j) / n(i -> *). Every row sums to 1: the out-edges of the nodes listed in
    ``absorbing`` are dropped, and those nodes and every node without out-edges (e.g. ``path_end``)
    get ``P[i, i] = 1``. ``P`` is a dense ``numpy`` array (use :func:`absorption` for big graphs,
    which stays sparse).
    """
    edges = _check_edges(edges)
    states = _node_order(pl.concat([edges["from_node"], edges["to_node"]]).to_list(), start)
    mask = np.isin(np.array(states, dtype=object), list(absorbing))
    return states, _row_normalise(_counts(edges, states), mask).toarray()


def absorption(edges: pl.DataFrame, goal: str = GOAL, end: str = END) -> pl.DataFrame:
    """Propensity of every node: P(reaching ``goal``) and the expected number of further steps.

    ``goal`` and ``end`` are absorbing (their out-edges are dropped), as is any node without
    out-edges. One row per node (``path_start`` first, then sorted by name) with columns ``node``,
    ``p_goal`` (in [0, 1]), ``expected_steps`` (transitions until absorption, counting the final
    edge into the goal or ``end``; 0 at absorbing nodes), ``expected_steps_given_goal`` (the same,
    conditional on reaching the goal; null where ``p_goal == 0``) and ``is_absorbing``.

    Example: ``path_start -> a`` (10), ``a -> purchase`` (3), ``a -> path_end`` (7) gives
    ``p_goal(path_start) = 0.3`` and ``expected_steps(path_start) = 2``.
    """
    states, P, absorbing = _chain(edges, goal=goal, end=end)
    res = _absorb(P, absorbing, states.index(goal))
    return pl.DataFrame(
        {
            "node": states,
            "p_goal": res.p_goal,
            "expected_steps": res.expected_steps,
            "expected_steps_given_goal": res.expected_steps_given_goal,
            "is_absorbing": absorbing,
        }
    ).with_columns(pl.col("expected_steps_given_goal").fill_nan(None))


def goal_probability(edges: pl.DataFrame, *, goal: str = GOAL, end: str = END, start: str = START) -> float:
    """P(reaching ``goal`` from ``start``) in the absorbing chain of :func:`absorption`."""
    states, P, absorbing = _chain(edges, goal=goal, end=end, start=start)
    _require_node(start, states, "start")
    return float(_absorb(P, absorbing, states.index(goal), steps=False).p_goal[states.index(start)])


@dataclass(frozen=True)
class WhatIf:
    """Result of :func:`whatif`: current vs projected conversion from ``path_start``.

    ``conversions_*`` = ``n_journeys * p_*`` (journeys that reach the goal at least once);
    ``revenue_*`` = ``conversions_* * avg_order_value`` (None when no order value was given).
    ``nodes`` holds the per-node propensity before and after (``node``, ``p_goal_current``,
    ``p_goal_projected``); ``edges`` the projected probabilities (``from_node``, ``to_node``, ``p``)
    after dropping the out-edges of the absorbing goal and end.
    """

    p_current: float
    p_projected: float
    n_journeys: float
    conversions_current: float
    conversions_projected: float
    revenue_current: float | None
    revenue_projected: float | None
    nodes: pl.DataFrame
    edges: pl.DataFrame

    @property
    def delta(self) -> float:
        """Absolute change in P(conversion), in probability points."""
        return self.p_projected - self.p_current

    @property
    def lift(self) -> float | None:
        """Relative change ``p_projected / p_current - 1`` (None when ``p_current`` is 0)."""
        return self.p_projected / self.p_current - 1.0 if self.p_current > 0 else None

    def to_frame(self) -> pl.DataFrame:
        """One-row summary (for tables, CSV and JSON output)."""
        return pl.DataFrame(
            {
                "p_current": [self.p_current],
                "p_projected": [self.p_projected],
                "delta": [self.delta],
                "lift": [self.lift],
                "n_journeys": [self.n_journeys],
                "conversions_current": [self.conversions_current],
                "conversions_projected": [self.conversions_projected],
                "revenue_current": [self.revenue_current],
                "revenue_projected": [self.revenue_projected],
            },
            schema_overrides={"lift": pl.Float64, "revenue_current": pl.Float64, "revenue_projected": pl.Float64},
        )


def _probabilities(edges: pl.DataFrame, *, absorbing: Iterable[str]) -> pl.DataFrame:
    """``from_node, to_node, p`` with absorbing nodes' out-edges dropped (zero-count edges dropped)."""
    absorbing = list(absorbing)
    return (
        edges.filter(~pl.col("from_node").is_in(absorbing))
        .group_by("from_node", "to_node")
        .agg(pl.col("n_transitions").sum())
        .filter(pl.col("n_transitions") > 0)
        .with_columns(p=pl.col("n_transitions") / pl.col("n_transitions").sum().over("from_node"))
        .select("from_node", "to_node", "p")
        .sort("from_node", "to_node")
    )


def _set_out_probs(probs: pl.DataFrame, node: str, fixed: Mapping[str, float], end: str) -> pl.DataFrame:
    """Give ``node``'s out-edges in ``fixed`` their new probabilities and rescale the others.

    The untouched out-edges share the remaining mass ``1 - sum(fixed)`` in proportion to their
    current probabilities. If there are none, the remaining mass goes to ``end`` (drop-off).
    """
    total_fixed = float(sum(fixed.values()))
    for to, p in fixed.items():
        if not (-_TOL <= p <= 1 + _TOL):
            raise ValueError(f"projected probability of {node!r} -> {to!r} is {p:.6g}, outside [0, 1]")
    if total_fixed > 1 + 1e-9:
        raise ValueError(f"projected out-edge probabilities of {node!r} sum to {total_fixed:.6g} > 1")
    rest_mass = max(0.0, 1.0 - total_fixed)
    others = probs.filter((pl.col("from_node") == node) & ~pl.col("to_node").is_in(list(fixed)))
    others_total = float(others["p"].sum()) if others.height else 0.0
    new_rows = pl.DataFrame(
        {
            "from_node": [node] * len(fixed),
            "to_node": list(fixed),
            "p": [min(max(p, 0.0), 1.0) for p in fixed.values()],
        },
        schema={"from_node": pl.String, "to_node": pl.String, "p": pl.Float64},
    )
    if others_total > _TOL:
        others = others.with_columns(pl.col("p") * (rest_mass / others_total))
    elif rest_mass > 1e-9:
        if end in fixed:
            raise ValueError(
                f"out-edges of {node!r} cannot sum to 1: only the changed edges remain and they sum to "
                f"{total_fixed:.6g}"
            )
        others = pl.DataFrame({"from_node": [node], "to_node": [end], "p": [rest_mass]}, schema=new_rows.schema)
    rest = probs.filter(pl.col("from_node") != node)
    return pl.concat([rest, others, new_rows]).filter(pl.col("p") > 0).sort("from_node", "to_node")


def _as_pairs(arg, what: str) -> dict[tuple[str, str], float]:
    if arg is None:
        return {}
    if isinstance(arg, Mapping):
        items = list(arg.items())
    else:  # iterable of (from, to, value)
        items = [((a, b), v) for a, b, v in arg]
    out: dict[tuple[str, str], float] = {}
    for key, value in items:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"{what} keys must be (from_node, to_node) pairs, got {key!r}")
        out[(str(key[0]), str(key[1]))] = float(value)
    return out


def whatif(
    edges: pl.DataFrame,
    *,
    change: Mapping[tuple[str, str], float] | Iterable[tuple[str, str, float]] | None = None,
    remove: str | Iterable[str] | None = None,
    add: Mapping[tuple[str, str], float] | Iterable[tuple[str, str, float]] | None = None,
    goal: str = GOAL,
    start: str = START,
    end: str = END,
    change_mode: ChangeMode = "delta",
    n_journeys: float | None = None,
    avg_order_value: float | None = None,
) -> WhatIf:
    """Project P(conversion from ``start``) after editing the chain.

    Edits are applied in this order, on the probabilities of the absorbing chain (goal and end
    absorbing, as in :func:`absorption`):

    1. ``remove``: a node (or several). Every transition *into* it is rerouted to ``end`` (those
       customers drop off there) and its out-edges disappear. ``start``, ``goal`` and ``end`` cannot
       be removed.
    2. ``add``: ``{(from, to): p}`` adds a new edge with probability ``p``; the other out-edges of
       ``from`` are scaled by ``1 - p`` (proportional renormalisation). The edge must not exist yet
       (use ``change``). A new ``to`` node without out-edges is an absorbing non-conversion.
    3. ``change``: ``{(from, to): value}``. With ``change_mode="delta"`` (default) ``value`` is an
       *absolute* change in probability points: ``{("cart", "checkout"): +0.10}`` turns 0.30 into
       0.40 (not 0.33). With ``change_mode="set"`` it is the new probability. The other out-edges of
       ``from`` are rescaled proportionally so they sum to ``1 - (changed edges)``; if ``from`` has no
       other out-edge, freed mass goes to ``end``. A projected probability outside [0, 1] is an error.

    ``n_journeys`` defaults to the number of journeys in the edge table (the total out-count of
    ``start``). Returns a :class:`WhatIf`; with no edits (or a change of 0) projected equals current.
    """
    edges = _check_edges(edges)
    states = _node_order(pl.concat([edges["from_node"], edges["to_node"]]).to_list(), start)
    _require_node(goal, states, "goal")
    _require_node(start, states, "start")
    if change_mode not in ("delta", "set"):
        raise ValueError(f"change_mode must be 'delta' or 'set', got {change_mode!r}")
    absorbing = (goal, end)
    current = _probabilities(edges, absorbing=absorbing)
    projected = current

    removed = [remove] if isinstance(remove, str) else list(remove or [])
    for node in removed:
        _require_node(node, states, "node to remove")
        if node in (start, goal, end):
            raise ValueError(f"cannot remove {node!r}: start, goal and end nodes are fixed")
    if removed:
        projected = (
            projected.filter(~pl.col("from_node").is_in(removed))
            .with_columns(
                to_node=pl.when(pl.col("to_node").is_in(removed)).then(pl.lit(end)).otherwise(pl.col("to_node"))
            )
            .group_by("from_node", "to_node")
            .agg(pl.col("p").sum())
            .sort("from_node", "to_node")
        )

    def out_edges(node: str) -> dict[str, float]:
        rows = projected.filter(pl.col("from_node") == node)
        return dict(zip(rows["to_node"].to_list(), rows["p"].to_list(), strict=True))

    def check_source(node: str, what: str) -> None:
        _require_node(node, states, f"{what} source")
        if node in absorbing:
            raise ValueError(f"cannot {what} an out-edge of {node!r}: goal and end are absorbing")
        if node in removed:
            raise ValueError(f"cannot {what} an out-edge of removed node {node!r}")

    for (a, b), p in _as_pairs(add, "add").items():
        check_source(a, "add")
        if b in removed:
            raise ValueError(f"cannot add an edge into removed node {b!r}")
        if b in out_edges(a):
            raise ValueError(f"edge {a!r} -> {b!r} already exists; use change= to alter it")
        projected = _set_out_probs(projected, a, {b: p}, end)

    by_source: dict[str, dict[str, float]] = {}
    for (a, b), v in _as_pairs(change, "change").items():
        check_source(a, "change")
        if b in removed:
            raise ValueError(f"cannot change an edge into removed node {b!r}")
        by_source.setdefault(a, {})[b] = v
    for a, targets in by_source.items():
        old = out_edges(a)
        fixed = {b: (old.get(b, 0.0) + v if change_mode == "delta" else v) for b, v in targets.items()}
        projected = _set_out_probs(projected, a, fixed, end)

    p_now = _absorption_from_probabilities(current, goal=goal, end=end, start=start)
    p_new = _absorption_from_probabilities(projected, goal=goal, end=end, start=start)
    if n_journeys is None:
        n_journeys = float(edges.filter(pl.col("from_node") == start)["n_transitions"].sum())
    conv_now = n_journeys * p_now[start]
    conv_new = n_journeys * p_new[start]
    nodes = (
        pl.DataFrame({"node": list(p_now), "p_goal_current": list(p_now.values())})
        .join(
            pl.DataFrame({"node": list(p_new), "p_goal_projected": list(p_new.values())}),
            on="node",
            how="full",
            coalesce=True,
        )
        .sort(pl.col("node") != start, "node")
    )
    return WhatIf(
        p_current=p_now[start],
        p_projected=p_new[start],
        n_journeys=float(n_journeys),
        conversions_current=conv_now,
        conversions_projected=conv_new,
        revenue_current=None if avg_order_value is None else conv_now * avg_order_value,
        revenue_projected=None if avg_order_value is None else conv_new * avg_order_value,
        nodes=nodes,
        edges=projected,
    )


def _absorption_from_probabilities(
    probs: pl.DataFrame, *, goal: str = GOAL, end: str = END, start: str = START
) -> dict[str, float]:
    """P(reaching ``goal``) per node from a probability table ``from_node, to_node, p``."""
    as_counts = probs.rename({"p": "n_transitions"})
    nodes = set(as_counts["from_node"].to_list()) | set(as_counts["to_node"].to_list()) | {goal, start}
    as_counts = pl.concat(
        [
            as_counts,
            pl.DataFrame(
                {"from_node": sorted(nodes), "to_node": sorted(nodes), "n_transitions": 0.0},
                schema=as_counts.schema,
            ),
        ]
    )
    states, P, absorbing = _chain(as_counts, goal=goal, end=end, start=start)
    res = _absorb(P, absorbing, states.index(goal), steps=False)
    return dict(zip(states, res.p_goal.tolist(), strict=True))
