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


def _clustered_sets(n_sets, n_classes=60, per_class=8, seed=0):
    """``n_sets`` runs' test embeddings of well-separated classes."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_classes), per_class)
    out = {}
    for i in range(n_sets):
        centres = rng.normal(size=(n_classes, 32)) * 4
        x = centres[labels] + rng.normal(size=(len(labels), 32))
        out[f"m{i} seed0"] = EmbeddingSet(
            embeddings=x.astype(np.float32),
            labels=labels,
            index=np.arange(len(labels)),
            normalization="none",
        )
    return out


def _pixels(fig):
    return (fig.get_size_inches() * fig.dpi).round().astype(int).tolist()


def test_six_runs_are_laid_out_in_rows_at_most_2000_px_wide():
    from dml_pipelines.core.reporting.plots import projection

    hist = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0]})
    curves = training_curves({f"m{i}/seed0": hist for i in range(6)}, "d")
    width, height = _pixels(curves)
    assert width <= 2000 and height < width, (width, height)
    assert len([ax for ax in curves.axes if ax.get_visible()]) == 6
    fig = projection(_clustered_sets(6), "d", classes=10, seed=0)
    width, _ = _pixels(fig)
    assert width <= 2000 and len(fig.axes) == 6
    fig = projection(_clustered_sets(4), "d", classes=10, seed=0)
    assert sum(ax.get_visible() for ax in fig.axes) == 4  # 2 rows of 3, 2 hidden


def test_projection_shows_a_few_classes_as_separate_clusters():
    from dml_pipelines.core.reporting.plots import projection

    sets = _clustered_sets(2)
    fig = projection(sets, "d", method="tsne", classes=10, seed=0)
    (legend,) = fig.legends
    shown = [int(t.get_text()) for t in legend.get_texts()]
    assert len(shown) == 10 and len(set(shown)) == 10
    assert "t-SNE" in fig._suptitle.get_text()
    assert "10 of 60 classes" in fig._suptitle.get_text()
    for ax in fig.axes:
        groups = [c.get_offsets() for c in ax.collections]
        assert [len(g) for g in groups] == [8] * 10  # every image of those classes
        xy = np.concatenate(groups)
        y = np.repeat(np.arange(10), 8)
        d = ((xy[:, None] - xy[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        assert (y[d.argmin(1)] == y).mean() > 0.95  # classes come out separated
