"""Transition graph, variants, drop-off: hand-computed on tiny inputs; flow conservation; graph export."""

from __future__ import annotations

import json

import networkx as nx
import polars as pl
import pytest

from pipeline.build import build
from pipeline.paths import (
    PathError,
    PathOptions,
    dropoffs,
    export_graph,
    next_previous,
    path_variants,
    transition_graph,
    transitions,
)
from tests.conftest import load_events, make_journeys

EVENT_SESSION = PathOptions(scope="session", level="event")


@pytest.fixture
def three(db, cfg):
    load_events(db, make_journeys({
        "u1_buys": [("page_view", 0), ("view_item", 1), ("add_to_cart", 2), ("purchase", 3)],
        "u2_leaves_after_item": [("page_view", 0), ("view_item", 1)],
        "u3_leaves_cart": [("view_item", 0), ("add_to_cart", 1)],
    }))
    build(db, cfg)
    return db


def _edges(frame: pl.DataFrame) -> dict[tuple[str, str], tuple[int, float]]:
    return {(r["from_node"], r["to_node"]): (r["n_transitions"], round(r["probability"], 6))
            for r in frame.iter_rows(named=True)}


def test_transition_matrix_by_hand(three):
    assert _edges(transitions(three, EVENT_SESSION)) == {
        ("path_start", "page_view"): (2, round(2 / 3, 6)),
        ("path_start", "view_item"): (1, round(1 / 3, 6)),
        ("page_view", "view_item"): (2, 1.0),
        ("view_item", "add_to_cart"): (2, round(2 / 3, 6)),
        ("view_item", "path_end"): (1, round(1 / 3, 6)),
        ("add_to_cart", "purchase"): (1, 0.5),
        ("add_to_cart", "path_end"): (1, 0.5),
        ("purchase", "path_end"): (1, 1.0),
    }


def test_flow_is_conserved_and_probabilities_sum_to_one(three):
    for level in ("event", "touchpoint", "stage"):
        edges = transitions(three, PathOptions(scope="user", level=level))
        graph = transition_graph(edges)
        for node in graph.nodes:
            inflow = sum(d["n_transitions"] for *_, d in graph.in_edges(node, data=True))
            outflow = sum(d["n_transitions"] for *_, d in graph.out_edges(node, data=True))
            if node not in ("path_start", "path_end"):
                assert inflow == outflow, (level, node)
            if outflow:
                assert sum(d["probability"] for *_, d in graph.out_edges(node, data=True)) == pytest.approx(1.0)


def test_touchpoint_level_includes_channel_steps(three):
    edges = _edges(transitions(three, PathOptions(scope="session", level="touchpoint")))
    # no UTM on these events: every session opens with the Direct channel step
    assert edges[("path_start", "direct")] == (3, 1.0)
    assert edges[("direct", "landing_page")][0] == 2 and edges[("direct", "product_page")][0] == 1


def test_cleaning_options(db, cfg):
    load_events(db, make_journeys({
        "u1": [("view_item", 0, {"page_url": "/product/1"}), ("view_item", 1, {"page_url": "/product/2"}),
               ("view_item", 2), ("search", 3), ("add_to_cart", 4), ("purchase", 5)],
    }))
    build(db, cfg)
    collapsed = _edges(transitions(db, PathOptions(scope="session", level="event", collapse_repeats=True)))
    assert collapsed[("view_item", "search")] == (1, 1.0) and ("view_item", "view_item") not in collapsed
    excluded = _edges(transitions(db, PathOptions(scope="session", level="event", exclude=("search",),
                                                  collapse_repeats=True)))
    assert excluded[("view_item", "add_to_cart")] == (1, 1.0)
    renamed = _edges(transitions(db, PathOptions(scope="session", level="event",
                                                 rename=(("^(view_item|search)$", "browse"),),
                                                 collapse_repeats=True)))
    assert renamed[("path_start", "browse")] == (1, 1.0) and renamed[("browse", "add_to_cart")] == (1, 1.0)
    first = path_variants(db, PathOptions(scope="session", level="event", first_n=2))
    assert first["path"].to_list() == ["view_item > view_item"]
    last = path_variants(db, PathOptions(scope="session", level="event", last_n=2))
    assert last["path"].to_list() == ["add_to_cart > purchase"]


def test_path_variants_and_outcomes(three):
    variants = path_variants(three, EVENT_SESSION)
    assert variants.select("path", "n_journeys", "share", "conversion_rate").sort("path").rows() == [
        ("page_view > view_item", 1, pytest.approx(1 / 3), 0.0),
        ("page_view > view_item > add_to_cart > purchase", 1, pytest.approx(1 / 3), 1.0),
        ("view_item > add_to_cart", 1, pytest.approx(1 / 3), 0.0),
    ]
    assert path_variants(three, EVENT_SESSION, outcome="converted")["path"].to_list() == [
        "page_view > view_item > add_to_cart > purchase"]
    assert path_variants(three, EVENT_SESSION, starting_at="view_item", max_steps=2).sort("path")["path"].to_list() == [
        "view_item", "view_item > add_to_cart"]
    assert path_variants(three, EVENT_SESSION, ending_at="add_to_cart").sort("path")["path"].to_list() == [
        "page_view > view_item > add_to_cart", "view_item > add_to_cart"]
    durations = dict(path_variants(three, EVENT_SESSION).select("path", "median_duration_seconds").rows())
    assert durations["page_view > view_item > add_to_cart > purchase"] == 180


def test_dropoffs_by_hand(three):
    rows = dropoffs(three, EVENT_SESSION).select("node", "n_dropoffs", "n_journeys_through", "dropoff_rate",
                                                 "top_previous").sort("node").rows()
    assert rows == [
        ("add_to_cart", 1, 2, 0.5, "view_item 100.0%"),
        ("view_item", 1, 3, pytest.approx(1 / 3), "page_view 100.0%"),
    ]


def test_next_previous(three):
    frame = next_previous(three, "view_item", EVENT_SESSION)
    got = {(r["direction"], r["node"]): round(r["share"], 6) for r in frame.iter_rows(named=True)}
    assert got == {("next", "add_to_cart"): round(2 / 3, 6), ("next", "path_end"): round(1 / 3, 6),
                   ("previous", "page_view"): round(2 / 3, 6), ("previous", "path_start"): round(1 / 3, 6)}
    with pytest.raises(PathError, match="did you mean 'view_item'"):
        next_previous(three, "view_itme", EVENT_SESSION)


def test_goal_can_be_any_event_or_touchpoint(three):
    by_cart = path_variants(three, PathOptions(scope="session", level="event", goal="add_to_cart"))
    assert sorted(by_cart["conversion_rate"].to_list()) == [0.0, 1.0, 1.0]
    by_touchpoint = path_variants(three, PathOptions(scope="session", level="event", goal="cart"))
    assert sorted(by_touchpoint["conversion_rate"].to_list()) == [0.0, 1.0, 1.0]
    with pytest.raises(PathError, match="did you mean 'purchase'"):
        transitions(three, PathOptions(goal="purchse"))


def test_graph_exports(three, tmp_path):
    graph = transition_graph(transitions(three, EVENT_SESSION))
    export_graph(graph, tmp_path / "g.graphml", "graphml")
    again = nx.read_graphml(tmp_path / "g.graphml")
    assert again["view_item"]["add_to_cart"]["n_transitions"] == 2
    export_graph(graph, tmp_path / "g.json", "json")
    data = json.loads((tmp_path / "g.json").read_text())
    assert {(e["source"], e["target"]) for e in data["links"]} == set(graph.edges)


def test_works_on_a_read_only_connection(three, tmp_path):
    from pipeline.db import Database

    path = three.path
    three.close()
    reader = Database(path, read_only=True)
    assert transitions(reader, EVENT_SESSION).height == 8
    reader.close()
