"""The method template, instantiated once per method and baseline under a Kedro
namespace equal to its name. Wiring only (no torch on the import path)."""

from kedro.pipeline import Node, Pipeline

from dml_pipelines.core.config import METHOD_CONFIGS, MethodConfig
from dml_pipelines.pipelines.data.pipeline import create_pipeline as data_pipeline
from dml_pipelines.pipelines.evaluation.pipeline import (
    create_pipeline as evaluation_pipeline,
)
from dml_pipelines.pipelines.training import nodes as tr
from dml_pipelines.pipelines.typing import typed


def create_pipeline(config_cls=MethodConfig, **kwargs) -> Pipeline:
    """The training half of the method template (un-namespaced): train, embed
    with the trained and the untrained network."""
    p = "params:method"
    return Pipeline(
        [
            Node(
                typed(tr.train_method, config_cls),
                [
                    "index_table",
                    "image_cache",
                    p,
                    "params:data",
                    "params:datasets",
                    "params:paths",
                ],
                ["model_state", "training_history"],
                name="train_method",
            ),
            Node(
                typed(tr.extract_embeddings, config_cls),
                ["model_state", "index_table", "image_cache", p, "params:data"],
                "test_embeddings",
                name="extract_embeddings",
            ),
            Node(
                typed(tr.extract_untrained_embeddings, config_cls),
                ["index_table", "image_cache", p, "params:data"],
                "untrained_embeddings",
                name="extract_untrained_embeddings",
            ),
        ],
        tags="training",
    )


def create_method_pipeline(name: str) -> Pipeline:
    """The template under namespace ``name``; shared inputs stay un-prefixed and
    ``params:method`` maps to the method's block ``params:<name>``."""
    config_cls = METHOD_CONFIGS[name]
    template = Pipeline(
        create_pipeline(config_cls) + evaluation_pipeline(config_cls),
        namespace=name,
        inputs={"index_table", "image_cache"},
        parameters={
            "params:method": f"params:{name}",
            "params:data": "params:data",
            "params:datasets": "params:datasets",
            "params:paths": "params:paths",
            "params:evaluation": "params:evaluation",
        },
    )
    return data_pipeline() + template


def create_method_pipelines() -> dict[str, Pipeline]:
    """One pipeline per registered method and baseline."""
    return {name: create_method_pipeline(name) for name in METHOD_CONFIGS}
