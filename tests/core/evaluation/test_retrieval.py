from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from dml_pipelines.core.evaluation.knn import knn
from dml_pipelines.core.evaluation.retrieval import (
    PER_CLASS_COLUMNS,
    per_query_scores,
    relevant_counts,
    required_k,
    retrieval_metrics,
)

PML_KEYS = {
    "precision_at_1": "precision@1",
    "r_precision": "r_precision",
    "mean_average_precision_at_r": "map@r",
}


def _pml(query, q_labels, ref=None, r_labels=None, avg_of_avgs=False):
    calc = AccuracyCalculator(
        include=tuple(PML_KEYS),
        k="max_bin_count",
        avg_of_avgs=avg_of_avgs,
        device=torch.device("cpu"),
    )
    if ref is None:
        return calc.get_accuracy(query, q_labels, query, q_labels, True)
    return calc.get_accuracy(query, q_labels, ref, r_labels, False)


def _ours(query, q_labels, ref=None, r_labels=None, recall_at=(1,), **kw):
    loo = ref is None
    r_labels = q_labels if loo else r_labels
    relevant = relevant_counts(q_labels, r_labels, loo)
    k = required_k(relevant, recall_at, len(r_labels) - int(loo))
    found = knn(query, k, ref, normalized=True)
    return retrieval_metrics(
        found.indices, q_labels, r_labels, leave_one_out=loo, recall_at=recall_at, **kw
    )


def _sorted_neighbour_labels(query, q_labels, ref, r_labels):
    """Oracle: all references sorted by float64 distance (self removed)."""
    loo = ref is None
    r = query if loo else ref
    r_labels = q_labels if loo else r_labels
    d = ((query[:, None, :].astype(np.float64) - r[None].astype(np.float64)) ** 2).sum(
        -1
    )
    out = []
    for i in range(len(query)):
        order = np.argsort(d[i], kind="stable")
        if loo:
            order = order[order != i]
        out.append(r_labels[order])
    return out


@pytest.mark.parametrize("n,classes", [(120, 25), (900, 200), (2500, 300)])
@pytest.mark.parametrize("avg_of_avgs", [False, True])
def test_leave_one_out_matches_pml(make_clustered, n, classes, avg_of_avgs):
    x, y = make_clustered(n, classes, 16, noise=1.2, seed=n)
    assert (np.bincount(y) == 1).any() or n > 1000  # small sets include lone queries
    want = _pml(x, y, avg_of_avgs=avg_of_avgs)
    got, _ = _ours(x, y, avg_of_avgs=avg_of_avgs)
    for pml_key, key in PML_KEYS.items():
        assert got[key] == pytest.approx(want[pml_key], abs=1e-6), key
    assert 0 < got["map@r"] < got["r_precision"] < 1  # a non-trivial fixture


@pytest.mark.parametrize(
    "n_query,n_gallery,classes", [(150, 200, 40), (1200, 1500, 300)]
)
def test_query_gallery_matches_pml(make_clustered, n_query, n_gallery, classes):
    x, y = make_clustered(n_query + n_gallery, classes, 16, noise=1.2, seed=7)
    q, g = x[:n_query], x[n_query:]
    qy, gy = y[:n_query].copy(), y[n_query:]
    qy[:5] = classes + 1  # lone queries: a label absent from the gallery
    want = _pml(q, qy, g, gy)
    got, _ = _ours(q, qy, g, gy)
    assert got["num_lone_queries"] >= 5
    for pml_key, key in PML_KEYS.items():
        assert got[key] == pytest.approx(want[pml_key], abs=1e-6), key


@pytest.mark.parametrize("lone_queries", ["drop", "miss"])
@pytest.mark.parametrize("leave_one_out", [True, False])
def test_recall_at_k_matches_brute_force_loop(
    make_clustered, lone_queries, leave_one_out
):
    x, y = make_clustered(260, 90, 8, noise=1.0, seed=3)
    if leave_one_out:
        q, qy, g, gy = x, y, None, None
    else:
        q, qy, g, gy = x[:100], y[:100], x[100:], y[100:]
    ks = (1, 2, 4, 8, 16, 500)
    got, _ = _ours(q, qy, g, gy, recall_at=ks, lone_queries=lone_queries)
    neighbours = _sorted_neighbour_labels(q, qy, g, gy)
    for kk in ks:
        hits, count = 0, 0
        for i, labels in enumerate(neighbours):
            lone = not (labels == qy[i]).any()
            if lone and lone_queries == "drop":
                continue
            count += 1
            hits += bool((labels[:kk] == qy[i]).any())
        assert got[f"recall@{kk}"] == pytest.approx(hits / count, abs=1e-12), kk
    assert got["num_queries"] == count
    assert got["num_lone_queries"] > 0  # the fixture exercises lone queries


def test_rp_and_map_at_r_match_equation_loop(make_clustered):
    x, y = make_clustered(300, 60, 8, noise=1.0, seed=5)
    got, per_class = _ours(x, y)
    neighbours = _sorted_neighbour_labels(x, y, None, None)
    rps, aps, labels = [], [], []
    for i, nb in enumerate(neighbours):
        r = int((nb == y[i]).sum())
        if r == 0:
            continue
        rel = (nb[:r] == y[i]).astype(float)
        prec = np.cumsum(rel) / np.arange(1, r + 1)
        rps.append(rel.sum() / r)
        aps.append((prec * rel).sum() / r)
        labels.append(y[i])
    assert got["r_precision"] == pytest.approx(np.mean(rps), abs=1e-12)
    assert got["map@r"] == pytest.approx(np.mean(aps), abs=1e-12)
    naive = pd.DataFrame({"label": labels, "rp": rps, "ap": aps}).groupby("label")
    assert list(per_class.columns) == PER_CLASS_COLUMNS
    np.testing.assert_array_equal(per_class["label"], naive.size().index)
    np.testing.assert_array_equal(per_class["num_queries"], naive.size().values)
    np.testing.assert_allclose(per_class["r_precision"], naive["rp"].mean().values)
    np.testing.assert_allclose(per_class["map@r"], naive["ap"].mean().values)


def test_map_at_r_bounds_on_random_rankings():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(3, 12))
        y = rng.integers(0, 3, size=n)
        idx = np.array([rng.permutation(np.delete(np.arange(n), i)) for i in range(n)])
        rel = relevant_counts(y, y, True)
        _, rp, ap = per_query_scores(idx, y, y, rel)
        ok = rel > 0
        assert np.all(ap[ok] <= rp[ok])
        assert np.array_equal(ap[ok] == 1.0, rp[ok] == 1.0)  # 1 iff top R all relevant
        assert np.array_equal(ap[ok] == 0.0, rp[ok] == 0.0)  # 0 iff none in top R
        assert np.all(np.isnan(rp[~ok])) and np.all(np.isnan(ap[~ok]))


def test_map_at_r_extremes():
    y = np.array([0, 0, 1, 1])
    perfect = np.array([[1, 2, 3], [0, 3, 2], [3, 0, 1], [2, 1, 0]])
    m, _ = retrieval_metrics(perfect, y, y, leave_one_out=True, recall_at=(1,))
    assert m["map@r"] == 1.0 and m["r_precision"] == 1.0
    worst = np.array([[2, 1, 3], [2, 0, 3], [0, 3, 1], [0, 2, 1]])
    m, _ = retrieval_metrics(worst, y, y, leave_one_out=True, recall_at=(1, 2))
    assert m["map@r"] == 0.0 and m["r_precision"] == 0.0
    assert m["recall@2"] == 1.0


def test_k_smaller_than_r_max_is_an_error():
    y = np.array([0, 0, 0, 0, 1, 1])  # R_max = 3 in leave-one-out mode
    idx = np.tile(np.arange(2), (6, 1))
    with pytest.raises(ValueError, match=r"evaluation\.knn_k=2 .*R_max=3"):
        retrieval_metrics(idx, y, y, leave_one_out=True, recall_at=(1,))
    rel = relevant_counts(y, y, True)
    with pytest.raises(ValueError, match=r"evaluation\.knn_k"):
        required_k(rel, (1,), 5, knn_k=2)
    assert required_k(rel, (1, 2), 5) == 3
    assert required_k(rel, (1, 100), 5) == 5  # capped at the number of references


def test_required_k_under_deep_recall_count():
    y = np.array([0, 0, 0, 0, 1, 1])  # R_max = 3 in leave-one-out mode
    rel = relevant_counts(y, y, True)
    assert required_k(rel, (1, 100), 5, deep_recall="count") == 3
    assert required_k(rel, (1, 100), 5, knn_k=4, deep_recall="count") == 4
    with pytest.raises(ValueError, match=r"evaluation\.knn_k=2 .*R_max=3"):
        required_k(rel, (1, 100), 5, knn_k=2, deep_recall="count")
    with pytest.raises(ValueError, match=r"evaluation\.deep_recall"):
        required_k(rel, (1,), 5, deep_recall="deep")


def test_ranks_beyond_the_list_decide_only_larger_k():
    # Queries 0-2 find a positive in their 2 neighbours (first hits at 0, 1, 1);
    # query 3 does not, and its counted rank says 6 negatives score above its best
    # positive.
    y = np.array([0, 0, 1, 1])
    idx = np.array([[1, 2], [2, 0], [0, 3], [0, 1]])
    ref = np.array([0, 0, 1, 1])
    beyond = np.array([-9, -9, -9, 6])  # entries of rows with a list hit are ignored
    m, _ = retrieval_metrics(
        idx, y, ref, leave_one_out=False, recall_at=(1, 2, 5, 7), beyond=beyond
    )
    assert m["recall@1"] == 0.25 and m["recall@2"] == 0.75
    assert m["recall@5"] == 0.75 and m["recall@7"] == 1.0
    # A count below k (bf16 certifies only the K > k) never turns K <= k into hits.
    low = np.array([0, 0, 0, 0])
    m, _ = retrieval_metrics(
        idx, y, ref, leave_one_out=False, recall_at=(2, 3), beyond=low
    )
    assert m["recall@2"] == 0.75 and m["recall@3"] == 1.0


def test_relevant_counts_query_gallery_and_lone():
    q = np.array([1, 2, 9])
    g = np.array([1, 1, 2, 5])
    np.testing.assert_array_equal(relevant_counts(q, g, False), [2, 1, 0])
    np.testing.assert_array_equal(relevant_counts(g, g, True), [1, 1, 0, 0])


def test_invalid_settings():
    y = np.array([0, 0, 1, 1])
    idx = np.array([[1, 2], [0, 3], [3, 0], [2, 1]])
    with pytest.raises(ValueError, match="evaluation.lone_queries"):
        retrieval_metrics(idx, y, y, leave_one_out=True, lone_queries="keep")
    with pytest.raises(ValueError, match=r"datasets\.<name>\.recall_at: "):
        retrieval_metrics(idx, y, y, leave_one_out=True, recall_at=(0,))
