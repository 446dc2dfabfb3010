from __future__ import annotations

import itertools
import sys

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from dml_pipelines.core.evaluation.clustering import (
    clustering_metrics,
    clustering_scores,
    kmeans_assign,
    pairwise_f1,
)

# worked example of the definitions in docs/protocols.md#clustering-metrics
LABELS = np.array([0, 0, 0, 1, 1, 1, 2])  # A A A B B B C
CLUSTERS = np.array([0, 0, 1, 1, 1, 2, 2])


def _f1_pair_loop(labels, clusters):
    tp = same_cluster = same_class = 0
    for i, j in itertools.combinations(range(len(labels)), 2):
        sc, sk = labels[i] == labels[j], clusters[i] == clusters[j]
        tp += sc and sk
        same_cluster += sk
        same_class += sc
    p = tp / same_cluster if same_cluster else 0.0
    r = tp / same_class if same_class else 0.0
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _nmi_equation(labels, clusters):
    """I(Y; C) / ((H(Y) + H(C)) / 2) from counts, float64."""
    n = len(labels)
    joint = {}
    for a, b in zip(labels, clusters, strict=True):
        joint[(a, b)] = joint.get((a, b), 0) + 1
    py = {a: np.mean(labels == a) for a in set(labels)}
    pc = {b: np.mean(clusters == b) for b in set(clusters)}
    mi = sum(c / n * np.log(c / n / (py[a] * pc[b])) for (a, b), c in joint.items())
    h = lambda p: -sum(v * np.log(v) for v in p.values())  # noqa: E731
    return mi / ((h(py) + h(pc)) / 2)


def test_worked_example_f1_and_nmi():
    assert pairwise_f1(LABELS, CLUSTERS) == pytest.approx(0.363636, abs=1e-6)
    assert pairwise_f1(LABELS, CLUSTERS) == pytest.approx(4 / 11, abs=1e-12)
    scores = clustering_scores(LABELS, CLUSTERS)
    assert scores["nmi"] == pytest.approx(0.512097, abs=1e-6)
    assert scores["f1"] == pytest.approx(0.363636, abs=1e-6)
    # The geometric normalisation (sklearn < 0.22 default) differs, as stated.
    geometric = normalized_mutual_info_score(
        LABELS, CLUSTERS, average_method="geometric"
    )
    assert geometric == pytest.approx(0.512427, abs=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_f1_and_nmi_match_oracles_on_random_assignments(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    labels = rng.integers(0, rng.integers(1, 8), size=n) * 7 + 3  # arbitrary ids
    clusters = rng.integers(0, rng.integers(1, 8), size=n)
    assert pairwise_f1(labels, clusters) == pytest.approx(
        _f1_pair_loop(labels, clusters), abs=1e-12
    )
    if len(set(labels)) > 1 or len(set(clusters)) > 1:
        assert clustering_scores(labels, clusters)["nmi"] == pytest.approx(
            _nmi_equation(labels, clusters), abs=1e-9
        )


def test_f1_degenerate_cases_are_finite():
    assert pairwise_f1(np.arange(5), np.arange(5)) == 0.0  # no same-class pairs
    assert pairwise_f1(np.zeros(4), np.zeros(4)) == 1.0


def _blobs(seed=0, per_class=5, classes=12, dim=8):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    centres = 10 * rng.standard_normal((classes, dim))
    x = centres[labels] + 0.1 * rng.standard_normal((len(labels), dim))
    return x.astype(np.float32), labels


@pytest.mark.parametrize("backend", ["faiss", "sklearn"])
def test_kmeans_is_seeded_and_scored_on_its_assignments(backend):
    x, labels = _blobs()
    assign, ran = kmeans_assign(x, 12, seed=3, backend=backend)
    assert ran == backend and assign.shape == labels.shape
    again, _ = kmeans_assign(x, 12, seed=3, backend=backend)
    np.testing.assert_array_equal(assign, again)
    m = clustering_metrics(x, labels, seed=3, backend=backend)
    assert m["clustering_backend"] == backend
    assert m["nmi"] == pytest.approx(
        normalized_mutual_info_score(labels, assign, average_method="arithmetic")
    )
    assert m["f1"] == pytest.approx(_f1_pair_loop(labels, assign))
    assert m["nmi"] > 0.7  # clearly better than chance on separated blobs


def test_faiss_kmeans_sets_min_points_per_centroid(capfd):
    # 5 points per centroid: faiss's default min_points_per_centroid=39 would warn.
    x, _ = _blobs(per_class=5, classes=12)
    kmeans_assign(x, 12, seed=0, backend="faiss")
    assert "WARNING" not in capfd.readouterr().err


def test_falls_back_to_sklearn_without_faiss(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    x, labels = _blobs()
    assert clustering_metrics(x, labels)["clustering_backend"] == "sklearn"


def test_invalid_backend():
    with pytest.raises(ValueError, match="evaluation.clustering_backend"):
        kmeans_assign(np.zeros((3, 2), np.float32), 2, backend="hdbscan")
