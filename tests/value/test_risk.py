"""Revenue at risk, propensity and what-if on a tiny chain solved by hand.

Six users, one session each, all arriving from Paid Search (touchpoint paid_search, stage Awareness):

    u1, u2: product_page > cart > checkout > purchase (100 and 50)
    u3:     product_page > cart > checkout              (leaves at checkout)
    u4, u6: product_page > cart                         (leave at cart)
    u5:     product_page                                (leaves at the product page)

Touchpoint chain: product_page -> cart 5/6, -> path_end 1/6; cart -> checkout 3/5, -> path_end 2/5;
checkout -> purchase 2/3, -> path_end 1/3. So p_goal(checkout) = 2/3, p_goal(cart) = 3/5 * 2/3 = 2/5,
p_goal(product_page) = 5/6 * 2/5 = 1/3 = P(conversion). The average order value is (100 + 50) / 2 = 75.
Revenue at risk = leavers x p_goal(next node) x 75: product_page 1 x 2/5 x 75 = 30, cart 2 x 2/3 x 75 =
100, checkout 1 x 1 x 75 = 75. The stage chain (Awareness > Interest > Consideration > Purchase >
purchase) has the same shape, so the same numbers.
"""

from __future__ import annotations

import polars as pl
import pytest

from pipeline import paths
from pipeline.build import build
from pipeline.value import risk
from tests.conftest import load_events, make_journeys

PS = {"channel": "Paid Search"}
BUYER = [("view_item", 0, PS), ("add_to_cart", 1, PS), ("begin_checkout", 2, PS)]


@pytest.fixture
def chain(db, cfg):
    load_events(db, make_journeys({
        "u1": [*BUYER, ("purchase", 3, {**PS, "revenue": 100.0}), ("review_submitted", 5 * 24 * 60, PS)],
        "u2": [*BUYER, ("purchase", 3, {**PS, "revenue": 50.0})],
        "u3": BUYER,
        "u4": BUYER[:2],
        "u5": BUYER[:1],
        "u6": BUYER[:2],
    }))
    build(db, cfg)
    return db


def _by_node(frame: pl.DataFrame) -> dict[str, dict]:
    return {r["node"]: r for r in frame.iter_rows(named=True)}


EXPECTED = {  # node: (n_dropoffs, n_journeys_through, next, p_if_continued, revenue_at_risk, rank)
    "product_page": (1, 6, "cart", 2 / 5, 30.0, 3),
    "cart": (2, 5, "checkout", 2 / 3, 100.0, 1),
    "checkout": (1, 3, "purchase", 1.0, 75.0, 2),
}
STAGE_NAMES = {"product_page": "Interest", "cart": "Consideration", "checkout": "Purchase"}


def _check(frame: pl.DataFrame, names: dict[str, str] | None = None) -> None:
    names = names or {k: k for k in EXPECTED}
    rows = _by_node(frame)
    assert set(rows) == set(names.values())
    for node, (n_drop, n_through, nxt, p, value, rank) in EXPECTED.items():
        row = rows[names[node]]
        assert (row["n_dropoffs"], row["n_journeys_through"], row["rank"]) == (n_drop, n_through, rank)
        assert row["next_node"] == (names.get(nxt, nxt) if nxt != "purchase" else "purchase")
        assert row["p_conversion_if_continued"] == pytest.approx(p)
        assert row["expected_lost_conversions"] == pytest.approx(n_drop * p)
        assert row["revenue_at_risk"] == pytest.approx(value)
        assert row["share_of_risk"] == pytest.approx(value / 205.0)
        assert row["dropoff_rate"] == pytest.approx(n_drop / n_through)
    assert frame["rank"].to_list() == [1, 2, 3]  # ranked by the revenue at risk


def test_revenue_at_risk_hand_solved(chain):
    frame = risk.revenue_at_risk(chain, value_basis="aov")
    assert frame["level"].unique(maintain_order=True).to_list() == ["touchpoint", "stage"]
    assert set(frame["value_basis"]) == {"aov"} and set(frame["value_per_conversion"]) == {75.0}
    _check(frame.filter(pl.col("level") == "touchpoint"))
    _check(frame.filter(pl.col("level") == "stage"), STAGE_NAMES)
    given = risk.revenue_at_risk(chain, levels=("touchpoint",), value_per_conversion=10.0)
    assert set(given["value_basis"]) == {"given"}
    assert _by_node(given)["cart"]["revenue_at_risk"] == pytest.approx(2 * 2 / 3 * 10)


def test_funnel_steps_are_valued_like_the_chain(chain):
    frame = risk.revenue_at_risk(chain, levels=(), value_basis="aov",
                                 funnel_steps="product_page,cart,checkout,purchase")
    assert set(frame["level"]) == {"funnel"}
    _check(frame)


def test_clv_value_needs_a_fit_and_says_so(chain):
    with pytest.raises(risk.RiskError, match="use the value basis 'aov'"):
        risk.revenue_at_risk(chain, value_basis="clv")


def test_goal_chain_is_the_transitions_table_at_touchpoint_level(chain):
    mine = risk.chain_edges(chain, "touchpoint")
    theirs = paths.transitions(chain, paths.PathOptions(until_goal=True))
    assert mine.sort("from_node", "to_node").equals(theirs.sort("from_node", "to_node"))


def test_revenue_at_risk_reads_the_chain_without_users_per_edge(chain):
    # revenue at risk asks for the edges without n_users (the distinct count is most of the query);
    # every other column must be the chain's
    for level in ("touchpoint", "stage"):
        full = risk.chain_edges(chain, level)  # type: ignore[arg-type]
        bare = risk._goal_edges(chain, "purchase", level, count_users=False)  # the journeys just prepared
        assert full["n_users"].null_count() == 0 and full["n_users"].sum() > 0
        assert bare["n_users"].null_count() == bare.height
        assert bare.drop("n_users").equals(full.drop("n_users"))


def test_stage_chain_keeps_the_purchase_after_checkout(chain):
    edges = {(r["from_node"], r["to_node"]): r["n_transitions"] for r in risk.chain_edges(chain, "stage").iter_rows(
        named=True)}
    assert edges == {
        ("path_start", "Awareness"): 6, ("Awareness", "Interest"): 6, ("Interest", "Consideration"): 5,
        ("Interest", "path_end"): 1, ("Consideration", "Purchase"): 3, ("Consideration", "path_end"): 2,
        ("Purchase", "purchase"): 2, ("Purchase", "path_end"): 1, ("purchase", "path_end"): 2,
    }


def test_propensity_hand_solved(chain):
    rows = _by_node(risk.propensity(chain))
    assert {n: round(rows[n]["p_goal"], 12) for n in ("path_start", "product_page", "cart", "checkout", "purchase")} \
        == {"path_start": round(1 / 3, 12), "product_page": round(1 / 3, 12), "cart": 0.4, "checkout": round(2 / 3, 12),
            "purchase": 1.0}
    # expected further steps: checkout 1; cart 1 + 3/5 * 1; product_page 1 + 5/6 * 1.6
    assert rows["checkout"]["expected_steps"] == pytest.approx(1.0)
    assert rows["cart"]["expected_steps"] == pytest.approx(1.6)
    assert rows["product_page"]["expected_steps"] == pytest.approx(1 + 5 / 6 * 1.6)
    assert (rows["product_page"]["n_visits"], rows["cart"]["n_visits"], rows["purchase"]["n_visits"]) == (6, 5, 2)


def test_whatif_zero_change_equals_current(chain):
    for level, edit in (("touchpoint", "cart>checkout=+0.0"), ("stage", "Consideration>Purchase=-0")):
        result = risk.whatif(chain, change=[risk.parse_edit(edit)], level=level)  # type: ignore[arg-type]
        assert result.p_projected == pytest.approx(result.p_current) and result.p_current == pytest.approx(1 / 3)
        assert (result.conversions_current, result.conversions_projected) == pytest.approx((2.0, 2.0))
        assert (result.revenue_current, result.revenue_projected) == pytest.approx((150.0, 150.0))
    assert risk.whatif(chain).p_projected == pytest.approx(1 / 3)  # no edit at all


def test_whatif_hand_solved(chain):
    # cart -> checkout 0.6 -> 0.8: P = 5/6 * 0.8 * 2/3 = 4/9
    up = risk.whatif(chain, change=[risk.parse_edit("cart>checkout=+0.2")])
    assert up.p_projected == pytest.approx(4 / 9)
    assert up.conversions_projected == pytest.approx(6 * 4 / 9)
    assert up.revenue_projected == pytest.approx(6 * 4 / 9 * 75)
    assert risk.whatif(chain, change=[risk.parse_edit("cart>checkout=0.8")]).p_projected == pytest.approx(4 / 9)
    stage = risk.whatif(chain, change=[risk.parse_edit("Consideration>Purchase=+0.2")], level="stage")
    assert stage.p_projected == pytest.approx(4 / 9)
    # a new edge product_page -> checkout at 0.5 scales the others by 0.5: 5/12 * 2/5 + 1/2 * 2/3 = 1/2
    added = risk.whatif(chain, add=[risk.parse_edit("product_page>checkout=0.5", "--add")])
    assert added.p_projected == pytest.approx(0.5)
    assert risk.whatif(chain, remove=["checkout"]).p_projected == 0.0


def test_whatif_errors(chain):
    with pytest.raises(risk.RiskArgumentError, match="did you mean 'checkout'"):
        risk.whatif(chain, change=[risk.parse_edit("cart>chekout=+0.1")])
    with pytest.raises(risk.RiskArgumentError, match="all signed"):
        risk.whatif(chain, change=[risk.parse_edit("cart>checkout=+0.1"), risk.parse_edit("product_page>cart=0.9")])
    with pytest.raises(risk.RiskArgumentError, match="outside"):
        risk.whatif(chain, change=[risk.parse_edit("cart>checkout=+0.5")])
    with pytest.raises(risk.RiskArgumentError, match="FROM>TO=VALUE"):
        risk.parse_edit("cart=0.1")
    with pytest.raises(risk.RiskArgumentError, match="not a number"):
        risk.parse_edit("cart>checkout=lots")
    with pytest.raises(risk.RiskArgumentError, match="did you mean 'purchase'"):
        risk.propensity(chain, goal="purchse")


def test_parse_edit():
    assert risk.parse_edit("cart>checkout=+0.10") == risk.EdgeEdit("cart", "checkout", 0.10, True)
    assert risk.parse_edit(" a > b = 0.2 ") == risk.EdgeEdit("a", "b", 0.2, False)
    assert risk.parse_edit("a>b=-0.05").signed


def test_stage_chain_counts_a_repeated_stage_once(db, cfg):
    # Two product views in a row are one Interest step of the stage chain, two touchpoint steps;
    # r2 goes back from the cart to the product page and stays there.
    load_events(db, make_journeys({
        "r1": [("view_item", 0, PS), ("view_item", 1, PS), ("add_to_cart", 2, PS), ("add_to_cart", 3, PS),
               ("begin_checkout", 4, PS), ("purchase", 5, {**PS, "revenue": 20.0})],
        "r2": [("view_item", 0, PS), ("add_to_cart", 1, PS), ("view_item", 2, PS), ("view_item", 3, PS)],
    }))
    build(db, cfg)

    def edges(level: str) -> dict[tuple[str, str], int]:
        return {(r["from_node"], r["to_node"]): r["n_transitions"]
                for r in risk.chain_edges(db, level).iter_rows(named=True)}  # type: ignore[arg-type]

    assert edges("stage") == {
        ("path_start", "Awareness"): 2, ("Awareness", "Interest"): 2, ("Interest", "Consideration"): 2,
        ("Consideration", "Purchase"): 1, ("Purchase", "purchase"): 1, ("purchase", "path_end"): 1,
        ("Consideration", "Interest"): 1, ("Interest", "path_end"): 1,
    }
    assert edges("touchpoint") == {
        ("path_start", "paid_search"): 2, ("paid_search", "product_page"): 2,
        ("product_page", "product_page"): 2, ("product_page", "cart"): 2, ("cart", "cart"): 1,
        ("cart", "checkout"): 1, ("checkout", "purchase"): 1, ("purchase", "path_end"): 1,
        ("cart", "product_page"): 1, ("product_page", "path_end"): 1,
    }
