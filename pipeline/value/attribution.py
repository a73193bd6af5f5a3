"""Channel attribution: heuristic, Markov-chain (removal effect) and Shapley models.

Pure functions on two polars frames (no database):

* ``touches``: ``journey_id`` (str), ``ts`` (datetime), ``channel`` (str); one row per touch, already
  limited by the caller to the lookback window before the conversion.
* ``journeys``: ``journey_id``, ``converted`` (bool), ``revenue`` (float, 0 when not converted),
  ``conversion_ts`` (datetime or null).

Conventions shared by every model:

* A journey's touches are ordered by ``ts``; ties keep the input row order. Touches whose
  ``journey_id`` is not in ``journeys`` are ignored; a null ``channel`` is an error.
* Only converting journeys with at least one touch are credited, so every model's attributed
  ``conversions`` sum to the number of such journeys and its ``revenue`` to their revenue (converting
  journeys without any touch stay unattributed). ``share`` is a channel's fraction of the attributed
  conversions (in [0, 1], summing to 1 when anything converted).
* The output lists every channel seen in the touches of known journeys (zeros included), sorted by
  name, with columns ``channel``, ``model``, ``conversions``, ``revenue``, ``share``.

Models (``model=``):

* ``first`` / ``last``: all credit to the first / last touch.
* ``linear``: ``1/n`` to each of the ``n`` touches (a channel touched twice gets ``2/n``).
* ``position`` (U-shaped): weights ``(first, middle, last)`` = ``position_weights``, default
  (0.4, 0.2, 0.4); the middle weight is split evenly over the ``n - 2`` middle touches. One touch gets
  100%; two touches split ``first : last`` renormalised (50/50 with the default weights).
* ``time_decay``: weight ``2 ** (-(conversion_ts - ts) / half_life_days)``, normalised per journey;
  a converting journey with a null ``conversion_ts`` uses its last touch time instead.
* ``markov``: first-order (or ``markov_order``-order) absorbing Markov chain over the paths
  ``path_start -> c1 -> ... -> ck -> conversion | null`` of *all* journeys with touches (converting
  and not). P(conversion from ``path_start``) is solved exactly (fundamental matrix, see
  :mod:`pipeline.value.markov`). The removal effect of channel ``c`` is
  ``1 - P(conv | c removed) / P(conv)``, where removing ``c`` redirects every transition into ``c``
  (for higher orders: into any state whose current channel is ``c``) to ``null``. Attributed
  conversions are the removal effects normalised to sum to the total conversions; revenue is split
  in the same proportions (the chain does not model order value).
* ``shapley``: exact Shapley values of the cooperative game whose players are the channels and whose
  characteristic function is ``v(S)`` = number (or revenue, for the revenue column) of converting
  journeys whose *set* of channels is a subset of ``S``. This is the count-based, "cumulative"
  characteristic function of Zhao, Mahboobi & Bagheri (2018, "Shapley value methods for attribution
  modeling in online advertising", arXiv:1804.05327), a simplification of the probability-based
  ``v(S) = P(conversion | exposure to S)`` of Dalessandro et al. (2012); it is *not* Shao & Li (2011),
  whose probabilistic model is not a Shapley game. It is computed over channel bitmasks with a
  subset-sum (zeta) transform: exact, ``O(2^m * m)`` for ``m`` channels present in converting
  journeys; more than 20 such channels is an error. Note that this game is a sum of unanimity games,
  so its Shapley value equals splitting each conversion evenly over the journey's *distinct*
  channels (a useful cross-check, used in the tests).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import polars as pl
import scipy.sparse as sp

from pipeline.value import markov as mk

Model = Literal["first", "last", "linear", "position", "time_decay", "markov", "shapley"]
MODELS: tuple[str, ...] = get_args(Model)
HEURISTIC_MODELS: tuple[str, ...] = ("first", "last", "linear", "position", "time_decay")
MAX_SHAPLEY_CHANNELS = 20
_BOOT_CELLS = 5_000_000  # replicate-by-journey weights materialised at once (bootstrap memory bound)

OUTPUT_SCHEMA = {
    "channel": pl.String,
    "model": pl.String,
    "conversions": pl.Float64,
    "revenue": pl.Float64,
    "share": pl.Float64,
}


@dataclass(frozen=True)
class _Prepared:
    """Touches sorted and indexed: ``jidx`` (journey), ``cidx`` (channel), ``pos``, ``n``."""

    touches: pl.DataFrame  # jidx, cidx, pos, n, ts, converted, revenue, conversion_ts
    journeys: pl.DataFrame  # jidx, converted, revenue (journeys with >= 1 touch, in jidx order)
    channels: list[str]


def _check_columns(frame: pl.DataFrame, needed: Sequence[str], name: str) -> None:
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} is missing column(s) {missing}; it needs {list(needed)}")


def _prepare(touches: pl.DataFrame, journeys: pl.DataFrame) -> _Prepared:
    _check_columns(touches, ("journey_id", "ts", "channel"), "touches")
    _check_columns(journeys, ("journey_id", "converted", "revenue", "conversion_ts"), "journeys")
    if touches["channel"].null_count():
        raise ValueError(f"touches has {touches['channel'].null_count()} row(s) with a null channel")
    if journeys["journey_id"].is_duplicated().any():
        raise ValueError("journeys has duplicate journey_id values")
    ts_dtype = touches.schema["ts"]
    j = journeys.select(
        pl.col("journey_id").cast(pl.String),
        pl.col("converted").cast(pl.Boolean).fill_null(False),
        pl.col("revenue").cast(pl.Float64).fill_null(0.0),
        pl.col("conversion_ts").cast(ts_dtype),
    )
    t = (
        touches.select(pl.col("journey_id").cast(pl.String), "ts", pl.col("channel").cast(pl.String))
        .with_row_index("_row")
        .join(j, on="journey_id", how="inner")
        .sort("journey_id", "ts", "_row")
    )
    channels = sorted(t["channel"].unique().to_list())
    cmap = pl.DataFrame(
        {"channel": channels, "cidx": np.arange(len(channels), dtype=np.int64)},
        schema={"channel": pl.String, "cidx": pl.Int64},
    )
    t = (
        t.with_columns(jidx=pl.col("journey_id").rank("dense").cast(pl.Int64) - 1)
        .join(cmap, on="channel", how="left")
        .with_columns(
            pos=pl.int_range(pl.len(), dtype=pl.Int64).over("jidx"),
            n=pl.len().over("jidx").cast(pl.Int64),
        )
        .select("jidx", "cidx", "pos", "n", "ts", "converted", "revenue", "conversion_ts")
        .sort("jidx", "pos")
    )
    jr = t.filter(pl.col("pos") == 0).select("jidx", "converted", "revenue").sort("jidx")
    return _Prepared(t, jr, channels)


def _check_model(model: str) -> None:
    if model not in MODELS:
        close = difflib.get_close_matches(str(model), MODELS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown attribution model {model!r}{hint} (choose from {list(MODELS)})")


def _check_options(half_life_days: float, position_weights: Sequence[float]) -> tuple[float, float, float]:
    if not half_life_days > 0:
        raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
    if len(position_weights) != 3:
        raise ValueError("position_weights must be (first, middle, last)")
    wf, wm, wl = (float(w) for w in position_weights)
    if min(wf, wm, wl) < 0 or not math.isclose(wf + wm + wl, 1.0, abs_tol=1e-9):
        raise ValueError(f"position_weights must be non-negative and sum to 1, got {tuple(position_weights)}")
    return wf, wm, wl


# --------------------------------------------------------------------------------------------
# heuristic credit (one row per converting journey and channel; credits sum to 1 per journey)


def _touch_weight(model: str, half_life_days: float, weights: tuple[float, float, float]) -> pl.Expr:
    pos, n = pl.col("pos"), pl.col("n")
    if model == "first":
        return (pos == 0).cast(pl.Float64)
    if model == "last":
        return (pos == n - 1).cast(pl.Float64)
    if model == "linear":
        return 1.0 / n.cast(pl.Float64)
    if model == "position":
        wf, wm, wl = weights
        two_first = wf / (wf + wl) if wf + wl > 0 else 0.5
        return (
            pl.when(n == 1)
            .then(1.0)
            .when(n == 2)
            .then(pl.when(pos == 0).then(two_first).otherwise(1.0 - two_first))
            .when(pos == 0)
            .then(wf)
            .when(pos == n - 1)
            .then(wl)
            .otherwise(wm / (n - 2).cast(pl.Float64))
        )
    if model == "time_decay":  # the column decay_weight: _with_decay_weight
        return pl.col("decay_weight") / pl.col("decay_weight").sum().over("jidx")
    raise AssertionError(model)  # pragma: no cover


def _with_decay_weight(touches: pl.DataFrame, half_life_days: float) -> pl.DataFrame:
    """``touches`` plus ``decay_weight``: 2^(-age / half-life), age in days before the conversion.

    One window per pass: polars 2.1 evaluates a window whose input holds another window in time
    quadratic in the rows (0.47 s at 400,000 touches, 6.1 s at 1.6M; the report at 100M events sat
    in it for over 10 minutes), while these passes take 0.2 s at 1.6M.
    """
    age = (pl.col("conversion_ts") - pl.col("ts")).dt.total_microseconds().cast(pl.Float64) / 86_400e6
    return (
        touches.with_columns(conversion_ts=pl.coalesce(pl.col("conversion_ts"), pl.col("ts").max().over("jidx")))
        .with_columns(age=age)
        # shift by the youngest touch so weights never underflow; the normalised result is the same
        .with_columns(decay_weight=pl.lit(2.0).pow((pl.col("age").min().over("jidx") - pl.col("age")) / half_life_days))
    )


def _credits(prep: _Prepared, model: str, half_life_days: float, weights: tuple[float, float, float]) -> pl.DataFrame:
    """``jidx, cidx, credit, revenue`` for converting journeys (heuristic models)."""
    conv = prep.touches.filter(pl.col("converted"))
    if model == "time_decay":
        conv = _with_decay_weight(conv, half_life_days)
    return (
        conv.with_columns(credit=_touch_weight(model, half_life_days, weights))
        .group_by("jidx", "cidx")
        .agg(pl.col("credit").sum(), pl.col("revenue").first())
        .sort("jidx", "cidx")
    )


# --------------------------------------------------------------------------------------------
# Shapley (exact, bitmasks + zeta transform)


def _shapley_players(prep: _Prepared) -> tuple[np.ndarray, pl.DataFrame]:
    """Channels present in converting journeys (the players) and each converting journey's mask."""
    pairs = prep.touches.filter(pl.col("converted")).select("jidx", "cidx").unique()
    players = np.sort(pairs["cidx"].unique().to_numpy())
    if players.size > MAX_SHAPLEY_CHANNELS:
        raise ValueError(
            f"exact Shapley attribution supports at most {MAX_SHAPLEY_CHANNELS} channels in converting "
            f"journeys, got {players.size}; group channels (e.g. by channel group) first"
        )
    bit = pl.DataFrame({"cidx": players, "bit": np.left_shift(1, np.arange(players.size, dtype=np.int64))})
    masks = pairs.join(bit, on="cidx").group_by("jidx").agg(mask=pl.col("bit").sum()).sort("jidx")
    return players, masks


def shapley_values(exact: np.ndarray) -> np.ndarray:
    """Shapley values from the value of each *exact* coalition (batched).

    ``exact[..., mask]`` is the worth contributed by the coalition whose members are the set bits of
    ``mask`` (here: conversions of journeys with exactly that channel set). The characteristic
    function ``v(S) = sum(exact[T] for T subset of S)`` is formed by a zeta (subset-sum) transform,
    then ``phi_i = sum_{S not containing i} |S|! (m-|S|-1)! / m! * (v(S + i) - v(S))``.
    Returns an array of shape ``exact.shape[:-1] + (m,)``.
    """
    size = exact.shape[-1]
    m = size.bit_length() - 1
    if size != 1 << m:
        raise ValueError("the last axis of exact must have length 2**m")
    batch = exact.shape[:-1]
    v = np.array(exact, dtype=float).reshape(-1, size)
    b = v.shape[0]
    for i in range(m):  # zeta transform, one bit (channel) at a time
        view = v.reshape(b, -1, 2, 1 << i)
        view[:, :, 1, :] += view[:, :, 0, :]
    popcount = np.bitwise_count(np.arange(size, dtype=np.uint64)).astype(np.int64)
    weight = np.array([1.0 / (m * math.comb(m - 1, s)) for s in range(m)]) if m else np.zeros(0)
    phi = np.empty((b, m))
    for i in range(m):
        view = v.reshape(b, -1, 2, 1 << i)
        w = weight[popcount.reshape(-1, 2, 1 << i)[:, 0, :]]
        phi[:, i] = ((view[:, :, 1, :] - view[:, :, 0, :]) * w).sum(axis=(1, 2))
    return phi.reshape(*batch, m)


def _shapley_exact_matrix(prep: _Prepared) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    """Players, a (journeys x 2^m) one-hot matrix of converting journeys' masks, their revenue."""
    players, masks = _shapley_players(prep)
    n_j = prep.journeys.height
    onehot = sp.csr_matrix(
        (np.ones(masks.height), (masks["jidx"].to_numpy(), masks["mask"].to_numpy())),
        shape=(n_j, 1 << players.size),
    )
    return players, onehot, prep.journeys["revenue"].to_numpy()


# --------------------------------------------------------------------------------------------
# Markov (removal effects)


@dataclass(frozen=True)
class _MarkovPaths:
    """The chain's states and edges. State 0 is ``path_start``; then one state per distinct tuple of
    the last ``order`` channels; the last two are ``conversion`` and ``null``."""

    n_states: int
    last_channel: np.ndarray  # per state: index of its current channel, -1 for start/absorbing
    edge_from: np.ndarray  # per edge id: state index
    edge_to: np.ndarray
    per_journey: sp.csr_matrix  # journeys x edges: transition counts
    start: int
    conversion: int
    null: int


def _markov_paths(prep: _Prepared, order: int) -> _MarkovPaths:
    """Transitions ``path_start -> s1 -> ... -> sk -> conversion | null`` of every journey.

    Vectorised over the sorted touch arrays: a state is the integer code of the last ``order``
    channel indices (0 standing for "before the path started"), so no loop walks touches.
    """
    if order < 1:
        raise ValueError(f"markov_order must be >= 1, got {order}")
    k = len(prep.channels)
    base = k + 1
    if order * math.log2(base) >= 62:
        raise ValueError(f"markov_order={order} is too high for {k} channels")
    t = prep.touches
    jidx, cidx, pos, n = (t[c].to_numpy() for c in ("jidx", "cidx", "pos", "n"))
    conv = t["converted"].to_numpy()
    code = cidx + 1
    for lag in range(1, order):
        prev = np.zeros_like(cidx)
        prev[lag:] = cidx[:-lag] + 1
        code = code + np.where(pos >= lag, prev, 0) * base**lag
    uniq, inverse = np.unique(code, return_inverse=True)
    state = inverse + 1  # 0 is path_start
    n_states = uniq.size + 3
    conversion, null = n_states - 2, n_states - 1
    prev_state = np.empty_like(state)
    prev_state[1:] = state[:-1]
    from_ = np.where(pos == 0, 0, prev_state)  # entering each touch
    last = pos == n - 1  # leaving the last touch
    from_all = np.concatenate([from_, state[last]])
    to_all = np.concatenate([state, np.where(conv[last], conversion, null)])
    j_all = np.concatenate([jidx, jidx[last]])
    edge_ids, edge = np.unique(from_all * n_states + to_all, return_inverse=True)
    per_journey = sp.csr_matrix(
        (np.ones(edge.size), (j_all, edge)), shape=(prep.journeys.height, edge_ids.size)
    )  # duplicates are summed
    last_channel = np.full(n_states, -1, dtype=np.int64)
    last_channel[1 : uniq.size + 1] = uniq % base - 1
    return _MarkovPaths(
        n_states=n_states,
        last_channel=last_channel,
        edge_from=edge_ids // n_states,
        edge_to=edge_ids % n_states,
        per_journey=per_journey,
        start=0,
        conversion=conversion,
        null=null,
    )


def _removal_effects(paths: _MarkovPaths, edge_counts: np.ndarray, n_channels: int) -> tuple[float, np.ndarray]:
    """Base P(conversion) and the removal effect per channel from aggregated edge counts.

    Every probability is an exact absorbing-chain solve (:func:`pipeline.value.markov._absorb`).
    """
    s = paths.n_states
    counts = np.bincount(paths.edge_from * s + paths.edge_to, weights=edge_counts, minlength=s * s).reshape(s, s)
    absorbing = np.zeros(s, dtype=bool)
    absorbing[[paths.conversion, paths.null]] = True
    P = mk._row_normalise(sp.csr_matrix(counts), absorbing).toarray()

    def p_conv(matrix: np.ndarray) -> float:
        res = mk._absorb(sp.csr_matrix(matrix), absorbing, paths.conversion, steps=False)
        return float(res.p_goal[paths.start])

    base = p_conv(P)
    effects = np.zeros(n_channels)
    if base <= 0:
        return base, effects
    for c in np.unique(paths.last_channel[paths.last_channel >= 0]):
        cols = np.flatnonzero(paths.last_channel == c)  # states whose current channel is c
        removed = P.copy()
        removed[:, paths.null] += removed[:, cols].sum(axis=1)
        removed[:, cols] = 0.0
        effects[c] = max(0.0, 1.0 - p_conv(removed) / base)
    return base, effects


# --------------------------------------------------------------------------------------------
# assembling results


def _frame(channels: list[str], model: str, conversions: np.ndarray, revenue: np.ndarray) -> pl.DataFrame:
    total = float(conversions.sum())
    share = conversions / total if total > 0 else np.zeros_like(conversions)
    return pl.DataFrame(
        {
            "channel": channels,
            "model": [model] * len(channels),
            "conversions": conversions.astype(float),
            "revenue": revenue.astype(float),
            "share": share.astype(float),
        },
        schema=OUTPUT_SCHEMA,
    )


def _point(
    prep: _Prepared, model: str, half_life_days: float, weights, markov_order: int
) -> tuple[np.ndarray, np.ndarray]:
    k = len(prep.channels)
    if model in HEURISTIC_MODELS:
        cr = _credits(prep, model, half_life_days, weights)
        agg = cr.group_by("cidx").agg(
            conversions=pl.col("credit").sum(), revenue=(pl.col("credit") * pl.col("revenue")).sum()
        )
        conv, rev = np.zeros(k), np.zeros(k)
        idx = agg["cidx"].to_numpy()
        conv[idx] = agg["conversions"].to_numpy()
        rev[idx] = agg["revenue"].to_numpy()
        return conv, rev
    if model == "shapley":
        players, onehot, revenue = _shapley_exact_matrix(prep)
        exact = np.vstack([np.asarray(onehot.sum(axis=0)).ravel(), onehot.T @ revenue])
        phi = shapley_values(exact)
        conv, rev = np.zeros(k), np.zeros(k)
        conv[players], rev[players] = phi[0], phi[1]
        return conv, rev
    # markov
    paths = _markov_paths(prep, markov_order)
    _, effects = _removal_effects(paths, np.asarray(paths.per_journey.sum(axis=0)).ravel(), k)
    conv_j = prep.journeys["converted"].to_numpy()
    total_conv = float(conv_j.sum())
    total_rev = float(prep.journeys["revenue"].to_numpy()[conv_j].sum())
    return _normalise(effects, total_conv, total_rev)


def _normalise(effects: np.ndarray, total_conv: float, total_rev: float) -> tuple[np.ndarray, np.ndarray]:
    s = effects.sum()
    if s <= 0:
        return np.zeros_like(effects), np.zeros_like(effects)
    return effects / s * total_conv, effects / s * total_rev


# --------------------------------------------------------------------------------------------
# public API


def attribute(
    touches: pl.DataFrame,
    journeys: pl.DataFrame,
    model: Model,
    *,
    half_life_days: float = 7.0,
    position_weights: Sequence[float] = (0.4, 0.2, 0.4),
    markov_order: int = 1,
) -> pl.DataFrame:
    """Attributed conversions and revenue per channel under one model.

    See the module docstring for the conventions of each model. Returns one row per channel (every
    channel seen in the touches of known journeys, sorted by name) with ``channel``, ``model``,
    ``conversions`` (attributed, float), ``revenue`` (attributed) and ``share`` (of all attributed
    conversions). ``conversions`` sum to the number of converting journeys with at least one touch.
    """
    _check_model(model)
    weights = _check_options(half_life_days, position_weights)
    prep = _prepare(touches, journeys)
    conv, rev = _point(prep, model, half_life_days, weights, markov_order)
    return _frame(prep.channels, model, conv, rev)


def attribute_all(
    touches: pl.DataFrame,
    journeys: pl.DataFrame,
    models: Sequence[Model] = MODELS,
    *,
    half_life_days: float = 7.0,
    position_weights: Sequence[float] = (0.4, 0.2, 0.4),
    markov_order: int = 1,
) -> pl.DataFrame:
    """:func:`attribute` for several models (default: all), stacked in long format."""
    for m in models:
        _check_model(m)
    weights = _check_options(half_life_days, position_weights)
    prep = _prepare(touches, journeys)
    frames = [_frame(prep.channels, m, *_point(prep, m, half_life_days, weights, markov_order)) for m in models]
    return pl.concat(frames) if frames else pl.DataFrame(schema=OUTPUT_SCHEMA)


def removal_effects(touches: pl.DataFrame, journeys: pl.DataFrame, *, markov_order: int = 1) -> pl.DataFrame:
    """Markov removal effect per channel (``channel``, ``removal_effect`` in [0, 1]) and the base
    P(conversion from path_start) as ``p_conversion`` (same on every row)."""
    prep = _prepare(touches, journeys)
    paths = _markov_paths(prep, markov_order)
    base, effects = _removal_effects(paths, np.asarray(paths.per_journey.sum(axis=0)).ravel(), len(prep.channels))
    return pl.DataFrame(
        {"channel": prep.channels, "removal_effect": effects, "p_conversion": [base] * len(prep.channels)},
        schema={"channel": pl.String, "removal_effect": pl.Float64, "p_conversion": pl.Float64},
    )


def _resample_weights(rng: np.random.Generator, n: int, b: int) -> np.ndarray:
    """``b`` bootstrap replicates of ``n`` journeys as multiplicity counts (b x n)."""
    if n == 0:
        return np.zeros((b, 0))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(float)


def bootstrap_ci(
    touches: pl.DataFrame,
    journeys: pl.DataFrame,
    model: Model,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
    *,
    half_life_days: float = 7.0,
    position_weights: Sequence[float] = (0.4, 0.2, 0.4),
    markov_order: int = 1,
) -> pl.DataFrame:
    """Percentile bootstrap intervals per channel, resampling journeys with replacement.

    Every journey with at least one touch (converting or not) is a resampling unit; a replicate is a
    vector of multiplicities drawn from Multinomial(n, 1/n), so the point estimate's code path is
    reused with weights. Heuristic models and Shapley are linear in those weights and are computed for
    all replicates at once (sparse matrix products; Shapley as a batched zeta transform); Markov
    solves its chain once per replicate. Returns the :func:`attribute` columns (point estimates) plus
    ``conversions_lower/upper``, ``revenue_lower/upper``, ``share_lower/upper`` and ``level``.
    Deterministic for a given ``seed``.
    """
    _check_model(model)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    weights = _check_options(half_life_days, position_weights)
    prep = _prepare(touches, journeys)
    point = _frame(prep.channels, model, *_point(prep, model, half_life_days, weights, markov_order))
    k, n_j = len(prep.channels), prep.journeys.height
    rng = np.random.default_rng(seed)
    conv_b, rev_b = np.zeros((n_boot, k)), np.zeros((n_boot, k))

    if model in HEURISTIC_MODELS:
        cr = _credits(prep, model, half_life_days, weights)
        jj, cc = cr["jidx"].to_numpy(), cr["cidx"].to_numpy()
        credit, revenue = cr["credit"].to_numpy(), cr["revenue"].to_numpy()
        C = sp.csr_matrix((credit, (jj, cc)), shape=(n_j, k))
        R = sp.csr_matrix((credit * revenue, (jj, cc)), shape=(n_j, k))
        chunk = max(1, _BOOT_CELLS // max(n_j, 1))
        for lo in range(0, n_boot, chunk):
            W = _resample_weights(rng, n_j, min(chunk, n_boot - lo))
            conv_b[lo : lo + W.shape[0]] = (C.T @ W.T).T
            rev_b[lo : lo + W.shape[0]] = (R.T @ W.T).T
    elif model == "shapley":
        players, onehot, revenue = _shapley_exact_matrix(prep)
        onehot_rev = sp.diags(revenue) @ onehot
        chunk = max(1, min(_BOOT_CELLS // max(n_j, 1), (1 << 22) >> players.size))
        for lo in range(0, n_boot, chunk):
            W = _resample_weights(rng, n_j, min(chunk, n_boot - lo))
            b = W.shape[0]
            phi = shapley_values(np.stack([(onehot.T @ W.T).T, (onehot_rev.T @ W.T).T]))
            conv_b[lo : lo + b][:, players] = phi[0]
            rev_b[lo : lo + b][:, players] = phi[1]
    else:
        paths = _markov_paths(prep, markov_order)
        conv_j = prep.journeys["converted"].to_numpy().astype(float)
        rev_j = prep.journeys["revenue"].to_numpy() * conv_j
        E = paths.per_journey.T.tocsr()
        chunk = max(1, _BOOT_CELLS // max(n_j, 1))
        for lo in range(0, n_boot, chunk):
            W = _resample_weights(rng, n_j, min(chunk, n_boot - lo))
            counts = (E @ W.T).T
            for r in range(W.shape[0]):
                _, eff = _removal_effects(paths, counts[r], k)
                conv_b[lo + r], rev_b[lo + r] = _normalise(eff, float(W[r] @ conv_j), float(W[r] @ rev_j))

    tot = conv_b.sum(axis=1, keepdims=True)
    share_b = np.divide(conv_b, tot, out=np.zeros_like(conv_b), where=tot > 0)
    q = [(1 - level) / 2, 1 - (1 - level) / 2]
    bounds = {}
    for name, arr in (("conversions", conv_b), ("revenue", rev_b), ("share", share_b)):
        lo_hi = np.quantile(arr, q, axis=0)
        bounds[f"{name}_lower"], bounds[f"{name}_upper"] = lo_hi[0], lo_hi[1]
    return pl.concat(
        [point, pl.DataFrame(bounds).with_columns(level=pl.lit(level, dtype=pl.Float64))], how="horizontal"
    ).select(
        "channel",
        "model",
        "conversions",
        "conversions_lower",
        "conversions_upper",
        "revenue",
        "revenue_lower",
        "revenue_upper",
        "share",
        "share_lower",
        "share_upper",
        "level",
    )
