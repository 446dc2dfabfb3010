"""The evaluation half of the method template (un-namespaced): retrieval on the
trained and untrained embeddings, clustering, the metrics file, the protocol
card and the mean ± std over seeds; and the MLRC pipeline over fold models."""

from kedro.pipeline import Node, Pipeline

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.pipelines.evaluation import nodes as ev
from dml_pipelines.pipelines.typing import typed

RETRIEVAL_PARAMS = ["params:data", "params:datasets", "params:evaluation"]


def create_pipeline(config_cls=MethodConfig, **kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                ev.evaluate_retrieval,
                ["test_embeddings", *RETRIEVAL_PARAMS],
                ["retrieval_metrics", "per_class"],
                name="evaluate_retrieval",
            ),
            Node(
                ev.evaluate_untrained,
                ["untrained_embeddings", *RETRIEVAL_PARAMS],
                "untrained_metrics",
                name="evaluate_untrained",
            ),
            Node(
                ev.cluster_embeddings,
                ["test_embeddings", "params:evaluation"],
                "clustering_metrics",
                name="cluster_embeddings",
            ),
            Node(
                typed(ev.report_metrics, config_cls),
                [
                    "retrieval_metrics",
                    "clustering_metrics",
                    "untrained_metrics",
                    "model_state",
                    "params:method",
                    "params:data",
                    "params:run",
                ],
                "metrics",
                name="report_metrics",
            ),
            Node(
                typed(ev.write_protocol_card, config_cls),
                [
                    "model_state",
                    "image_cache",
                    "params:method",
                    "params:data",
                    "params:datasets",
                    "params:run",
                ],
                "protocol_card",
                name="write_protocol_card",
            ),
        ],
        tags="evaluation",
    ) + Pipeline(
        [
            Node(
                ev.aggregate_seeds,
                ["seed_metrics", "metrics"],
                "seed_summary",
                name="aggregate_seeds",
            )
        ],
        tags="aggregate",
    )


def create_mlrc_pipeline(**kwargs) -> Pipeline:
    """``evaluate_mlrc``: the 4 fold models of one seed, separated and
    concatenated (run after the folds: ``--params run.fold=F``)."""
    return Pipeline(
        [
            Node(
                ev.evaluate_mlrc,
                ["fold_embeddings", *RETRIEVAL_PARAMS],
                "mlrc_metrics",
                name="evaluate_mlrc",
            )
        ],
        tags="mlrc",
    )
