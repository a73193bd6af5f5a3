"""Absorbing Markov chains on the edge table: hand-solved chains, properties and what-if projections."""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.value import markov as mk


def edges_of(rows: list[tuple[str, str, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "from_node": [r[0] for r in rows],
            "to_node": [r[1] for r in rows],
            "n_transitions": [r[2] for r in rows],
        }
    )


# 10 journeys: home -> product -> cart -> purchase, with a loop product -> home.
#   path_start -> home 10
#   home    -> product 6, path_end 4          P(home):    product 3/5, end 2/5
#   product -> cart 3, home 3                 P(product): cart 1/2, home 1/2
#   cart    -> purchase 2, path_end 1         P(cart):    purchase 2/3, end 1/3
#   purchase -> path_end 2                    (dropped: the goal is absorbing)
# Propensity h = P(reach purchase):
#   h(cart) = 2/3
#   h(product) = 1/2 h(cart) + 1/2 h(home) = 1/3 + h(home)/2
#   h(home) = 3/5 h(product) = 1/5 + 3/10 h(home)  =>  h(home) = 2/7
#   h(product) = 1/3 + 1/7 = 10/21;  h(path_start) = h(home) = 2/7
# Expected further steps t (until purchase or path_end):
#   t(cart) = 1;  t(product) = 1 + t(cart)/2 + t(home)/2 = 3/2 + t(home)/2
#   t(home) = 1 + 3/5 t(product) = 19/10 + 3/10 t(home)  =>  t(home) = 19/7
#   t(product) = 3/2 + 19/14 = 20/7;  t(path_start) = 1 + 19/7 = 26/7
# Steps given the purchase happens (h-transform: p'(i->j) = p(i->j) h(j) / h(i)):
#   home -> product: 3/5 * (10/21) / (2/7) = 1;  product -> cart: 1/2 * (2/3) / (10/21) = 7/10,
#   product -> home 3/10;  cart -> purchase 1
#   s(cart) = 1;  s(home) = 1 + s(product);  s(product) = 1 + 7/10 + 3/10 (1 + s(product))
#   => s(product) = 20/7, s(home) = 27/7, s(path_start) = 34/7
FUNNEL = edges_of(
    [
        ("path_start", "home", 10),
        ("home", "product", 6),
        ("home", "path_end", 4),
        ("product", "cart", 3),
        ("product", "home", 3),
        ("cart", "purchase", 2),
        ("cart", "path_end", 1),
        ("purchase", "path_end", 2),
    ]
)


def approx(x: F | float) -> object:
    return pytest.approx(float(x), rel=1e-12, abs=1e-12)


def test_transition_matrix_hand_computed():
    states, P = mk.transition_matrix(FUNNEL)
    assert states == ["path_start", "cart", "home", "path_end", "product", "purchase"]
    expected = np.array(
        [
            # start cart  home  end   prod  purch
            [0, 0, 1, 0, 0, 0],
            [0, 0, 0, 1 / 3, 0, 2 / 3],
            [0, 0, 0, 2 / 5, 3 / 5, 0],
            [0, 0, 0, 1, 0, 0],  # no out-edges: absorbing
            [0, 1 / 2, 1 / 2, 0, 0, 0],
            [0, 0, 0, 1, 0, 0],  # purchase -> path_end as observed (not absorbing here)
        ]
    )
    np.testing.assert_allclose(P, expected, atol=1e-15)
    _, P_abs = mk.transition_matrix(FUNNEL, absorbing=["purchase"])
    assert P_abs[states.index("purchase"), states.index("purchase")] == 1.0


def test_absorption_hand_solved():
    res = mk.absorption(FUNNEL, goal="purchase", end="path_end")
    by = {r["node"]: r for r in res.iter_rows(named=True)}
    assert res["node"].to_list()[0] == "path_start"
    assert by["path_start"]["p_goal"] == approx(F(2, 7))
    assert by["home"]["p_goal"] == approx(F(2, 7))
    assert by["product"]["p_goal"] == approx(F(10, 21))
    assert by["cart"]["p_goal"] == approx(F(2, 3))
    assert by["purchase"]["p_goal"] == 1.0
    assert by["path_end"]["p_goal"] == 0.0
    assert by["path_start"]["expected_steps"] == approx(F(26, 7))
    assert by["home"]["expected_steps"] == approx(F(19, 7))
    assert by["product"]["expected_steps"] == approx(F(20, 7))
    assert by["cart"]["expected_steps"] == approx(1)
    assert by["purchase"]["expected_steps"] == 0.0
    assert by["path_start"]["expected_steps_given_goal"] == approx(F(34, 7))
    assert by["home"]["expected_steps_given_goal"] == approx(F(27, 7))
    assert by["product"]["expected_steps_given_goal"] == approx(F(20, 7))
    assert by["cart"]["expected_steps_given_goal"] == approx(1)
    assert by["path_end"]["expected_steps_given_goal"] is None
    assert by["purchase"]["is_absorbing"] and by["path_end"]["is_absorbing"]
    assert mk.goal_probability(FUNNEL) == approx(F(2, 7))


def test_absorption_matches_simple_two_step_example_and_sinks():
    # a sink other than goal/end is an absorbing non-conversion
    edges = edges_of([("path_start", "a", 10), ("a", "purchase", 3), ("a", "path_end", 5), ("a", "lost", 2)])
    res = mk.absorption(edges)
    by = {r["node"]: r for r in res.iter_rows(named=True)}
    assert by["path_start"]["p_goal"] == approx(0.3)
    assert by["path_start"]["expected_steps"] == approx(2)
    assert by["lost"]["is_absorbing"] and by["lost"]["p_goal"] == 0.0


def test_duplicate_edge_rows_are_summed():
    doubled = pl.concat([FUNNEL, FUNNEL.with_columns(pl.col("n_transitions") * 0)])
    split = pl.concat([FUNNEL.with_columns(pl.col("n_transitions") / 2)] * 2)
    for e in (doubled, split):
        assert mk.goal_probability(e) == approx(F(2, 7))


def test_unknown_goal_is_an_error_with_a_suggestion():
    with pytest.raises(ValueError, match="did you mean 'purchase'"):
        mk.absorption(FUNNEL, goal="purchse")


def test_loop_that_never_absorbs_has_infinite_steps():
    edges = edges_of([("path_start", "a", 2), ("a", "purchase", 1), ("a", "b", 1), ("b", "c", 1), ("c", "b", 1)])
    res = {r["node"]: r for r in mk.absorption(edges).iter_rows(named=True)}
    assert res["a"]["p_goal"] == approx(0.5)
    assert res["b"]["p_goal"] == 0.0 and res["b"]["expected_steps"] == float("inf")
    assert res["a"]["expected_steps"] == float("inf")
    assert res["a"]["expected_steps_given_goal"] == approx(1)


# --------------------------------------------------------------------------------------------
# what-if


def test_whatif_change_zero_equals_current():
    w = mk.whatif(FUNNEL, change={("cart", "purchase"): 0.0, ("home", "product"): 0.0})
    assert w.p_projected == approx(w.p_current)
    assert w.p_current == approx(F(2, 7))
    assert w.delta == approx(0)
    assert mk.whatif(FUNNEL).p_projected == w.p_current


def test_whatif_delta_change_hand_solved():
    # cart -> purchase 2/3 + 0.10 = 23/30, cart -> path_end rescaled to 7/30
    # h(home) = 3/5 (1/2 * 23/30 + 1/2 h(home))  =>  7/10 h(home) = 23/100  =>  h = 23/70
    w = mk.whatif(FUNNEL, change={("cart", "purchase"): +0.10}, avg_order_value=50.0)
    assert w.p_current == approx(F(2, 7))
    assert w.p_projected == approx(F(23, 70))
    assert w.n_journeys == 10  # out-count of path_start
    assert w.conversions_current == approx(F(20, 7))
    assert w.conversions_projected == approx(F(23, 7))
    assert w.revenue_projected == approx(F(23, 7) * 50)
    assert w.lift == approx(F(23, 70) / F(2, 7) - 1)
    cart = w.edges.filter(pl.col("from_node") == "cart")
    assert dict(cart.select("to_node", "p").iter_rows()) == {
        "path_end": approx(F(7, 30)),
        "purchase": approx(F(23, 30)),
    }
    frame = w.to_frame()
    assert frame.height == 1 and frame["p_projected"][0] == approx(F(23, 70))
    nodes = {r["node"]: r for r in w.nodes.iter_rows(named=True)}
    assert nodes["product"]["p_goal_current"] == approx(F(10, 21))


def test_whatif_set_mode_and_n_journeys():
    # cart -> purchase := 1: h(home) = 3/5 (1/2 + h/2)  =>  h = 3/7
    w = mk.whatif(FUNNEL, change={("cart", "purchase"): 1.0}, change_mode="set", n_journeys=700)
    assert w.p_projected == approx(F(3, 7))
    assert w.conversions_projected == approx(300)
    assert w.revenue_projected is None


def test_whatif_change_renormalises_other_out_edges_proportionally():
    # home: product 3/5 -> 3/5 - 1/10 = 1/2; path_end takes the rest 1/2
    w = mk.whatif(FUNNEL, change=[("home", "product", -0.1)])
    home = dict(w.edges.filter(pl.col("from_node") == "home").select("to_node", "p").iter_rows())
    assert home == {"product": approx(0.5), "path_end": approx(0.5)}
    # only out-edge reduced: freed mass drops off to path_end
    w2 = mk.whatif(FUNNEL, change={("path_start", "home"): -0.2})
    assert w2.p_projected == approx(F(4, 5) * F(2, 7))


def test_whatif_add_edge_hand_solved():
    # home -> cart 0.2 added; home's other edges scaled by 0.8: product 0.48, path_end 0.32
    # h(home) = 0.2 * 2/3 + 0.48 (1/3 + h/2) = 2/15 + 4/25 + 0.24 h  =>  0.76 h = 22/75  =>  h = 22/57
    w = mk.whatif(FUNNEL, add={("home", "cart"): 0.2})
    assert w.p_projected == approx(F(22, 57))
    for row in w.edges.group_by("from_node").agg(pl.col("p").sum()).iter_rows():
        assert row[1] == approx(1)


def test_whatif_remove_node_reroutes_inflow_to_path_end():
    # start -> a 1/2, b 1/2;  a: purchase 1/5, end 4/5;  b: a 2/5, purchase 2/5, end 1/5
    # now:    h(a) = 1/5, h(b) = 2/5 * 1/5 + 2/5 = 12/25, h(start) = (1/5 + 12/25)/2 = 17/50
    # remove a: start -> a and b -> a go to path_end: h(b) = 2/5, h(start) = 1/5
    edges = edges_of(
        [
            ("path_start", "a", 5),
            ("path_start", "b", 5),
            ("a", "purchase", 1),
            ("a", "path_end", 4),
            ("b", "a", 2),
            ("b", "purchase", 2),
            ("b", "path_end", 1),
        ]
    )
    w = mk.whatif(edges, remove="a")
    assert w.p_current == approx(F(17, 50))
    assert w.p_projected == approx(F(1, 5))
    assert "a" not in w.edges["from_node"].to_list() + w.edges["to_node"].to_list()
    b = dict(w.edges.filter(pl.col("from_node") == "b").select("to_node", "p").iter_rows())
    assert b == {"purchase": approx(0.4), "path_end": approx(0.6)}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"remove": "path_start"}, "cannot remove"),
        ({"remove": "purchase"}, "cannot remove"),
        ({"remove": "prodcut"}, "did you mean 'product'"),
        ({"change": {("cart", "purchase"): 0.5}}, "outside"),
        ({"change": {("purchase", "path_end"): -0.1}}, "absorbing"),
        ({"add": {("home", "product"): 0.1}}, "already exists"),
        ({"change_mode": "relative"}, "change_mode"),
        ({"change": {("cart", "purchase"): 0.9, ("cart", "path_end"): 0.9}, "change_mode": "set"}, "sum to"),
    ],
)
def test_whatif_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        mk.whatif(FUNNEL, **kwargs)


# --------------------------------------------------------------------------------------------
# properties


nodes = st.sampled_from(["path_start", "a", "b", "c", "d", "purchase", "path_end"])
edge_lists = st.lists(st.tuples(nodes, nodes, st.integers(1, 20)), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(rows=edge_lists)
def test_out_edge_probabilities_sum_to_one_and_propensities_are_probabilities(rows):
    edges = edges_of([("path_start", "a", 1), ("a", "purchase", 1), *rows])
    states, P = mk.transition_matrix(edges)
    assert states[0] == "path_start"
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert (P >= 0).all()
    res = mk.absorption(edges)
    assert res["p_goal"].is_between(0.0, 1.0).all()
    assert (res["expected_steps"] >= 0).all()
    # a change of 0 on any existing edge leaves P(conversion) unchanged
    a, b, _ = next(r for r in rows + [("a", "purchase", 1)] if r[0] not in ("purchase", "path_end"))
    w = mk.whatif(edges, change={(a, b): 0.0})
    assert w.p_projected == pytest.approx(w.p_current, abs=1e-9)
    assert w.p_current == pytest.approx(res.filter(pl.col("node") == "path_start")["p_goal"][0], abs=1e-12)


def test_sparse_solver_gives_the_same_answer(monkeypatch):
    monkeypatch.setattr(mk, "_DENSE_LIMIT", 0)
    res = {r["node"]: r for r in mk.absorption(FUNNEL).iter_rows(named=True)}
    assert res["path_start"]["p_goal"] == approx(F(2, 7))
    assert res["path_start"]["expected_steps"] == approx(F(26, 7))
    assert res["path_start"]["expected_steps_given_goal"] == approx(F(34, 7))
