"""The report's figures draw the grid's runs only (``conf/grid.yaml`` methods
and seeds): a run made by hand (another seed or method) stays out of them.
The node functions are called as the ``report`` pipeline calls them."""

import numpy as np
import pandas as pd
import pytest

from dml_pipelines.core.evaluation.embeddings import EmbeddingSet
from dml_pipelines.core.reporting.params import ReportParams
from dml_pipelines.params import DataParams
from dml_pipelines.pipelines.reporting import nodes

GRID = {"datasets": ["digits"], "methods": ["contrastive_c1", "xbn"], "seeds": [0, 1]}
RUNS = ["contrastive_c1/seed0", "contrastive_c1/seed1", "contrastive_c1/seed7",
        "xbn/seed1", "triplet/seed0"]  # fmt: skip


@pytest.fixture(autouse=True)
def _in_project():
    """No scratch Kedro project: the nodes are called directly."""


@pytest.fixture
def data():
    return DataParams.model_validate({"name": "digits", "cache_dir": "unused"})


def test_training_curves_draw_the_grid_runs_only(data):
    hist = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0]})
    parts = {f"{r}/training_history": (lambda: hist) for r in RUNS}
    fig = nodes.plot_training_curves(parts, data, GRID)
    drawn = {
        (ax.get_title().split()[0], line.get_label())
        for ax in fig.axes
        for line in ax.get_lines()
    }
    assert drawn == {
        ("contrastive_c1", "seed0"),
        ("contrastive_c1", "seed1"),
        ("xbn", "seed1"),
    }


def test_recall_curves_average_the_grid_seeds_only(data):
    frame = pd.DataFrame(
        [
            {"dataset": "digits", "protocol": "conventional", "method": m,
             "seed": int(s.removeprefix("seed")), "recall@1": r1}
            for (m, s), r1 in zip(
                (r.split("/") for r in RUNS), [0.5, 0.7, 0.0, 0.4, 0.9], strict=True
            )
        ]
    )  # fmt: skip
    fig = nodes.plot_recall_curves({"digits/runs": frame}, data, GRID)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert labels == ["contrastive_c1", "xbn"]
    means = [c.lines[0].get_ydata()[0] for c in fig.axes[0].containers]
    assert means == pytest.approx([60.0, 40.0])  # seed 7's 0.0 left out


def test_projection_and_sheets_take_the_figure_seed_of_the_grid(data):
    rng = np.random.default_rng(0)
    es = EmbeddingSet(
        embeddings=rng.normal(size=(40, 8)).astype(np.float32),
        labels=np.repeat(np.arange(4), 10),
        index=np.arange(40),
        normalization="l2",
    )
    parts = {f"{r}/test_embeddings": (lambda: es) for r in RUNS}
    report = ReportParams(figure_seed=7)  # not a grid seed: the lowest grid seed
    sets = nodes._figure_sets(parts, report.figure_seed, GRID)
    assert sorted(sets) == ["contrastive_c1 seed0", "xbn seed1"]
    fig = nodes.plot_projection(parts, data, report, GRID)
    assert sorted(ax.get_title().split(":")[0] for ax in fig.axes) == sorted(sets)
