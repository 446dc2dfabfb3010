"""The evaluation half of the method template (un-namespaced): retrieval on the
trained and untrained embeddings, clustering, the metrics file."""

from kedro.pipeline import Node, Pipeline

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.pipelines.evaluation import nodes as ev
from dml_pipelines.pipelines.typing import typed


def create_pipeline(config_cls=MethodConfig, **kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                ev.evaluate_retrieval,
                [
                    "test_embeddings",
                    "params:data",
                    "params:datasets",
                    "params:evaluation",
                ],
                ["retrieval_metrics", "per_class"],
                name="evaluate_retrieval",
            ),
            Node(
                ev.evaluate_untrained,
                [
                    "untrained_embeddings",
                    "params:data",
                    "params:datasets",
                    "params:evaluation",
                ],
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
                    "params:method",
                    "params:data",
                ],
                "metrics",
                name="report_metrics",
            ),
            Node(
                typed(ev.write_protocol_card, config_cls),
                ["image_cache", "params:method", "params:data"],
                "protocol_card",
                name="write_protocol_card",
            ),
        ],
        tags="evaluation",
    )
