"""Behavioural personas: users clustered by what their journeys look like (k-means, seeded).

Reads ``staging.stg_touchpoints``, ``staging.stg_sessions`` and ``staging.stg_users`` through
``sql/analysis/persona_users.sql`` (the matrix's rows), ``persona_feature_names.sql`` (its columns)
and ``persona_features.sql`` (its non-zero cells as integer positions, computed in SQL); clusters in
numpy with ``scipy.cluster.vq.kmeans2``; writes nothing.

Features per user: the share of their steps at each touchpoint and at each stage, n_sessions,
n_channels, converted (0/1) and revenue; each column is standardised (z-score; a constant column
becomes 0). Clustering: a k-means++ start (``kmeans2``), then one ``kmeans2`` Lloyd step at a time
until the labels settle; this runs ``n_init`` times from one ``numpy`` generator seeded with
``seed`` and the run with the lowest within-cluster sum of squares is kept (a run that leaves a
cluster empty only wins when every run does), so the same data and seed always give the same
personas. With more than ``FIT_SAMPLE`` users the restarts run on a seeded sample of that many users
and only the winner is refined on everyone (Lloyd steps from its centroids until the labels settle):
ten restarts over 615,384 users took 53 s, the sample's 4.9 s. A cluster big enough to be a persona
is well represented in the sample, so the refined winner lands where restarts on everyone do (a test
checks that on planted clusters; the idea of choosing the start on samples is Bradley and Fayyad,
*Refining Initial Points for K-Means Clustering*, ICML 1998). Personas are numbered 1..k by size
(largest first; ties by centroid). A persona is characterised by the touchpoints whose standardised
mean is highest in it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy.cluster.vq import kmeans2, vq

from pipeline.db import Database, load_sql
from pipeline.metrics.conversion import MetricError, add_rate

TOUCHPOINT_PREFIX = "touchpoint:"
FIT_SAMPLE = 50_000  # users the restarts run on (see the module docstring)
RAW_FEATURES = ("converted", "revenue", "n_sessions", "n_channels")  # summarised unstandardised


@dataclass(frozen=True)
class Personas:
    summary: pl.DataFrame  # one row per persona
    assignments: pl.DataFrame  # user_key, persona
    centroids: pl.DataFrame  # persona, feature, standardised_mean


def features(db: Database) -> tuple[pl.Series, list[str], np.ndarray]:
    """(user_keys, feature names, matrix users x features), both sorted; a missing feature is 0."""
    # Gigabytes at 100M events (6.2M users x 30 features): DuckDB gives back what earlier requests
    # left it holding first, and what the cells' query used after, before the matrix is clustered.
    db.release_memory()
    users = db.query(load_sql("analysis/persona_users.sql"))["user_key"]
    names = db.query(load_sql("analysis/persona_feature_names.sql"))["feature"].to_list()
    cells = db.query(load_sql("analysis/persona_features.sql"), {"features": names})
    db.release_memory()
    if cells["feature_index"].null_count():  # the steps changed between the two queries
        raise MetricError("the persona features changed while they were read; run it again")
    matrix = np.zeros((len(users), len(names)))
    matrix[cells["user_index"].to_numpy(), cells["feature_index"].to_numpy()] = cells["value"].to_numpy()
    return users, names, matrix


def standardise(matrix: np.ndarray) -> np.ndarray:
    """Each column as a z-score (a constant column becomes 0), in a new array. At 100M events the
    matrix is 1.5 GB, so the result is made once and divided in place rather than through temporaries."""
    mean = matrix.mean(axis=0)
    sd = matrix.std(axis=0)
    out = matrix - mean
    out /= np.where(sd > 0, sd, 1.0)
    out[:, sd == 0] = 0.0
    return out


def cluster(data: np.ndarray, k: int, seed: int = 0, n_init: int = 10, fit_sample: int = FIT_SAMPLE) -> np.ndarray:
    """Labels 0..k-1 (0 = largest cluster) of the best of ``n_init`` seeded k-means++ runs (on a
    seeded sample of ``fit_sample`` rows when there are more, the winner refined on all rows)."""
    rng = np.random.default_rng(seed)
    fit = data
    if data.shape[0] > fit_sample:
        fit = data[np.sort(rng.choice(data.shape[0], fit_sample, replace=False))]
        if np.unique(fit, axis=0).shape[0] < k:  # a sample too uniform to seed k clusters
            fit = data
    # k distinct rows in the sample are k distinct rows in the data: the data (2.8 s to sort at 615,384
    # users) is only checked when the restarts run on all of it
    if fit is data and np.unique(data, axis=0).shape[0] < k:
        raise MetricError(f"cannot form {k} personas: fewer than {k} distinct behaviours")
    best_centroids, best_labels, best_score = None, None, (True, np.inf)
    for _ in range(n_init):  # restarts, not a loop over users
        centroids, labels = _kmeans(fit, k, rng)
        has_empty = bool((np.bincount(labels, minlength=k) == 0).any())
        score = (has_empty, float(((fit - centroids[labels]) ** 2).sum()))
        if score[0] < best_score[0] or (score[0] == best_score[0] and score[1] < best_score[1] - 1e-9):
            best_centroids, best_labels, best_score = centroids, labels, score
    if best_labels is None or best_centroids is None:  # n_init >= 1 always sets them
        raise ValueError("personas need n_init >= 1")
    if fit is not data:
        best_labels = _kmeans(data, k, rng, start=best_centroids)[1]
    sizes = np.bincount(best_labels, minlength=k)
    means = np.array([data[best_labels == c].mean(axis=0) if sizes[c] else np.zeros(data.shape[1])
                      for c in range(k)])
    # order: size descending, then the centroid (lexicographic) so that ties are stable
    order = sorted(range(k), key=lambda c: (-sizes[c], tuple(np.round(means[c], 9))))
    relabel = np.empty(k, dtype=int)
    relabel[order] = np.arange(k)
    return relabel[best_labels]


def _kmeans(data: np.ndarray, k: int, rng: np.random.Generator, max_iter: int = 300,
            tol: float = 1e-4, start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """kmeans2 from a k-means++ start (or from the centroids ``start``), one Lloyd step at a time
    until the labels stop changing or the centroids move less than ``tol`` in total squared distance
    (kmeans2 itself always runs all ``iter`` steps; on standardised data this tolerance is
    scikit-learn's default)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an empty cluster is scored by the caller instead
        if start is None:
            centroids, labels = kmeans2(data, k, iter=1, minit="++", seed=rng, missing="warn")
        else:
            centroids, labels = start, vq(data, start)[0]
        for _ in range(max_iter):
            new_centroids, new_labels = kmeans2(data, centroids, iter=1, minit="matrix", missing="warn")
            settled = np.array_equal(new_labels, labels) or float(((new_centroids - centroids) ** 2).sum()) < tol
            centroids, labels = new_centroids, new_labels
            if settled:
                break
        labels = vq(data, centroids)[0]  # the labels of the final centroids
    return centroids, labels


def personas(db: Database, *, k: int = 4, seed: int = 0, top_n: int = 3, n_init: int = 10) -> Personas:
    """Cluster users into ``k`` personas; summary columns: persona, n_users, share_of_users,
    n_converted, conversion_rate (Wilson bounds), mean_revenue, mean_sessions, mean_channels,
    top_touchpoints ('name (+z)' of the ``top_n`` highest standardised touchpoint means)."""
    if k < 1:
        raise MetricError(f"k must be >= 1, not {k}")
    users, names, matrix = features(db)
    if len(users) < k:
        raise MetricError(f"cannot form {k} personas from {len(users)} users")
    # the summary's raw columns are kept; the raw matrix is not, once standardised
    raw = {name: matrix[:, i].copy() for i, name in enumerate(names) if name in RAW_FEATURES}
    data = standardise(matrix)
    del matrix
    labels = cluster(data, k, seed, n_init) + 1
    persona_ids = np.arange(1, k + 1)
    sizes = np.array([(labels == p).sum() for p in persona_ids])

    def raw_sum(feature: str) -> np.ndarray:
        values = raw.get(feature, np.zeros(len(users)))
        return np.bincount(labels, weights=values, minlength=k + 1)[1:]

    def raw_mean(feature: str) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return raw_sum(feature) / sizes

    z_means = np.array([data[labels == p].mean(axis=0) if sizes[p - 1] else np.zeros(len(names))
                        for p in persona_ids])
    touchpoints = [i for i, n in enumerate(names) if n.startswith(TOUCHPOINT_PREFIX)]
    tops = []
    for p in range(k):  # k personas, not users
        ranked = sorted(touchpoints, key=lambda i: (-z_means[p, i], names[i]))[:top_n]
        tops.append(", ".join(f"{names[i].removeprefix(TOUCHPOINT_PREFIX)} ({z_means[p, i]:+.2f})" for i in ranked))
    summary = pl.DataFrame({
        "persona": persona_ids,
        "n_users": sizes,
        "share_of_users": sizes / len(users),
        "n_converted": np.rint(raw_sum("converted")).astype(np.int64),
        "mean_revenue": raw_mean("revenue"),
        "mean_sessions": raw_mean("n_sessions"),
        "mean_channels": raw_mean("n_channels"),
        "top_touchpoints": tops,
    })
    summary = add_rate(summary, "n_converted", "n_users", "conversion_rate").select(
        "persona", "n_users", "share_of_users", "n_converted", "conversion_rate", "conversion_rate_low",
        "conversion_rate_high", "mean_revenue", "mean_sessions", "mean_channels", "top_touchpoints",
    )
    assignments = pl.DataFrame({"user_key": users, "persona": labels})
    centroids = pl.DataFrame({
        "persona": np.repeat(persona_ids, len(names)),
        "feature": names * k,
        "standardised_mean": z_means.ravel(),
    })
    return Personas(summary, assignments, centroids)
