"""Report nodes: thin adapters from catalog entries to ``core.reporting``."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from dml_pipelines.core.reporting.params import ReportParams, grid_lists
from dml_pipelines.params import DataParams

PAPER_RESULTS = "conf/base/paper_results.yml"
GRID = "conf/grid.yaml"
_TEST_SET = re.compile(r"^(?P<method>[^/]+)/seed(?P<seed>\d+)/test_embeddings$")


def _runs_frame(all_runs: dict[str, Any]) -> pd.DataFrame:
    frames = [v() if callable(v) else v for _, v in sorted(all_runs.items())]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def await_runs(*outputs: Any) -> int:
    """Ordering only: takes the runs' final outputs so that the nodes reading
    run files from disk run after them (``__default__``).

    Returns:
        How many outputs it waited for.
    """
    return len(outputs)


def collect_runs(run_files: dict[str, Any], data: DataParams) -> dict[str, Any]:
    """The runs table of the run's dataset: each result's metrics beside its
    protocol card.

    Args:
        run_files: the JSON files under ``data/08_reporting/<dataset>/``.
        data: the run's dataset.

    Returns:
        ``{"<dataset>/runs": frame}`` (a partition of ``report.all_runs``).
    """
    from dml_pipelines.core.reporting.runs import collect_runs as collect

    frame = collect(data.name, run_files, f"data/08_reporting/{data.name}")
    return {f"{data.name}/runs": frame}


def _in_grid(grid: dict[str, Any]) -> tuple[set[str], set[int]]:
    """The grid's methods and seeds: the runs the figures show (a run made by
    hand with another seed or method is in ``runs.csv`` but not drawn)."""
    g = grid_lists(grid, GRID)
    return set(g["methods"]), {int(s) for s in g["seeds"]}


def plot_recall_curves(
    all_runs: dict[str, Any], data: DataParams, grid: dict[str, Any]
) -> Figure:
    """Recall@K against K for every grid method of the run's dataset (mean over
    the grid's seeds).

    Args:
        all_runs: every dataset's runs table (partitions).
        data: the run's dataset.
        grid: ``conf/grid.yaml`` (the methods and seeds drawn).

    Returns:
        The figure.
    """
    from dml_pipelines.core.reporting.plots import recall_curves

    mine = {k: v for k, v in all_runs.items() if k.split("/")[0] == data.name}
    runs = _runs_frame(mine)
    if runs.empty:
        runs = pd.DataFrame(columns=["dataset", "protocol", "method", "seed"])
    methods, seeds = _in_grid(grid)
    runs = runs[runs["method"].isin(methods) & runs["seed"].isin(seeds)]
    return recall_curves(runs, data.name)


_HISTORY = re.compile(r"^(?P<method>[^/]+)/seed(?P<seed>\d+)(/fold\d+)?$")


def plot_training_curves(
    run_histories: dict[str, Any], data: DataParams, grid: dict[str, Any]
) -> Figure:
    """Training loss (and validation metrics) per epoch of every grid run.

    Args:
        run_histories: the ``training_history.csv`` files of the dataset.
        data: the run's dataset.
        grid: ``conf/grid.yaml`` (the methods and seeds drawn).

    Returns:
        The figure.
    """
    from dml_pipelines.core.evaluation.aggregate import load_all, select_partitions
    from dml_pipelines.core.reporting.plots import training_curves

    methods, seeds = _in_grid(grid)
    runs = select_partitions(run_histories, r"^(.+)/training_history$")
    shown = {}
    for run, value in runs.items():
        m = _HISTORY.match(run)
        if m and m["method"] in methods and int(m["seed"]) in seeds:
            shown[run] = value
    return training_curves(load_all(shown), data.name)


def _figure_sets(
    run_embeddings: dict[str, Any], seed: int, grid: dict[str, Any]
) -> dict[str, Any]:
    """``{method: test embeddings}`` of every grid method at ``seed`` (else the
    lowest grid seed present)."""
    methods, seeds = _in_grid(grid)
    found: dict[str, dict[int, Any]] = {}
    for pid, value in run_embeddings.items():
        m = _TEST_SET.match(pid.strip("/"))
        if m and m["method"] in methods and int(m["seed"]) in seeds:
            found.setdefault(m["method"], {})[int(m["seed"])] = value
    out = {}
    for method, by_seed in sorted(found.items()):
        s = seed if seed in by_seed else min(by_seed)
        value = by_seed[s]
        out[f"{method} seed{s}"] = value() if callable(value) else value
    return out


def plot_projection(
    run_embeddings: dict[str, Any],
    data: DataParams,
    report: ReportParams,
    grid: dict[str, Any],
) -> Figure:
    """2-D projection of every grid method's test embeddings of a few classes,
    coloured by class.

    Args:
        run_embeddings: the ``.npz`` artifacts of the dataset (partitions).
        data: the run's dataset.
        report: the ``report`` block (projection, classes, points, seed).
        grid: ``conf/grid.yaml`` (the methods and seeds drawn).

    Returns:
        The figure.
    """
    from dml_pipelines.core.reporting.plots import projection

    sets = _figure_sets(run_embeddings, report.figure_seed, grid)
    return projection(
        sets,
        data.name,
        method=report.projection,
        classes=report.projection_classes,
        max_points=report.max_points,
        seed=report.figure_seed,
    )


def plot_retrieval_sheets(
    run_embeddings: dict[str, Any],
    image_cache: dict[str, Any],
    data: DataParams,
    report: ReportParams,
    grid: dict[str, Any],
) -> dict[str, Figure]:
    """Per grid method: queries with their nearest neighbours, correct ones
    framed green and wrong ones red.

    Args:
        run_embeddings: the ``.npz`` artifacts of the dataset (partitions).
        image_cache: the prepared cache's manifest (its directory).
        data: the run's dataset.
        report: the ``report`` block (queries, neighbours, seed).
        grid: ``conf/grid.yaml`` (the methods and seeds drawn).

    Returns:
        ``{"<method>.png": figure}``.
    """
    from dml_pipelines.core.data.cache import ImageCache
    from dml_pipelines.core.reporting.plots import retrieval_sheet

    cache = ImageCache.open(image_cache["directory"])

    def image_of(row_id: int):
        return cache.image(int(cache.positions_of([row_id])[0]))

    r = report.retrieval
    return {
        f"{title.split()[0]}.png": retrieval_sheet(
            es,
            image_of,
            f"{title} on {data.name}",
            n_queries=r.queries,
            k=r.neighbours,
            seed=r.seed,
        )
        for title, es in _figure_sets(run_embeddings, report.figure_seed, grid).items()
    }


def _as_written(block: Any) -> Any:
    """A method block as its parameters file writes it: Kedro hands the whole
    ``parameters`` dict with the blocks of typed nodes already validated into
    config models when such nodes run beside the report (``__default__``,
    ``--pipelines=<method>,report``)."""
    if hasattr(block, "model_dump"):
        return block.model_dump(mode="json", exclude_unset=True)
    return block


def build_paper_tables(
    all_runs: dict[str, Any],
    paper_results: dict[str, Any],
    grid: dict[str, Any],
    parameters: dict[str, Any],
    report: ReportParams,
) -> tuple[pd.DataFrame, str]:
    """Every paper table: reported beside reproduced, matched on the protocol
    card; rows without a matching run carry the command that produces it.

    Args:
        all_runs: every dataset's runs table (partitions).
        paper_results: ``conf/base/paper_results.yml``.
        grid: ``conf/grid.yaml`` (the seeds of the commands).
        parameters: all parameters (the method blocks, for the commands).
        report: the ``report`` block (pipeline aliases, implied row settings).

    Returns:
        The long CSV frame and the Markdown tables.
    """
    from dml_pipelines.core.methods.configs import method_configs
    from dml_pipelines.core.reporting.tables import (
        paper_table_rows,
        paper_tables_markdown,
    )

    seeds = grid_lists(grid, GRID)["seeds"]
    blocks = {
        m: _as_written(parameters[m]) for m in method_configs() if m in parameters
    }
    rows = paper_table_rows(
        paper_results,
        _runs_frame(all_runs),
        seeds=seeds,
        method_blocks=blocks,
        aliases={k: v.model_dump() for k, v in report.aliases.items()},
        row_settings=report.row_settings,
        source=PAPER_RESULTS,
    )
    return rows, paper_tables_markdown(paper_results, rows)


def build_combined_table(
    all_runs: dict[str, Any], grid: dict[str, Any]
) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """All methods on each dataset of the grid (conventional protocol), mean ±
    std over seeds with a 95% CI from three seeds.

    Args:
        all_runs: every dataset's runs table (partitions).
        grid: ``conf/grid.yaml``.

    Returns:
        The long CSV frame, the Markdown table and a DVC metrics summary
        (``dataset -> method -> metric -> {mean, std, n}``, percent).
    """
    from dml_pipelines.core.reporting.tables import (
        combined_markdown,
        combined_table,
        summary_metrics,
    )

    g = grid_lists(grid, GRID)
    combined = combined_table(
        _runs_frame(all_runs),
        datasets=g["datasets"],
        methods=g["methods"],
        seeds=g["seeds"],
    )
    return combined, combined_markdown(combined), summary_metrics(combined)
