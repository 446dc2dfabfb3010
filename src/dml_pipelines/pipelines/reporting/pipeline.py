"""The ``report`` pipeline. Wiring only (no torch on the import path).

Tag ``report_dataset`` (one dataset, ``--params dataset=<name>``): the runs
table (metrics beside protocol cards) and the dataset's figures. Tag ``report``:
the paper tables and the combined table over every dataset's runs table.

The report reads the runs' files from disk, so nothing ties it to the nodes that
write them. ``create_gated_pipeline(methods)`` adds that tie (``__default__``
uses it, so that one ``kedro run`` reports the runs it has just made and
kedro-viz draws the lineage into the report): a node ``<method>.finish_run`` per
method waits for the run's last outputs, ``report.await_runs`` waits for them
all, and every report node that reads run files waits for ``await_runs``.
"""

import functools
import inspect
from collections.abc import Callable, Iterable

from kedro.pipeline import Node, Pipeline

from dml_pipelines.pipelines.reporting import nodes as rp

#: the ordering-only dataset of ``await_runs`` (a MemoryDataset)
FINISHED = "runs_finished"


def _after(func: Callable, gate: bool) -> tuple[Callable, list[str]]:
    """``func`` and the extra inputs it takes: with ``gate``, one trailing input
    ``runs_finished`` that only orders the node after ``await_runs``."""
    if not gate:
        return func, []

    @functools.wraps(func)
    def wrapper(*args):
        return func(*args[:-1])

    sig = inspect.signature(func)
    extra = inspect.Parameter(FINISHED, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    wrapper.__signature__ = sig.replace(parameters=[*sig.parameters.values(), extra])
    return wrapper, [FINISHED]


#: a method run's last outputs (every other file of the run is written before)
RUN_OUTPUTS = ("seed_summary", "protocol_card")


def create_gated_pipeline(methods: Iterable[str]) -> Pipeline:
    """The report pipeline run after the runs of ``methods`` (their pipelines
    are added beside it): ``<method>.finish_run`` per method (ordering only; its
    output ``<method>_run_finished``), then the report with ``after`` those."""
    markers = []
    for m in methods:
        markers.append(
            Node(
                rp.await_runs,
                [f"{m}.{out}" for out in RUN_OUTPUTS],
                f"{m}_run_finished",
                name="finish_run",
                namespace=m,
                tags="report_dataset",
            )
        )
    after = [n.outputs[0] for n in markers]
    return Pipeline(markers) + create_pipeline(after=after)


def create_pipeline(after: Iterable[str] = (), **kwargs) -> Pipeline:
    """The report pipeline; ``after``: datasets without a namespace (e.g.
    ``contrastive_c1_run_finished``) whose producers must run before any node
    that reads run files (``await_runs`` takes them)."""
    after = sorted(after)
    gate = bool(after)
    collect, extra = _after(rp.collect_runs, gate)
    training_curves, _ = _after(rp.plot_training_curves, gate)
    projection, _ = _after(rp.plot_projection, gate)
    sheets, _ = _after(rp.plot_retrieval_sheets, gate)
    wait = [Node(rp.await_runs, after, FINISHED, name="await_runs")] if gate else []
    per_dataset = Pipeline(
        [
            *wait,
            Node(
                collect,
                ["run_files", "params:data", *extra],
                "all_runs",
                name="collect_runs",
            ),
            Node(
                rp.plot_recall_curves,
                ["all_runs", "params:data", "grid"],
                "recall_curves",
                name="plot_recall_curves",
            ),
            Node(
                training_curves,
                ["run_histories", "params:data", "grid", *extra],
                "training_curves",
                name="plot_training_curves",
            ),
            Node(
                projection,
                ["run_embeddings", "params:data", "params:report", "grid", *extra],
                "projection",
                name="plot_projection",
            ),
            Node(
                sheets,
                [
                    "run_embeddings",
                    "image_cache",
                    "params:data",
                    "params:report",
                    "grid",
                    *extra,
                ],
                "retrieval_sheets",
                name="plot_retrieval_sheets",
            ),
        ],
        tags="report_dataset",
    )
    tables = Pipeline(
        [
            Node(
                rp.build_paper_tables,
                [
                    "all_runs",
                    "paper_results",
                    "grid",
                    "parameters",
                    "params:report",
                ],
                ["paper_tables", "paper_tables_md"],
                name="build_paper_tables",
            ),
            Node(
                rp.build_combined_table,
                ["all_runs", "grid"],
                ["combined", "combined_md", "summary"],
                name="build_combined_table",
            ),
        ],
        tags="report",
    )
    # datasets and nodes live under the namespace ``report`` (catalog entries
    # ``report.<name>``); the cache manifest and shared parameters stay global
    return Pipeline(
        per_dataset + tables,
        namespace="report",
        inputs={"image_cache", *after},
        parameters={"params:data", "params:report"},
    )
