"""The ``report`` pipeline. Wiring only (no torch on the import path).

Tag ``report_dataset`` (one dataset, ``--params dataset=<name>``): the runs
table (metrics beside protocol cards) and the dataset's figures. Tag ``report``:
the paper tables and the combined table over every dataset's runs table.
"""

from kedro.pipeline import Node, Pipeline

from dml_pipelines.pipelines.reporting import nodes as rp


def create_pipeline(**kwargs) -> Pipeline:
    per_dataset = Pipeline(
        [
            Node(
                rp.collect_runs,
                ["run_files", "params:data"],
                "all_runs",
                name="collect_runs",
            ),
            Node(
                rp.plot_recall_curves,
                ["all_runs", "params:data"],
                "recall_curves",
                name="plot_recall_curves",
            ),
            Node(
                rp.plot_training_curves,
                ["run_histories", "params:data"],
                "training_curves",
                name="plot_training_curves",
            ),
            Node(
                rp.plot_projection,
                ["run_embeddings", "params:data", "params:report"],
                "projection",
                name="plot_projection",
            ),
            Node(
                rp.plot_retrieval_sheets,
                [
                    "run_embeddings",
                    "image_cache",
                    "params:data",
                    "params:report",
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
        inputs={"image_cache"},
        parameters={"params:data", "params:report"},
    )
