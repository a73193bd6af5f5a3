"""Funnel invariants on random journeys (hypothesis), and the SQL against a brute-force oracle.

The oracle reads the journeys back from staging.stg_touchpoints (so ties, sessions and channel
steps are exactly what the SQL sees) and enumerates every path by hand in Python; it states the
semantics of every mode, window, per-step window, exclusion and counting rule independently of the
set-based SQL (which keeps one latest path per row instead of enumerating).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline import config
from pipeline.build import build
from pipeline.db import Database
from pipeline.metrics.funnel import FunnelSpec, funnel, funnel_spec, funnel_units
from tests.conftest import load_events, make_journeys

EVENTS = ("view_item", "add_to_cart", "begin_checkout", "purchase", "page_view", "live_chat_start", "view_cart")
# Every event once, so that every step below names a value present in the data.
CATALOG = {"u_catalog": [(name, 500 + i) for i, name in enumerate(EVENTS)]}
STEP_LISTS = (
    "view_item,add_to_cart,begin_checkout,purchase",
    "view_item,add_to_cart|view_cart,purchase",
    "product_page,cart,stage:Purchase",  # touchpoints and a stage
    "stage:Interest,cart,purchase",  # stage Interest also matches the synthetic channel step 'direct'
    "page_view,page_view,purchase",  # a repeated step
)
EXCLUSIONS = ((), ("live_chat_start",), ("live_chat_start@2-3",), ("stage:Consideration@1-2",))

journey_events = st.lists(
    st.tuples(st.sampled_from(EVENTS), st.integers(min_value=0, max_value=90)), min_size=1, max_size=8
)
journey_sets = st.dictionaries(
    st.sampled_from([f"u{i}" for i in range(8)]), journey_events, min_size=1, max_size=6
)


@st.composite
def requests(draw):
    steps = draw(st.sampled_from(STEP_LISTS))
    n = len(steps.split(","))
    mode = draw(st.sampled_from(("ordered", "strict", "unordered", "open", "reach")))
    scope = draw(st.sampled_from(("user", "session")))
    options: dict = {"mode": mode, "scope": scope}
    counts = ["users"] + (["sessions"] if scope == "session" else []) + (
        ["conversions"] if mode in ("ordered", "strict") else []
    )
    options["count"] = draw(st.sampled_from(counts))
    if mode != "reach":
        options["window"] = draw(st.sampled_from((None, "10m", "25m", "1h")))
        exclusions = draw(st.sampled_from(EXCLUSIONS))
        if mode == "unordered":
            exclusions = tuple(e for e in exclusions if "@" not in e)
        options["exclude"] = exclusions
    if mode not in ("reach", "unordered") and draw(st.booleans()):
        options["step_windows"] = draw(
            st.lists(st.sampled_from((None, "5m", "20m")), min_size=n - 1, max_size=n - 1)
        )
    return steps, options


def _fresh_db(spec: dict[str, list[tuple]], order_seed: int | None = None) -> Database:
    frame = make_journeys({**CATALOG, **spec})
    if order_seed is not None:
        frame = frame.sample(fraction=1.0, shuffle=True, seed=order_seed)
    db = Database(":memory:")
    load_events(db, frame)
    build(db, config.defaults())
    return db


# -- the oracle ----------------------------------------------------------------------------------


@dataclass
class Row:
    pos: int
    ts_us: int
    is_channel_step: bool
    values: dict[str, str | None]


def _matches(row: Row, refs) -> bool:
    return any(row.values[r.kind] == r.value for r in refs)


def _journeys(db: Database, scope: str) -> dict[str, tuple[str, list[Row]]]:
    key, pos = ("session_key", "session_step_index") if scope == "session" else ("user_key", "user_step_index")
    frame = db.query(
        f"select {key} as journey_key, user_key, {pos} as pos, epoch_us(ts) as ts_us, is_channel_step, "
        "event_name, touchpoint, stage from staging.stg_touchpoints order by journey_key, pos"
    )
    out: dict[str, tuple[str, list[Row]]] = {}
    for r in frame.iter_rows(named=True):
        row = Row(r["pos"], r["ts_us"], r["is_channel_step"],
                  {"event": r["event_name"], "touchpoint": r["touchpoint"], "stage": r["stage"]})
        out.setdefault(r["journey_key"], (r["user_key"], []))[1].append(row)
    return out


def _active(spec: FunnelSpec, step: int):
    return [e for e in spec.exclusions if e.from_step < step <= e.to_step]


def _can_follow(spec: FunnelSpec, rows: list[Row], first: int, last: int, i: int, step: int) -> bool:
    """Can row i be `step` after a path whose first row is `first` and previous row is `last`?"""
    r = rows[i]
    if spec.window_us is not None and r.ts_us - rows[first].ts_us > spec.window_us:
        return False
    gap = spec.step_windows_us[step - 2] if spec.step_windows_us else None
    if gap is not None and r.ts_us - rows[last].ts_us > gap:
        return False
    between = rows[last + 1:i]
    if any(_matches(b, e.step.refs) for b in between for e in _active(spec, step)):
        return False
    return not (spec.mode == "strict" and any(not b.is_channel_step for b in between))


def _paths(spec: FunnelSpec, rows: list[Row]) -> list[tuple[int, ...]]:
    """Every valid path (row indexes) of 1..n steps, by exhaustive search."""
    found: list[tuple[int, ...]] = []

    def extend(path: tuple[int, ...]) -> None:
        found.append(path)
        step = len(path) + 1
        if step > spec.n_steps:
            return
        for i in range(path[-1] + 1, len(rows)):
            if _matches(rows[i], spec.steps[step - 1].refs) and _can_follow(spec, rows, path[0], path[-1], i, step):
                extend((*path, i))

    for i, row in enumerate(rows):
        if _matches(row, spec.steps[0].refs):
            extend((i,))
    return found


def _closed(spec: FunnelSpec, rows: list[Row], count: str) -> list[dict]:
    n = spec.n_steps
    paths = _paths(spec, rows)
    cuts = sorted({rows[p[-1]].pos for p in paths if len(p) == n}) if count == "conversions" else []
    bounds = list(zip([0, *cuts], [*cuts, 10**9], strict=True))
    units = []
    for lo, hi in bounds:
        inside = [p for p in paths if rows[p[0]].pos > lo and rows[p[-1]].pos <= hi]
        if not inside:
            continue
        reached = max(len(p) for p in inside)
        step_pos = [min((rows[p[-1]].pos for p in inside if len(p) == k), default=None) for k in range(1, n + 1)]
        end = step_pos[reached - 1]
        ending = [p for p in inside if len(p) == reached and rows[p[-1]].pos == end]
        latest = tuple(max(p[k] for p in ending) for k in range(reached))
        assert latest in ending, "valid paths to a row are closed under element-wise max"
        ts = [rows[i].ts_us for i in latest]
        units.append({
            "attempt": lo,
            "reached": [k <= reached for k in range(1, n + 1)],
            "continued": [k <= reached for k in range(1, n + 1)],
            "from_first": [k <= reached for k in range(1, n + 1)],
            "seconds_from_previous": [None] + [
                (ts[k] - ts[k - 1]) / 1e6 if k < reached else None for k in range(1, n)
            ],
            "seconds_from_first": [None] + [(ts[k] - ts[0]) / 1e6 if k < reached else None for k in range(1, n)],
            "step_pos": step_pos,
        })
    return units


def _first_pos(spec: FunnelSpec, rows: list[Row]) -> list[int | None]:
    return [min((r.pos for r in rows if _matches(r, s.refs)), default=None) for s in spec.steps]


def _open_or_reach(spec: FunnelSpec, rows: list[Row]) -> list[dict]:
    n = spec.n_steps
    first_pos = _first_pos(spec, rows)
    did = [p is not None for p in first_pos]
    if not any(did):
        return []
    if spec.mode == "reach":
        return [{
            "attempt": 0, "reached": did,
            "continued": [did[0]] + [did[k - 1] and did[k] for k in range(1, n)],
            "from_first": [did[0] and did[k] for k in range(n)],
            "seconds_from_previous": [None] * n, "seconds_from_first": [None] * n, "step_pos": first_pos,
        }]
    closed = _closed(spec, rows, "users")
    closed_unit = closed[0] if closed else None
    continued, pair_seconds = [did[0]], [None]
    for step in range(2, n + 1):
        hit = None
        for i, r in enumerate(rows):
            if not _matches(r, spec.steps[step - 1].refs):
                continue
            before = [j for j in range(i) if _matches(rows[j], spec.steps[step - 2].refs)]
            if before and _can_follow(spec, rows, before[-1], before[-1], i, step):
                hit = (r.ts_us - rows[before[-1]].ts_us) / 1e6
                break
        continued.append(hit is not None)
        pair_seconds.append(hit)
    reached_closed = sum(closed_unit["reached"]) if closed_unit else 0
    return [{
        "attempt": 0, "reached": did, "continued": continued,
        "from_first": [k <= reached_closed for k in range(1, n + 1)],
        "seconds_from_previous": pair_seconds,
        "seconds_from_first": closed_unit["seconds_from_first"] if closed_unit else [None] * n,
        "step_pos": first_pos,
    }]


def _unordered(spec: FunnelSpec, rows: list[Row]) -> list[dict]:
    n = spec.n_steps
    excluded = [any(_matches(r, e.step.refs) for e in spec.exclusions) for r in rows]
    segment = [sum(excluded[: i + 1]) for i in range(len(rows))]
    steps_of = [{k for k in range(n) if _matches(r, spec.steps[k].refs)} for r in rows]

    def frame(start: int) -> list[int]:
        s = rows[start]
        return [
            i for i, r in enumerate(rows)
            if steps_of[i] and segment[i] == segment[start] and r.ts_us >= s.ts_us
            and (spec.window_us is None or r.ts_us <= s.ts_us + spec.window_us)
        ]

    starts = [i for i in range(len(rows)) if steps_of[i]]
    if not starts:
        return []
    best = max(starts, key=lambda i: (len(set().union(*(steps_of[j] for j in frame(i)))), -rows[i].pos))
    firsts = sorted(
        min((rows[i].ts_us, rows[i].pos) for i in frame(best) if k in steps_of[i])
        for k in set().union(*(steps_of[j] for j in frame(best)))
    )
    done = len(firsts)
    return [{
        "attempt": 0,
        "reached": [k <= done for k in range(1, n + 1)],
        "continued": [k <= done for k in range(1, n + 1)],
        "from_first": [k <= done for k in range(1, n + 1)],
        "seconds_from_previous": [None] + [
            (firsts[k][0] - firsts[k - 1][0]) / 1e6 if k < done else None for k in range(1, n)
        ],
        "seconds_from_first": [None] + [(firsts[k][0] - firsts[0][0]) / 1e6 if k < done else None for k in range(1, n)],
        "step_pos": [firsts[k][1] if k < done else None for k in range(n)],
    }]


def oracle_units(db: Database, spec: FunnelSpec) -> list[dict]:
    out = []
    for journey_key, (user_key, rows) in sorted(_journeys(db, spec.scope).items()):
        if spec.mode in ("ordered", "strict"):
            units = _closed(spec, rows, spec.count)
        elif spec.mode == "unordered":
            units = _unordered(spec, rows)
        else:
            units = _open_or_reach(spec, rows)
        out.extend({"journey_key": journey_key, "user_key": user_key, **u} for u in units)
    return sorted(out, key=lambda u: (u["journey_key"], u["attempt"]))


COMPARED = ("journey_key", "user_key", "attempt", "reached", "continued", "from_first",
            "seconds_from_previous", "seconds_from_first", "step_pos")


# -- properties ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journeys=journey_sets, request=requests())
def test_sql_matches_the_brute_force_oracle_and_funnel_invariants_hold(journeys, request):
    steps, options = request
    db = _fresh_db(journeys)
    try:
        spec = funnel_spec(db, steps, **options)
        got = funnel_units(db, spec).sort("journey_key", "attempt").select(COMPARED).to_dicts()
        assert got == [{k: u[k] for k in COMPARED} for u in oracle_units(db, spec)]

        result = funnel(db, steps, **options)
        rates = ("conversion_from_previous", "conversion_from_first")
        for rate in rates:
            values = result.drop_nulls(rate)
            assert values[rate].is_between(0, 1).all()
            assert (values[f"{rate}_low"] <= values[rate] + 1e-12).all()
            assert (values[rate] <= values[f"{rate}_high"] + 1e-12).all()
        counts = result["n_entered"].to_list()
        if spec.mode in ("ordered", "strict", "unordered"):
            assert counts == sorted(counts, reverse=True), "closed funnels never grow along the steps"
            assert result["n_dropped"].to_list()[:-1] == [a - b for a, b in zip(counts, counts[1:], strict=False)]
        if spec.mode == "reach" and spec.count == "users":
            assert counts == _direct_reach_counts(db, spec)
    finally:
        db.close()


def _direct_reach_counts(db: Database, spec: FunnelSpec) -> list[int]:
    rows = db.query("select user_key, event_name, touchpoint, stage from staging.stg_touchpoints")
    out = []
    for step in spec.steps:
        hit = pl.lit(False)
        for ref in step.refs:
            column = {"event": "event_name", "touchpoint": "touchpoint", "stage": "stage"}[ref.kind]
            hit = hit | (pl.col(column) == ref.value).fill_null(False)
        out.append(rows.filter(hit)["user_key"].n_unique())
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journeys=journey_sets, request=requests(), seed=st.integers(min_value=0, max_value=2**16))
def test_shuffled_input_order_gives_identical_output(journeys, request, seed):
    steps, options = request
    first, second = _fresh_db(journeys), _fresh_db(journeys, order_seed=seed)
    try:
        assert funnel(first, steps, **options).equals(funnel(second, steps, **options))
    finally:
        first.close()
        second.close()


def _random_journeys(seed: int, max_events: int) -> dict[str, list[tuple]]:
    """300 journeys of 1..max_events events within four hours (timestamps overlap, steps repeat)."""
    rng = random.Random(seed)
    return {
        f"u{j:03d}": [(rng.choice(EVENTS), rng.randrange(0, 240)) for _ in range(rng.randrange(1, max_events + 1))]
        for j in range(300)
    }


@pytest.mark.parametrize("mode", ["ordered", "strict", "open"])
def test_oracle_agrees_on_a_larger_random_set(mode):
    """One bigger draw (300 journeys, overlapping timestamps) per mode, with windows and exclusions."""
    db = _fresh_db(_random_journeys(20250106 + len(mode), max_events=11))
    try:
        spec = funnel_spec(
            db, "view_item,add_to_cart|view_cart,begin_checkout,purchase", mode=mode, window="2h",
            step_windows=["30m", None, "45m"], exclude=["live_chat_start@2-4"],
            count="conversions" if mode != "open" else "users",
        )
        got = funnel_units(db, spec).sort("journey_key", "attempt").select(COMPARED).to_dicts()
        assert got == [{k: u[k] for k in COMPARED} for u in oracle_units(db, spec)]
    finally:
        db.close()


# -- the simple ordered walk ---------------------------------------------------------------------
# An ordered funnel with no window, step window or exclusion that counts journeys takes a shorter
# path through funnel_units.sql (simple_rows ... simple_walk). It must give the units the general
# levels give and the oracle's.


@st.composite
def simple_requests(draw):
    scope = draw(st.sampled_from(("user", "session")))
    count = draw(st.sampled_from(["users"] + (["sessions"] if scope == "session" else [])))
    return draw(st.sampled_from(STEP_LISTS)), {"mode": "ordered", "scope": scope, "count": count}


def _units_both_ways(db: Database, spec: FunnelSpec, monkeypatch: pytest.MonkeyPatch) -> tuple[list, list]:
    assert spec.is_simple_ordered
    simple = funnel_units(db, spec).sort("journey_key", "attempt").to_dicts()
    with monkeypatch.context() as patched:
        patched.setattr(FunnelSpec, "is_simple_ordered", property(lambda self: False))
        general = funnel_units(db, spec).sort("journey_key", "attempt").to_dicts()
    return simple, general


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(journeys=journey_sets, request=simple_requests())
def test_simple_ordered_walk_gives_the_general_units_and_the_oracles(journeys, request, monkeypatch):
    steps, options = request
    db = _fresh_db(journeys)
    try:
        spec = funnel_spec(db, steps, **options)
        simple, general = _units_both_ways(db, spec, monkeypatch)
        assert simple == general
        assert [{k: u[k] for k in COMPARED} for u in simple] == [
            {k: u[k] for k in COMPARED} for u in oracle_units(db, spec)
        ]
    finally:
        db.close()


@pytest.mark.parametrize("scope", ["user", "session"])
def test_simple_ordered_walk_on_a_larger_random_set(scope, monkeypatch):
    """300 journeys with overlapping timestamps and repeated steps; a step with two alternatives."""
    db = _fresh_db(_random_journeys(20261122 + len(scope), max_events=13))
    try:
        for steps in ("view_item,add_to_cart|view_cart,begin_checkout,purchase", "page_view,page_view,purchase",
                      "stage:Interest,cart,purchase"):
            spec = funnel_spec(db, steps, mode="ordered", scope=scope)
            simple, general = _units_both_ways(db, spec, monkeypatch)
            assert len(simple) > 50, "the draw must give the walk real work"
            assert simple == general
            assert [{k: u[k] for k in COMPARED} for u in simple] == [
                {k: u[k] for k in COMPARED} for u in oracle_units(db, spec)
            ]
    finally:
        db.close()


def test_simple_ordered_is_only_the_unlimited_ordered_journey_count():
    db = _fresh_db({"u1": [("view_item", 0), ("add_to_cart", 5), ("purchase", 9)]})
    try:
        steps = "view_item,add_to_cart,purchase"
        assert funnel_spec(db, steps).is_simple_ordered
        assert funnel_spec(db, steps, scope="session", count="sessions").is_simple_ordered
        for options in ({"mode": "strict"}, {"mode": "open"}, {"window": "1h"}, {"step_windows": ["5m", None]},
                        {"exclude": ["live_chat_start"]}, {"count": "conversions"}):
            assert not funnel_spec(db, steps, **options).is_simple_ordered, options
    finally:
        db.close()
