"""Report figures: the retrieval sheet frames neighbours by class, the kNN of the
sheet (leave-one-out and query -> gallery), the projection and the curves."""

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from dml_pipelines.core.evaluation.embeddings import EmbeddingSet
from dml_pipelines.core.reporting.plots import (
    CORRECT,
    WRONG,
    nearest_neighbours,
    project_2d,
    recall_curves,
    retrieval_sheet,
    training_curves,
)


def _set(**kw):
    # 1-d positions on a line: neighbours are known by hand
    x = np.array([[0.0, 1.0], [0.1, 1.0], [0.3, 1.0], [2.0, 1.0], [2.1, 1.0]])
    base = dict(
        embeddings=x.astype(np.float32),
        labels=np.array([0, 0, 1, 1, 1]),
        index=np.array([10, 11, 12, 13, 14]),
        normalization="none",
    )
    return EmbeddingSet(**{**base, **kw})


def test_nearest_neighbours_leave_one_out_and_query_gallery():
    nbrs, dist = nearest_neighbours(_set(), np.array([0, 3]), 2)
    assert nbrs.tolist() == [[1, 2], [4, 2]]
    assert dist[0].tolist() == pytest.approx([0.1, 0.3])
    gallery = np.array([False, False, True, True, True])
    es = _set(is_query=~gallery, is_gallery=gallery)
    nbrs, _ = nearest_neighbours(es, np.array([0]), 2)
    assert nbrs.tolist() == [[2, 3]]


def test_retrieval_sheet_frames_correct_green_and_wrong_red():
    seen = []

    def image_of(row_id):
        seen.append(row_id)
        return np.full((4, 4, 3), row_id, np.uint8)

    fig = retrieval_sheet(_set(), image_of, "t", n_queries=5, k=2, seed=0)
    axes = np.array(fig.axes).reshape(5, 3)
    labels = [0, 0, 1, 1, 1]
    nbrs, _ = nearest_neighbours(_set(), np.arange(5), 2)
    for q in range(5):
        for c, pos in enumerate(nbrs[q], start=1):
            edge = to_hex(axes[q, c].spines["top"].get_edgecolor())
            want = CORRECT if labels[pos] == labels[q] else WRONG
            assert edge == want, (q, c)
    # query 2 (label 1) is nearest to 1 (label 0): a red frame is drawn
    assert to_hex(axes[2, 1].spines["top"].get_edgecolor()) == WRONG
    assert sorted(set(seen)) == [10, 11, 12, 13, 14]
    assert "neighbours correct" in fig._suptitle.get_text()


def test_pca_projection_keeps_the_main_direction():
    rng = np.random.default_rng(0)
    x = np.outer(rng.normal(size=200), [3.0, 0, 0, 0]) + rng.normal(0, 0.01, (200, 4))
    xy = project_2d(x, "pca")
    assert abs(np.corrcoef(xy[:, 0], x[:, 0])[0, 1]) > 0.999
    with pytest.raises(ValueError, match="projection: invalid method 'umap'"):
        project_2d(x, "umap")


def test_curves_draw_one_line_per_method_and_run():
    runs = pd.DataFrame(
        {
            "dataset": ["d"] * 3,
            "protocol": ["conventional"] * 3,
            "method": ["a", "a", "b"],
            "recall@1": [0.5, 0.6, 0.7],
            "recall@2": [0.7, 0.8, 0.9],
        }
    )
    fig = recall_curves(runs, "d")
    means = sorted(tuple(c.lines[0].get_ydata()) for c in fig.axes[0].containers)
    assert means == [pytest.approx((55.0, 75.0)), pytest.approx((70.0, 90.0))]
    hist = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0], "val/map@r": [0.1, 0.2]})
    fig = training_curves({"a/seed0": hist, "a/seed1": hist, "b/seed0": hist}, "d")
    assert len([ax for ax in fig.axes if ax.get_xlabel() == "epoch"]) == 2
    assert any(ax.get_ylabel() == "validation (dashed)" for ax in fig.axes)
