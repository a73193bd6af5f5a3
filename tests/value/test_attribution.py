"""Attribution models: hand-computed examples, properties, bootstrap, and a peer dataset check."""

from __future__ import annotations

import itertools
import math
from datetime import datetime, timedelta
from fractions import Fraction as F
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.value import attribution as at

T0 = datetime(2024, 3, 1, 12, 0)
DAY = timedelta(days=1)
MTA_CSV = Path("/work/shared/datasets/mta-attribution-subset/attribution_data.csv")


def make_journeys(
    spec: dict[str, tuple[list[tuple[str, datetime]], float | None, datetime | None]],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``{journey_id: ([(channel, ts), ...], revenue or None if not converted, conversion_ts)}``."""
    touches = [(jid, ts, ch) for jid, (tps, _, _) in spec.items() for ch, ts in tps]
    t = pl.DataFrame(
        {"journey_id": [r[0] for r in touches], "ts": [r[1] for r in touches], "channel": [r[2] for r in touches]},
        schema={"journey_id": pl.String, "ts": pl.Datetime("us"), "channel": pl.String},
    )
    j = pl.DataFrame(
        {
            "journey_id": list(spec),
            "converted": [rev is not None for _, rev, _ in spec.values()],
            "revenue": [rev or 0.0 for _, rev, _ in spec.values()],
            "conversion_ts": [cts for _, _, cts in spec.values()],
        },
        schema={
            "journey_id": pl.String,
            "converted": pl.Boolean,
            "revenue": pl.Float64,
            "conversion_ts": pl.Datetime("us"),
        },
    )
    return t, j


def by_channel(frame: pl.DataFrame, column: str = "conversions") -> dict[str, float]:
    return dict(frame.select("channel", column).iter_rows())


def approx_dict(d: dict[str, F | float]) -> dict[str, object]:
    return {k: pytest.approx(float(v), rel=1e-12, abs=1e-12) for k, v in d.items()}


# --------------------------------------------------------------------------------------------
# heuristic models on a tiny input

# j1_three_touches     A(day 0) B(day 1) C(day 2), converts day 3, revenue 100
# j2_single_touch      B(day 0), converts day 1, revenue 50
# j3_no_conversion     A, C: never credited
# j4_two_touches       C(day 0) A(day 7), converts day 7, revenue 30
# j5_converted_no_touch  converts with no touch: not attributable (revenue 999 unattributed)
# ghost (touch only)   D: journey unknown to `journeys`, ignored
TINY, TINY_J = make_journeys(
    {
        "j1_three_touches": ([("A", T0), ("B", T0 + DAY), ("C", T0 + 2 * DAY)], 100.0, T0 + 3 * DAY),
        "j2_single_touch": ([("B", T0)], 50.0, T0 + DAY),
        "j3_no_conversion": ([("A", T0), ("C", T0 + DAY)], None, None),
        "j4_two_touches": ([("C", T0), ("A", T0 + 7 * DAY)], 30.0, T0 + 7 * DAY),
        "j5_converted_no_touch": ([], 999.0, T0),
    }
)
TINY = pl.concat(
    [TINY, pl.DataFrame({"journey_id": ["ghost"], "ts": [T0], "channel": ["D"]}, schema=TINY.schema)]
).sample(fraction=1.0, shuffle=True, seed=3)  # input order must not matter

EXPECTED_TINY = {
    # first: j1 -> A, j2 -> B, j4 -> C
    "first": ({"A": 1, "B": 1, "C": 1}, {"A": 100, "B": 50, "C": 30}),
    # last: j1 -> C, j2 -> B, j4 -> A
    "last": ({"A": 1, "B": 1, "C": 1}, {"A": 30, "B": 50, "C": 100}),
    # linear: j1 1/3 each; j2 B 1; j4 C 1/2, A 1/2
    "linear": (
        {"A": F(1, 3) + F(1, 2), "B": F(1, 3) + 1, "C": F(1, 3) + F(1, 2)},
        {"A": F(100, 3) + 15, "B": F(100, 3) + 50, "C": F(100, 3) + 15},
    ),
    # position (0.4, 0.2, 0.4): j1 A .4 B .2 C .4; j2 B 1; j4 (two touches) 50/50
    "position": ({"A": 0.9, "B": 1.2, "C": 0.9}, {"A": 55, "B": 70, "C": 55}),
}


@pytest.mark.parametrize("model", list(EXPECTED_TINY))
def test_heuristics_tiny_exact(model):
    res = at.attribute(TINY, TINY_J, model)
    conv, rev = EXPECTED_TINY[model]
    assert res["channel"].to_list() == ["A", "B", "C"]  # D belongs to an unknown journey
    assert res["model"].unique().to_list() == [model]
    assert by_channel(res) == approx_dict(conv)
    assert by_channel(res, "revenue") == approx_dict(rev)
    assert res["conversions"].sum() == pytest.approx(3)  # j5 has no touch
    assert by_channel(res, "share") == approx_dict({k: F(v) / 3 for k, v in conv.items()})


def test_time_decay_exact():
    # half-life 1 day. j1: ages 3, 2, 1 days -> weights 1/8, 1/4, 1/2 -> A 1/7, B 2/7, C 4/7
    # j2: B 1.  j4: C age 7 -> 1/128, A age 0 -> 1 -> C 1/129, A 128/129
    res = at.attribute(TINY, TINY_J, "time_decay", half_life_days=1.0)
    assert by_channel(res) == approx_dict({"A": F(1, 7) + F(128, 129), "B": F(2, 7) + 1, "C": F(4, 7) + F(1, 129)})
    assert by_channel(res, "revenue") == approx_dict(
        {"A": F(100, 7) + F(30 * 128, 129), "B": F(200, 7) + 50, "C": F(400, 7) + F(30, 129)}
    )
    # default half-life 7: j4 C 2^-1 vs A 1 -> C 1/3, A 2/3
    j4 = TINY.filter(pl.col("journey_id") == "j4_two_touches")
    assert by_channel(at.attribute(j4, TINY_J, "time_decay")) == approx_dict({"A": F(2, 3), "C": F(1, 3)})


def test_time_decay_without_conversion_ts_uses_last_touch_and_survives_old_touches():
    t, j = make_journeys({"old": ([("A", T0 - 5000 * DAY), ("B", T0 - 4999 * DAY)], 10.0, None)})
    res = at.attribute(t, j, "time_decay", half_life_days=1.0)
    # ages from the last touch: A 1 day, B 0 -> 1/2 : 1 (no underflow despite 5000 half-lives)
    assert by_channel(res) == approx_dict({"A": F(1, 3), "B": F(2, 3)})


def test_repeated_channel_and_position_edge_cases():
    t, j = make_journeys(
        {
            "aab": ([("A", T0), ("A", T0 + DAY), ("B", T0 + 2 * DAY)], 1.0, T0 + 3 * DAY),
            "five": ([(c, T0 + i * DAY) for i, c in enumerate("CABBC")], 1.0, T0 + 9 * DAY),
            "one": ([("B", T0)], 1.0, T0 + DAY),
        }
    )
    # linear: aab A 2/3 B 1/3; five C 2/5 A 1/5 B 2/5; one B 1
    assert by_channel(at.attribute(t, j, "linear")) == approx_dict(
        {"A": F(2, 3) + F(1, 5), "B": F(1, 3) + F(2, 5) + 1, "C": F(2, 5)}
    )
    # position (0.4, 0.2, 0.4): aab A .4+.2 B .4; five C .4+.4, middle A,B,B .2/3 each; one B 1
    assert by_channel(at.attribute(t, j, "position")) == approx_dict(
        {"A": 0.6 + F(1, 15), "B": 0.4 + F(2, 15) + 1, "C": 0.8}
    )
    # asymmetric weights: two touches split first:last renormalised (0.3 : 0.5 -> 3/8 : 5/8)
    two, jj = make_journeys({"x": ([("A", T0), ("B", T0 + DAY)], 1.0, T0 + DAY)})
    res = at.attribute(two, jj, "position", position_weights=(0.3, 0.2, 0.5))
    assert by_channel(res) == approx_dict({"A": F(3, 8), "B": F(5, 8)})


def test_ties_keep_input_order():
    t = pl.DataFrame(
        {"journey_id": ["j", "j"], "ts": [T0, T0], "channel": ["Z", "A"]},
        schema={"journey_id": pl.String, "ts": pl.Datetime("us"), "channel": pl.String},
    )
    _, j = make_journeys({"j": ([], 1.0, T0)})
    assert by_channel(at.attribute(t, j, "first"))["Z"] == 1.0
    assert by_channel(at.attribute(t, j, "last"))["A"] == 1.0


# --------------------------------------------------------------------------------------------
# Markov

# paths: C1 > C2 > conv,  C1 > null,  C2 > C3 > conv,  C3 > null
#   start: C1 2/4, C2 1/4, C3 1/4;  C1: C2 1/2, null 1/2;  C2: conv 1/2, C3 1/2;  C3: conv 1/2, null 1/2
#   h(C3) = 1/2, h(C2) = 1/2 + 1/2 * 1/2 = 3/4, h(C1) = 1/2 * 3/4 = 3/8
#   P(conv) = h(start) = 1/2 * 3/8 + 1/4 * 3/4 + 1/4 * 1/2 = 1/2   (= 2 conversions / 4 paths)
#   remove C1: start->C1 to null: 1/4 * 3/4 + 1/4 * 1/2 = 5/16          RE = 1 - 5/8 = 3/8
#   remove C2: h(C1) = 0, start: 1/4 * 1/2 = 1/8                          RE = 1 - 1/4 = 3/4
#   remove C3: h(C2) = 1/2, h(C1) = 1/4, start: 1/8 + 1/8 = 1/4           RE = 1 - 1/2 = 1/2
#   sum RE = 13/8; 2 conversions -> C1 6/13, C2 12/13, C3 8/13; revenue 150 -> x 75
MARKOV_T, MARKOV_J = make_journeys(
    {
        "p1": ([("C1", T0), ("C2", T0 + DAY)], 100.0, T0 + 2 * DAY),
        "p2": ([("C1", T0)], None, None),
        "p3": ([("C2", T0), ("C3", T0 + DAY)], 50.0, T0 + 2 * DAY),
        "p4": ([("C3", T0)], None, None),
    }
)


def test_markov_removal_effects_exact():
    re = at.removal_effects(MARKOV_T, MARKOV_J)
    assert by_channel(re, "removal_effect") == approx_dict({"C1": F(3, 8), "C2": F(3, 4), "C3": F(1, 2)})
    assert re["p_conversion"][0] == pytest.approx(0.5)
    res = at.attribute(MARKOV_T, MARKOV_J, "markov")
    assert by_channel(res) == approx_dict({"C1": F(6, 13), "C2": F(12, 13), "C3": F(8, 13)})
    assert by_channel(res, "revenue") == approx_dict({"C1": F(450, 13), "C2": F(900, 13), "C3": F(600, 13)})
    assert by_channel(res, "share") == approx_dict({"C1": F(3, 13), "C2": F(6, 13), "C3": F(4, 13)})


def test_markov_second_order_exact():
    # states are (previous, current) pairs; every pair here has a single continuation:
    #   (_,C1): (C1,C2) 1/2, null 1/2; (C1,C2): conv; (_,C2): (C2,C3); (C2,C3): conv; (_,C3): null
    #   P(conv) = 1/2 * 1/2 + 1/4 * 1 + 1/4 * 0 = 1/2
    #   remove C1 ((_,C1) -> null): 1/4                      RE 1/2
    #   remove C2 ((C1,C2), (_,C2) -> null): 0               RE 1
    #   remove C3 ((C2,C3) -> null): 1/4                     RE 1/2      -> C1 1/2, C2 1, C3 1/2
    re = at.removal_effects(MARKOV_T, MARKOV_J, markov_order=2)
    assert by_channel(re, "removal_effect") == approx_dict({"C1": F(1, 2), "C2": 1, "C3": F(1, 2)})
    res = at.attribute(MARKOV_T, MARKOV_J, "markov", markov_order=2)
    assert by_channel(res) == approx_dict({"C1": F(1, 2), "C2": 1, "C3": F(1, 2)})


def test_markov_self_loops_do_not_change_first_order_result():
    doubled = pl.concat([MARKOV_T, MARKOV_T.with_columns(pl.col("ts") + timedelta(seconds=1))])
    res = at.attribute(doubled, MARKOV_J, "markov")
    assert by_channel(res) == approx_dict({"C1": F(6, 13), "C2": F(12, 13), "C3": F(8, 13)})


def test_markov_without_conversions_is_zero():
    t, j = make_journeys({"a": ([("A", T0)], None, None), "b": ([("B", T0)], None, None)})
    res = at.attribute(t, j, "markov")
    assert res["conversions"].to_list() == [0.0, 0.0] and res["share"].to_list() == [0.0, 0.0]


# --------------------------------------------------------------------------------------------
# Shapley

# converting channel sets: {A} x2, {B}, {A,B}, {A,B,C};  plus a non-converting {C}
#   v(A)=2 v(B)=1 v(C)=0 v(AB)=4 v(AC)=2 v(BC)=1 v(ABC)=5
#   weights |S|=0: 1/3, |S|=1: 1/6, |S|=2: 1/3
#   phi_A = 1/3*2 + 1/6*(4-1) + 1/6*(2-0) + 1/3*(5-1) = 17/6
#   phi_B = 1/3*1 + 1/6*(4-2) + 1/6*(1-0) + 1/3*(5-2) = 11/6
#   phi_C = 0 + 1/6*(2-2) + 1/6*(1-1) + 1/3*(5-4) = 1/3          sum = 5 = v(ABC)
SHAP_T, SHAP_J = make_journeys(
    {
        "a1": ([("A", T0)], 10.0, T0 + DAY),
        "a2": ([("A", T0), ("A", T0 + DAY)], 10.0, T0 + DAY),
        "b": ([("B", T0)], 10.0, T0 + DAY),
        "ab": ([("B", T0), ("A", T0 + DAY)], 20.0, T0 + DAY),
        "abc": ([("C", T0), ("A", T0 + DAY), ("B", T0 + 2 * DAY)], 30.0, T0 + 3 * DAY),
        "c_no": ([("C", T0)], None, None),
    }
)


def test_shapley_three_channels_by_hand():
    res = at.attribute(SHAP_T, SHAP_J, "shapley")
    assert by_channel(res) == approx_dict({"A": F(17, 6), "B": F(11, 6), "C": F(1, 3)})
    # revenue game: v(A)=20 v(B)=10 v(AB)=50 v(AC)=20 v(BC)=10 v(ABC)=80
    #   phi_A = 20/3 + (50-10)/6 + 20/6 + (80-10)/3 = 40;  phi_B = 10/3 + 30/6 + 10/6 + 60/3 = 30;  phi_C = 10
    assert by_channel(res, "revenue") == approx_dict({"A": 40, "B": 30, "C": 10})


def test_shapley_two_channels_by_hand():
    # {A}: 3 conversions, {A,B}: 1  ->  v(A)=3 v(B)=0 v(AB)=4: phi_A = (3 + 4)/2 = 3.5, phi_B = (0 + 1)/2
    t, j = make_journeys(
        {
            **{f"a{i}": ([("A", T0)], 1.0, T0) for i in range(3)},
            "ab": ([("A", T0), ("B", T0 + DAY)], 1.0, T0 + DAY),
        }
    )
    assert by_channel(at.attribute(t, j, "shapley")) == approx_dict({"A": 3.5, "B": 0.5})


def brute_force_shapley(v: dict[frozenset, float], players: list[int]) -> dict[int, float]:
    phi = dict.fromkeys(players, 0.0)
    perms = list(itertools.permutations(players))
    for perm in perms:
        seen: frozenset = frozenset()
        for p in perm:
            phi[p] += v[seen | {p}] - v[seen]
            seen = seen | {p}
    return {p: x / len(perms) for p, x in phi.items()}


def test_shapley_values_glove_game_and_random_games():
    # glove game: player 0 holds a left glove, 1 and 2 right gloves -> (2/3, 1/6, 1/6).
    # `exact` is the Moebius transform: m({0,1}) = m({0,2}) = 1, m({0,1,2}) = -1
    exact = np.zeros(8)
    exact[0b011], exact[0b101], exact[0b111] = 1, 1, -1
    np.testing.assert_allclose(at.shapley_values(exact), [2 / 3, 1 / 6, 1 / 6], atol=1e-15)
    rng = np.random.default_rng(1)
    for m in (1, 2, 4, 5):
        exact = rng.normal(size=(3, 1 << m))
        exact[:, 0] = 0.0
        got = at.shapley_values(exact)
        for b in range(3):
            v = {
                frozenset(i for i in range(m) if s >> i & 1): sum(exact[b, t] for t in range(1 << m) if t & ~s == 0)
                for s in range(1 << m)
            }
            want = brute_force_shapley(v, list(range(m)))
            np.testing.assert_allclose(got[b], [want[i] for i in range(m)], atol=1e-12)


def test_shapley_rejects_more_than_20_channels():
    channels = [f"ch{i:02d}" for i in range(21)]
    t, j = make_journeys({c: ([(c, T0)], 1.0, T0) for c in channels})
    with pytest.raises(ValueError, match="at most 20 channels"):
        at.attribute(t, j, "shapley")
    # channels seen only in non-converting journeys are not players (dummy players get 0)
    t2, j2 = make_journeys({**{c: ([(c, T0)], None, None) for c in channels}, "conv": ([("ch00", T0)], 1.0, T0)})
    assert at.attribute(t2, j2, "shapley")["conversions"].sum() == pytest.approx(1)


# --------------------------------------------------------------------------------------------
# API behaviour and properties


def test_attribute_all_long_format_and_errors():
    res = at.attribute_all(TINY, TINY_J)
    assert res.columns == ["channel", "model", "conversions", "revenue", "share"]
    assert res.height == 3 * len(at.MODELS)
    assert res.group_by("model").agg(pl.col("conversions").sum())["conversions"].to_list() == pytest.approx(
        [3.0] * len(at.MODELS)
    )
    with pytest.raises(ValueError, match="did you mean 'linear'"):
        at.attribute(TINY, TINY_J, "lineer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="position_weights"):
        at.attribute(TINY, TINY_J, "position", position_weights=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="half_life_days"):
        at.attribute(TINY, TINY_J, "time_decay", half_life_days=0)
    with pytest.raises(ValueError, match="null channel"):
        at.attribute(TINY.with_columns(pl.lit(None, dtype=pl.String).alias("channel")), TINY_J, "first")
    with pytest.raises(ValueError, match="missing column"):
        at.attribute(TINY.drop("ts"), TINY_J, "first")


journey_strategy = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from("ABCDE"), st.integers(0, 30)), min_size=0, max_size=6),
        st.booleans(),
        st.floats(0, 500, allow_nan=False),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(spec=journey_strategy)
def test_properties_sum_to_total_and_shares_are_fractions(spec):
    t, j = make_journeys(
        {
            f"j{i}": ([(c, T0 + d * DAY) for c, d in tps], rev if conv else None, T0 + 31 * DAY if conv else None)
            for i, (tps, conv, rev) in enumerate(spec)
        }
    )
    with_touch = {f"j{i}" for i, (tps, _, _) in enumerate(spec) if tps}
    credited = [(rev) for i, (tps, conv, rev) in enumerate(spec) if conv and f"j{i}" in with_touch]
    res = at.attribute_all(t, j, markov_order=1)
    for model in at.MODELS:
        r = res.filter(pl.col("model") == model)
        assert r["conversions"].sum() == pytest.approx(len(credited), abs=1e-9), model
        assert r["revenue"].sum() == pytest.approx(sum(credited), abs=1e-6), model
        assert r["share"].is_between(-1e-12, 1 + 1e-12).all(), model
        assert (r["conversions"] >= -1e-12).all(), model
        if credited:
            assert r["share"].sum() == pytest.approx(1.0), model
    # Shapley with this characteristic function = even split over each journey's distinct channels
    shap = by_channel(res.filter(pl.col("model") == "shapley"))
    expected: dict[str, float] = dict.fromkeys(shap, 0.0)
    for tps, conv, _ in spec:
        if conv and tps:
            distinct = {c for c, _ in tps}
            for c in distinct:
                expected[c] += 1 / len(distinct)
    assert shap == approx_dict(expected)


def resampled_attribution(t, j, model, n_boot, seed, **kw):
    """Naive bootstrap: materialise each replicate (journeys repeated by their multiplicity)."""
    ids = sorted(t.join(j, on="journey_id")["journey_id"].unique().to_list())  # journeys with touches
    w = np.random.default_rng(seed).multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=n_boot)
    all_channels = t.join(j, on="journey_id").select("channel").unique()
    out = []
    for row in w:
        reps = pl.DataFrame({"journey_id": ids, "k": row}).filter(pl.col("k") > 0)
        reps = reps.with_columns(copy=pl.int_ranges(0, pl.col("k"))).explode("copy")
        key = pl.col("journey_id") + "#" + pl.col("copy").cast(pl.String)
        tt = t.join(reps, on="journey_id").with_columns(journey_id=key).drop("k", "copy")
        jj = j.join(reps, on="journey_id").with_columns(journey_id=key).drop("k", "copy")
        res = at.attribute(tt, jj, model, **kw)
        # a replicate may miss a channel entirely: it then has 0 credit
        out.append(all_channels.join(res, on="channel", how="left").fill_null(0.0).sort("channel"))
    return out


@pytest.mark.parametrize("model", ["linear", "first", "time_decay", "shapley", "markov"])
def test_bootstrap_matches_naive_resampling(model):
    t = pl.concat([SHAP_T, MARKOV_T, TINY.filter(pl.col("channel") != "D")])
    j = pl.concat([SHAP_J, MARKOV_J, TINY_J])
    ci = at.bootstrap_ci(t, j, model, n_boot=30, seed=7, level=0.8)
    reps = resampled_attribution(t, j, model, 30, 7)
    point = at.attribute(t, j, model)
    assert ci["channel"].to_list() == point["channel"].to_list()
    assert ci["conversions"].to_list() == point["conversions"].to_list()
    for col in ("conversions", "revenue", "share"):
        mat = np.array([r[col].to_numpy() for r in reps])
        lo, hi = np.quantile(mat, [0.1, 0.9], axis=0)
        np.testing.assert_allclose(ci[f"{col}_lower"].to_numpy(), lo, atol=1e-9)
        np.testing.assert_allclose(ci[f"{col}_upper"].to_numpy(), hi, atol=1e-9)
    assert (ci["conversions_lower"] <= ci["conversions_upper"]).all()
    again = at.bootstrap_ci(t, j, model, n_boot=30, seed=7, level=0.8)
    assert again.equals(ci)


# --------------------------------------------------------------------------------------------
# peer dataset: the multi-touch attribution subset, against an independent pandas computation


@pytest.fixture(scope="module")
def mta():
    if not MTA_CSV.exists():
        pytest.skip("MTA dataset not available")
    raw = pd.read_csv(MTA_CSV, dtype={"customer_id": str})
    raw["ts"] = pd.to_datetime(raw["time"], utc=True)
    raw = raw.sort_values(["customer_id", "ts"], kind="stable").reset_index(drop=True)
    # journey = the cookie's touches ordered by time up to and including its first conversion
    # (conversion rows carry a channel and are touches); revenue = that conversion's value.
    conv = (
        raw[raw["conversion"] == 1]
        .groupby("customer_id", as_index=False)
        .first()[["customer_id", "ts", "conversion_value"]]
        .rename(columns={"ts": "conversion_ts", "conversion_value": "revenue"})
    )
    path = raw.merge(conv, on="customer_id", how="left")
    path = path[path["conversion_ts"].isna() | (path["ts"] <= path["conversion_ts"])].copy()
    journeys = raw[["customer_id"]].drop_duplicates().merge(conv, on="customer_id", how="left")
    journeys["converted"] = journeys["conversion_ts"].notna()
    journeys["revenue"] = journeys["revenue"].fillna(0.0)
    touches_pl = pl.from_pandas(path[["customer_id", "ts", "channel"]]).rename({"customer_id": "journey_id"})
    journeys_pl = pl.from_pandas(journeys[["customer_id", "converted", "revenue", "conversion_ts"]]).rename(
        {"customer_id": "journey_id"}
    )
    return path, journeys, touches_pl, journeys_pl


def pandas_heuristic(path: pd.DataFrame, model: str) -> pd.DataFrame:
    p = path[path["conversion_ts"].notna()].copy()
    g = p.groupby("customer_id", sort=False)
    pos = g.cumcount()
    n = g["channel"].transform("size")
    if model == "first":
        w = (pos == 0).astype(float)
    elif model == "last":
        w = (pos == n - 1).astype(float)
    elif model == "linear":
        w = 1.0 / n
    elif model == "position":
        w = np.where(
            n == 1, 1.0, np.where(n == 2, 0.5, np.where((pos == 0) | (pos == n - 1), 0.4, 0.2 / (n - 2).clip(lower=1)))
        )
    else:  # time_decay, half-life 7 days
        age_days = (p["conversion_ts"] - p["ts"]).dt.total_seconds() / 86400.0
        raw_w = np.power(2.0, -age_days / 7.0)
        w = raw_w / raw_w.groupby(p["customer_id"]).transform("sum")
    p["credit"] = np.asarray(w, dtype=float)
    p["credit_revenue"] = p["credit"] * p["revenue"]
    return p.groupby("channel")[["credit", "credit_revenue"]].sum()


@pytest.mark.parametrize("model", ["first", "last", "linear", "position", "time_decay"])
def test_mta_heuristics_equal_independent_pandas(mta, model):
    path, journeys, touches_pl, journeys_pl = mta
    expected = pandas_heuristic(path, model)
    got = at.attribute(touches_pl, journeys_pl, model)
    assert got["channel"].to_list() == sorted(path["channel"].unique())
    for row in got.iter_rows(named=True):
        assert row["conversions"] == pytest.approx(expected.loc[row["channel"], "credit"], rel=1e-9)
        assert row["revenue"] == pytest.approx(expected.loc[row["channel"], "credit_revenue"], rel=1e-9)
    assert got["conversions"].sum() == pytest.approx(1642)
    assert got["revenue"].sum() == pytest.approx(journeys.loc[journeys["converted"], "revenue"].sum())


def test_mta_markov_equals_independent_fundamental_matrix(mta):
    path, journeys, touches_pl, journeys_pl = mta
    # transitions with pandas: start -> c1 -> ... -> ck -> conversion | null
    p = path[["customer_id", "channel", "conversion_ts"]].copy()
    p["prev"] = p.groupby("customer_id")["channel"].shift(1).fillna("(start)")
    last = p.groupby("customer_id").tail(1)
    ends = pd.DataFrame(
        {"prev": last["channel"], "channel": np.where(last["conversion_ts"].notna(), "(conv)", "(null)")}
    )
    moves = pd.concat([p[["prev", "channel"]], ends])
    counts = moves.value_counts()
    states = ["(start)", *sorted(path["channel"].unique()), "(conv)", "(null)"]
    ix = {s: i for i, s in enumerate(states)}
    M = np.zeros((len(states), len(states)))
    for (a, b), k in counts.items():
        M[ix[a], ix[b]] += k
    T = len(states) - 2  # transient: start + channels

    def p_conv(M):
        P = M[:T] / M[:T].sum(axis=1, keepdims=True)
        N = np.linalg.inv(np.eye(T) - P[:, :T])  # fundamental matrix
        return (N @ P[:, T:])[0, 0]

    base = p_conv(M)
    effects = {}
    for c in states[1:T]:
        Mr = M.copy()
        Mr[:, ix["(null)"]] += Mr[:, ix[c]]
        Mr[:, ix[c]] = 0
        effects[c] = 1 - p_conv(Mr) / base
    total = sum(effects.values())
    got = at.attribute(touches_pl, journeys_pl, "markov")
    assert by_channel(got) == approx_dict({c: e / total * 1642 for c, e in effects.items()})
    re = at.removal_effects(touches_pl, journeys_pl)
    assert by_channel(re, "removal_effect") == approx_dict(effects)
    assert re["p_conversion"][0] == pytest.approx(base, rel=1e-12)


def test_mta_shapley_equals_brute_force_permutations(mta):
    path, _, touches_pl, journeys_pl = mta
    conv = path[path["conversion_ts"].notna()]
    sets = conv.groupby("customer_id")["channel"].agg(frozenset).value_counts()
    channels = sorted(path["channel"].unique())
    v = {
        frozenset(s): float(sum(k for t, k in sets.items() if t <= frozenset(s)))
        for r in range(len(channels) + 1)
        for s in itertools.combinations(channels, r)
    }
    want = brute_force_shapley(v, channels)
    got = at.attribute(touches_pl, journeys_pl, "shapley")
    assert by_channel(got) == approx_dict(want)
    assert math.isclose(sum(want.values()), 1642)
