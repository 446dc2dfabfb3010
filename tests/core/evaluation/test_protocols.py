from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from dml_pipelines.core.evaluation import EmbeddingSet, evaluate, evaluate_mlrc
from dml_pipelines.core.evaluation.clustering import clustering_metrics
from dml_pipelines.core.evaluation.embeddings import normalize
from dml_pipelines.core.evaluation.options import EvaluationOptions

RETRIEVAL_KEYS = ("recall@1", "recall@2", "recall@4", "precision@1", "r_precision")


BACKENDS = ["faiss", "torch", "bf16"]


@pytest.mark.parametrize("deep_recall", ["count", "search"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_worked_example_drop(worked_example, backend, deep_recall):
    x, y = worked_example
    m = evaluate(
        x,
        y,
        recall_at=(1, 2, 4),
        knn_backend=backend,
        deep_recall=deep_recall,
        clustering=False,
    )
    assert m["recall@1"] == pytest.approx(0.5, abs=1e-6)
    assert m["precision@1"] == pytest.approx(0.5, abs=1e-6)
    assert m["recall@2"] == pytest.approx(0.666667, abs=1e-6)
    assert m["recall@4"] == pytest.approx(1.0, abs=1e-6)
    assert m["r_precision"] == pytest.approx(0.333333, abs=1e-6)
    assert m["map@r"] == pytest.approx(0.291667, abs=1e-6)
    assert m["num_lone_queries"] == 1 and m["num_queries"] == 6
    assert m["knn_backend"] == backend
    assert m["retrieval_mode"] == "leave_one_out" and m["embedding_dim"] == 2


@pytest.mark.parametrize("deep_recall", ["count", "search"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_worked_example_miss(worked_example, backend, deep_recall):
    x, y = worked_example
    m = evaluate(
        x,
        y,
        recall_at=(1, 2, 4),
        knn_backend=backend,
        deep_recall=deep_recall,
        lone_queries="miss",
        clustering=False,
    )
    assert m["recall@1"] == pytest.approx(3 / 7, abs=1e-6)
    assert m["recall@1"] == pytest.approx(0.428571, abs=1e-6)
    assert m["recall@4"] == pytest.approx(6 / 7, abs=1e-6)
    assert m["num_lone_queries"] == 1 and m["num_queries"] == 7
    # the lone query has no R-Precision: those metrics keep the 6 other queries
    assert m["map@r"] == pytest.approx(0.291667, abs=1e-6)


def test_default_recall_list_beyond_reference_count(worked_example):
    x, y = worked_example  # 6 references per query < K = 8
    m = evaluate(x, y, clustering=False)
    assert m["recall@8"] == 1.0 and m["recall@4"] == 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_identical_embeddings_hit_each_other_at_rank_1(backend):
    x = np.array([[1, 0], [1, 0], [0, 1], [0.2, 1], [-1, 0.1]], np.float32)
    y = np.array([0, 0, 1, 1, 2])
    m = evaluate(x, y, recall_at=(1,), knn_backend=backend, clustering=False)
    assert m["recall@1"] == 1.0 and m["num_lone_queries"] == 1


def test_per_class_table(worked_example):
    x, y = worked_example
    m, table = evaluate(x, y, recall_at=(1,), return_per_class=True, clustering=False)
    assert list(table.columns) == [
        "label",
        "num_queries",
        "recall@1",
        "r_precision",
        "map@r",
    ]
    # worked example: class A hits@1 = 1,1,0; class B = 0,1,0;
    # AP@R A = .5,.5,0; B = 0,.5,.25
    np.testing.assert_array_equal(table["label"], [0, 1])
    np.testing.assert_array_equal(table["num_queries"], [3, 3])
    np.testing.assert_allclose(table["recall@1"], [2 / 3, 1 / 3])
    np.testing.assert_allclose(table["map@r"], [1 / 3, 0.25])
    assert (table["num_queries"] * table["recall@1"]).sum() / 6 == pytest.approx(
        m["recall@1"]
    )


def test_query_gallery_matches_pml_and_clusters_the_union(make_clustered):
    x, y = make_clustered(700, 120, 12, noise=1.0, seed=11)
    is_query = np.zeros(700, bool)
    is_query[::3] = True
    m = evaluate(x, y, is_query=is_query, recall_at=(1, 10), seed=1)
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
    )
    want = calc.get_accuracy(x[is_query], y[is_query], x[~is_query], y[~is_query])
    assert m["retrieval_mode"] == "query_gallery"
    assert m["precision@1"] == pytest.approx(want["precision_at_1"], abs=1e-6)
    assert m["r_precision"] == pytest.approx(want["r_precision"], abs=1e-6)
    assert m["map@r"] == pytest.approx(want["mean_average_precision_at_r"], abs=1e-6)
    assert m["num_queries"] + m["num_lone_queries"] == is_query.sum()
    union = clustering_metrics(x, y, seed=1)
    assert m["nmi"] == union["nmi"] and m["f1"] == union["f1"]
    only_q = evaluate(x, y, is_query=is_query, seed=1, inshop_set="query")
    want_q = clustering_metrics(x[is_query], y[is_query], seed=1)
    assert only_q["nmi"] == want_q["nmi"] and only_q["nmi"] != m["nmi"]


@pytest.mark.parametrize("lone_queries", ["drop", "miss"])
@pytest.mark.parametrize("mode", ["leave_one_out", "query_gallery"])
def test_every_backend_and_deep_recall_give_the_same_metrics(
    make_clustered, mode, lone_queries
):
    # Recall@K far beyond R_max: "count" ranks the first positive by counting,
    # "search" searches k = largest K; bf16 certifies its float32 re-rank.
    x, y = make_clustered(1500, 260, 24, noise=0.9, seed=21)
    flags = {}
    if mode == "query_gallery":
        flags["is_query"] = np.arange(1500) % 3 == 0
    results = {}
    for backend in BACKENDS:
        for deep in ("count", "search"):
            results[backend, deep] = evaluate(
                x,
                y,
                recall_at=(1, 2, 10, 50, 200),
                knn_backend=backend,
                deep_recall=deep,
                lone_queries=lone_queries,
                clustering=False,
                knn_chunk_size=333,
                **flags,
            )
    ref = results["faiss", "search"]
    assert ref["knn_k"] == 200 and results["faiss", "count"]["knn_k"] < 20
    assert 0.3 < ref["recall@1"] < ref["recall@10"] < ref["recall@200"] < 1
    for key, m in results.items():
        for metric in ("recall@1", "recall@2", "recall@10", "recall@50", "recall@200"):
            assert m[metric] == ref[metric], (key, metric)
        for metric in ("precision@1", "r_precision", "map@r"):
            assert m[metric] == pytest.approx(ref[metric], abs=1e-12), (key, metric)
        assert m["num_queries"] == ref["num_queries"]


def test_auto_backend_is_recorded(worked_example, monkeypatch):
    from dml_pipelines.core.evaluation import knn as knn_mod

    x, y = worked_example
    monkeypatch.setattr(knn_mod, "bf16_is_fast", lambda: True)
    assert evaluate(x, y, clustering=False)["knn_backend"] == "bf16"
    monkeypatch.setattr(knn_mod, "bf16_is_fast", lambda: False)
    assert evaluate(x, y, clustering=False)["knn_backend"] == "faiss"
    with pytest.raises(ValueError, match=r"evaluation\.knn_backend: bf16 needs"):
        evaluate(x, y, knn_backend="bf16", normalization="none")


def test_non_finite_embeddings_are_a_one_line_error(worked_example):
    x, y = worked_example
    x = x.copy()
    x[3, 1] = np.nan
    x[5, 0] = np.inf
    with pytest.raises(
        ValueError, match=r"2 of 7 rows hold NaN or inf \(first: row 3\)"
    ):
        evaluate(x, y)


def test_option_errors_name_the_setting(worked_example):
    x, y = worked_example
    with pytest.raises(ValueError, match="knn_bakend"):
        evaluate(x, y, knn_bakend="torch")
    with pytest.raises(ValueError, match=r"evaluation\.lone_queries"):
        evaluate(x, y, lone_queries="keep")
    with pytest.raises(ValueError, match=r"evaluation\.deep_recall"):
        evaluate(x, y, deep_recall="deep")
    with pytest.raises(ValueError, match=r"evaluation\.inshop_set"):
        evaluate(x, y, inshop_set="gallery")
    with pytest.raises(ValueError, match=r"evaluation\.knn_chunk_size"):
        evaluate(x, y, knn_chunk_size=0)
    with pytest.raises(ValueError, match=r"evaluation\.avg_of_avgs"):
        evaluate(x, y, avg_of_avgs="yes")
    with pytest.raises(ValueError, match=r"normalization"):
        evaluate(x, y, normalization="cosine")


@pytest.mark.parametrize(
    "options",
    [
        {"knn_bakend": "torch"},
        {"seed": -1},
        {"avg_of_avgs": "yes"},
        {"knn_k": 0},
        {"clustering_backend": "kmeans"},
    ],
)
def test_evaluate_and_the_evaluation_block_share_one_schema(worked_example, options):
    """``evaluate(**options)`` refuses what the ``evaluation`` block refuses, with
    the same one line naming ``evaluation.<key>`` (core/evaluation/options.py)."""
    x, y = worked_example
    with pytest.raises(ValueError) as block:
        EvaluationOptions.model_validate(options)
    with pytest.raises(ValueError) as core:
        evaluate(x, y, **options)
    key = next(iter(options))
    assert str(core.value) == str(block.value)
    assert str(core.value).startswith(f"evaluation.{key}: ")
    assert "\n" not in str(core.value)


def test_explicit_k_below_r_max_is_an_error(worked_example):
    x, y = worked_example  # R_max = 2
    with pytest.raises(ValueError, match=r"evaluation\.knn_k=1 .*R_max=2"):
        evaluate(x, y, recall_at=(1,), knn_k=1, clustering=False)
    m = evaluate(x, y, recall_at=(1,), knn_k=5, clustering=False)
    assert m["map@r"] == pytest.approx(0.291667, abs=1e-6)


def test_without_faiss_everything_falls_back(monkeypatch, worked_example):
    monkeypatch.setitem(sys.modules, "faiss", None)
    x, y = worked_example
    m = evaluate(x, y, recall_at=(1, 2, 4), knn_backend="faiss")
    assert m["knn_backend"] == "torch" and m["clustering_backend"] == "sklearn"
    m = evaluate(x, y, recall_at=(1, 2, 4), normalization="none")  # auto: no bf16
    assert m["knn_backend"] == "torch" and m["clustering_backend"] == "sklearn"
    assert m["map@r"] == pytest.approx(0.291667, abs=1e-6)


def test_lipschitz_normalization_changes_the_ranking():
    # Long vectors are clipped to the unit ball, short ones are kept: under l2
    # queries 0 and 1 find the long vector 2 first, under lipschitz each other.
    x = np.array([[0.2, 0.0], [0.2, 0.15], [5.0, 0.5], [0.0, -3.0]], np.float32)
    y = np.array([0, 0, 1, 1])
    l2 = evaluate(x, y, recall_at=(1,), clustering=False)
    lip = evaluate(x, y, recall_at=(1,), normalization="lipschitz", clustering=False)
    none = evaluate(x, y, recall_at=(1,), normalization="none", clustering=False)
    assert lip["recall@1"] != l2["recall@1"]
    assert none["recall@1"] == 0.5 and lip["recall@1"] == 0.5 and l2["recall@1"] == 0.0


def _fold_sets(make_clustered, noises, seed=0):
    x, y = make_clustered(240, 30, 8, noise=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    sets = []
    for f, noise in enumerate(noises):
        emb = x + noise * rng.standard_normal(x.shape).astype(np.float32)
        sets.append(EmbeddingSet(emb, y, np.arange(240) + 100, fold=f))
    return sets


def test_mlrc_concatenation_of_identical_folds_equals_one_fold(make_clustered):
    one = _fold_sets(make_clustered, [0.3])[0]
    scaled = EmbeddingSet(one.embeddings * 3.0, one.labels, one.index, fold=0)
    out = evaluate_mlrc([one, scaled, one, one], recall_at=(1, 2, 4, 8), seed=0)
    single = evaluate(one.embeddings, one.labels, recall_at=(1, 2, 4, 8), seed=0)
    concat = out["mlrc_concatenated"]
    assert concat["protocol"] == "mlrc_concatenated"
    assert concat["embedding_dim"] == 4 * single["embedding_dim"]
    for key in (*RETRIEVAL_KEYS, "recall@8", "map@r", "num_queries"):
        assert concat[key] == pytest.approx(single[key], abs=1e-12), key
    for key in ("nmi", "ami", "f1"):
        assert concat[key] == pytest.approx(single[key], abs=1e-6), key


def test_mlrc_separated_averages_the_folds(make_clustered):
    sets = _fold_sets(make_clustered, [0.2, 0.4, 0.6, 0.8])
    out = evaluate_mlrc(sets, recall_at=(1, 2), clustering=False)
    sep = out["mlrc_separated"]
    singles = [
        evaluate(s.embeddings, s.labels, recall_at=(1, 2), clustering=False)
        for s in sets
    ]
    assert sep["protocol"] == "mlrc_separated"
    assert [f["fold"] for f in sep["folds"]] == [0, 1, 2, 3]
    for key in ("recall@1", "recall@2", "precision@1", "r_precision", "map@r"):
        assert sep[key] == pytest.approx(np.mean([s[key] for s in singles]), abs=1e-12)
        assert [f[key] for f in sep["folds"]] == [s[key] for s in singles]
    assert len({s["map@r"] for s in singles}) == 4  # the folds really differ
    # Concatenation = evaluate on the re-normalised concatenation.
    concat = np.concatenate([normalize(s.embeddings, "l2") for s in sets], axis=1)
    want = evaluate(concat, sets[0].labels, recall_at=(1, 2), clustering=False)
    assert out["mlrc_concatenated"]["map@r"] == pytest.approx(want["map@r"], abs=1e-12)


def test_mlrc_aligns_sets_by_index_and_checks_them(make_clustered):
    sets = _fold_sets(make_clustered, [0.2, 0.4])
    base = evaluate_mlrc(sets, recall_at=(1,), clustering=False)
    perm = np.random.default_rng(1).permutation(240)
    s1 = sets[1]
    shuffled = EmbeddingSet(
        s1.embeddings[perm], s1.labels[perm], s1.index[perm], fold=1
    )
    again = evaluate_mlrc([sets[0], shuffled], recall_at=(1,), clustering=False)
    for proto in ("mlrc_separated", "mlrc_concatenated"):
        assert again[proto]["map@r"] == pytest.approx(base[proto]["map@r"], abs=1e-12)
    other = EmbeddingSet(s1.embeddings, s1.labels, s1.index + 1)
    with pytest.raises(ValueError, match="index"):
        evaluate_mlrc([sets[0], other], clustering=False)
    with pytest.raises(ValueError, match="normalization"):
        evaluate_mlrc(sets, normalization="none")


def test_per_class_output_is_a_dataframe(make_clustered):
    x, y = make_clustered(100, 10, 4, seed=2)
    _, table = evaluate(x, y, return_per_class=True, clustering=False)
    assert (
        isinstance(table, pd.DataFrame)
        and table["num_queries"].sum() == 100 - (np.bincount(y) == 1).sum()
    )


def test_cluster_set_uses_the_evaluators_rows():
    """Clustering of an artifact equals the clustering inside ``evaluate`` (same
    rows, same k-means), in leave-one-out and query → gallery modes."""
    import numpy as np

    from dml_pipelines.core.evaluation import EmbeddingSet
    from dml_pipelines.core.evaluation.report import cluster_set

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 5)
    x = rng.normal(size=(30, 8)).astype(np.float32) + labels[:, None]
    is_query = np.tile([True, True, False, False, False], 6)
    for kw in ({}, {"is_query": is_query, "is_gallery": ~is_query}):
        for inshop_set in ("union", "query"):
            es = EmbeddingSet(x, labels, np.arange(30), **kw)
            full = evaluate(x, labels, inshop_set=inshop_set, **kw)
            got = cluster_set(es, inshop_set=inshop_set)
            assert {k: got[k] for k in ("nmi", "ami", "f1")} == {
                k: full[k] for k in ("nmi", "ami", "f1")
            }
