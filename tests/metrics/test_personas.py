"""Behavioural personas: features by hand, two planted behaviour groups recovered, determinism."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from pipeline.build import build
from pipeline.db import Database
from pipeline.metrics.conversion import MetricError
from pipeline.metrics.personas import cluster, features, personas, standardise
from tests.conftest import REPO, load_events, make_journeys

PAID = {"source": "google", "medium": "cpc"}
MAIL = {"source": "newsletter", "medium": "email"}


def _planted() -> dict[str, list[tuple]]:
    """12 search buyers (paid search, view, cart, checkout, purchase of 20-31) and 8 e-mail readers
    (e-mail, landing page, newsletter sign-up, one to three product views, a review, no purchase)."""
    spec: dict[str, list[tuple]] = {}
    for i in range(12):
        spec[f"search_buyer_{i:02d}"] = [
            ("view_item", 0, PAID), ("add_to_cart", 1, PAID), ("begin_checkout", 2, PAID),
            ("purchase", 3, {**PAID, "revenue": 20.0 + i}),
        ]
    for i in range(8):
        views = [("view_item", 2 + k, MAIL) for k in range(1 + i % 3)]
        spec[f"mail_reader_{i:02d}"] = [
            ("page_view", 0, {**MAIL, "page_url": "https://shop.example.com/"}), ("newsletter_signup", 1, MAIL),
            *views, ("review_submitted", 10, MAIL),
        ]
    return spec


@pytest.fixture
def planted(db, cfg):
    load_events(db, make_journeys(_planted()))
    build(db, cfg)
    return db


def test_features_by_hand(planted):
    keys, names, matrix = features(planted)
    users = keys.to_list()
    assert len(users) == 20 and users == sorted(users) and names == sorted(names)
    row = dict(zip(names, matrix[users.index("search_buyer_03")], strict=True))
    # steps: paid_search (channel step), product_page, cart, checkout, purchase -> 1/5 each;
    # stages Awareness, Interest, Consideration 1/5 each, Purchase 2/5
    assert row["touchpoint:paid_search"] == pytest.approx(0.2)
    assert row["touchpoint:checkout"] == pytest.approx(0.2) and row["touchpoint:review"] == 0.0
    assert row["stage:Purchase"] == pytest.approx(0.4) and row["stage:Interest"] == pytest.approx(0.2)
    assert (row["n_sessions"], row["n_channels"], row["converted"], row["revenue"]) == (1.0, 1.0, 1.0, 23.0)
    reader = dict(zip(names, matrix[users.index("mail_reader_02")], strict=True))
    # email, landing_page, newsletter_signup, 3 product views, review -> 7 steps
    assert reader["touchpoint:product_page"] == pytest.approx(3 / 7)
    assert reader["converted"] == 0.0
    z = standardise(matrix)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)


def test_a_feature_missing_from_the_names_is_an_error(planted, monkeypatch):
    # the cells are placed by feature position; a cell whose feature has no column must not vanish
    import pipeline.metrics.personas as module

    real = module.load_sql

    def names_without_revenue(name: str) -> str:
        sql = real(name)
        if name == "analysis/persona_feature_names.sql":
            return f"select * from ({sql}) where feature <> 'revenue' order by feature"
        return sql

    monkeypatch.setattr(module, "load_sql", names_without_revenue)
    with pytest.raises(MetricError, match="persona features changed"):
        features(planted)


def test_two_planted_groups_are_recovered(planted):
    result = personas(planted, k=2, seed=7)
    groups = dict(result.assignments.iter_rows())
    buyers = {groups[u] for u in groups if u.startswith("search_buyer")}
    readers = {groups[u] for u in groups if u.startswith("mail_reader")}
    assert buyers == {1} and readers == {2}  # persona 1 is the larger group
    summary = {r["persona"]: r for r in result.summary.iter_rows(named=True)}
    # buyers: 12 users, all converted, revenue 20..31 -> mean 25.5
    assert (summary[1]["n_users"], summary[1]["n_converted"], summary[1]["conversion_rate"]) == (12, 12, 1.0)
    assert summary[1]["mean_revenue"] == pytest.approx(25.5) and summary[1]["share_of_users"] == pytest.approx(0.6)
    assert (summary[2]["n_users"], summary[2]["n_converted"], summary[2]["mean_revenue"]) == (8, 0, 0.0)
    top_buyers = summary[1]["top_touchpoints"].split(", ")
    top_readers = summary[2]["top_touchpoints"].split(", ")
    assert {t.split(" ")[0] for t in top_buyers} <= {"paid_search", "cart", "checkout", "purchase"}
    assert {t.split(" ")[0] for t in top_readers} <= {"email", "landing_page", "newsletter_signup", "review"}
    assert result.centroids.height == 2 * len(features(planted)[1])


def test_personas_are_deterministic(planted):
    first = personas(planted, k=3, seed=1)
    again = personas(planted, k=3, seed=1)
    assert first.summary.equals(again.summary) and first.assignments.equals(again.assignments)
    # the planted split does not depend on the seed
    for seed in (0, 2, 3):
        other = dict(personas(planted, k=2, seed=seed).assignments.iter_rows())
        assert {other[u] for u in other if u.startswith("search_buyer")} == {1}


def test_too_many_personas(planted):
    with pytest.raises(MetricError, match="cannot form 25 personas from 20 users"):
        personas(planted, k=25)
    with pytest.raises(MetricError, match="k must be >= 1"):
        personas(planted, k=0)


def test_personas_command(tmp_path, cfg):
    path = tmp_path / "cli.duckdb"
    database = Database(path)
    load_events(database, make_journeys(_planted()))
    build(database, cfg)
    database.close()
    run = subprocess.run([sys.executable, "-m", "pipeline", "personas", "--db", str(path), "--k", "2", "--format",
                          "json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert run.returncode == 0, run.stderr
    assert [(r["persona"], r["n_users"]) for r in json.loads(run.stdout)] == [(1, 12), (2, 8)]


def test_restarts_on_a_sample_find_the_full_data_clusters():
    # Three planted blobs of unequal size (3,000 / 2,000 / 1,000 rows, 4 features). Restarts on a
    # 300-row sample, refined on all rows, must give exactly the labels of restarts on all rows.
    rng = np.random.default_rng(11)
    centres = np.array([[0, 0, 0, 0], [6, 0, 6, 0], [0, 6, 0, 6]], dtype=float)
    sizes = (3000, 2000, 1000)
    data = np.vstack([c + rng.normal(0, 1, (n, 4)) for c, n in zip(centres, sizes, strict=True)])
    planted = np.repeat([0, 1, 2], sizes)
    full = cluster(data, 3, seed=5, fit_sample=len(data))
    sampled = cluster(data, 3, seed=5, fit_sample=300)
    assert np.array_equal(full, sampled)
    # the planted blobs, numbered by size (largest first), with at most a handful of boundary rows off
    assert (sampled != planted).sum() <= 5
    assert np.array_equal(sampled, cluster(data, 3, seed=5, fit_sample=300))  # seeded: same again


def test_distinct_behaviours_are_checked_on_the_data_not_only_the_sample():
    # 1,000 identical rows and one different: a 100-row sample that misses the odd row is uniform,
    # so the restarts fall back to all rows, which do hold two distinct behaviours.
    data = np.zeros((1001, 3))
    data[-1] = 1.0
    labels = cluster(data, 2, seed=1, fit_sample=100)
    assert np.bincount(labels).tolist() == [1000, 1]
    # fewer distinct rows than personas, sampled or not: one clear error
    for fit_sample in (100, 5000):
        with pytest.raises(MetricError, match="fewer than 3 distinct behaviours"):
            cluster(data, 3, seed=1, fit_sample=fit_sample)
