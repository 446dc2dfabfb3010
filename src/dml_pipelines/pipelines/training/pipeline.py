"""The method template, instantiated once per method and baseline under a Kedro
namespace equal to its name. Wiring only (no torch on the import path)."""

from kedro.pipeline import Node, Pipeline

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.methods.configs import method_configs
from dml_pipelines.pipelines.data.pipeline import create_pipeline as data_pipeline
from dml_pipelines.pipelines.evaluation.pipeline import (
    create_mlrc_pipeline,
)
from dml_pipelines.pipelines.evaluation.pipeline import (
    create_pipeline as evaluation_pipeline,
)
from dml_pipelines.pipelines.training import nodes as tr
from dml_pipelines.pipelines.typing import typed

#: shared parameters every namespaced instance reads un-prefixed
SHARED_PARAMS = ("data", "datasets", "paths", "evaluation", "run")


def create_pipeline(config_cls=MethodConfig, **kwargs) -> Pipeline:
    """The training half of the method template (un-namespaced): resolve the
    augmentation, train, embed with the trained and the untrained network."""
    p = "params:method"
    embed = typed(tr.extract_embeddings, config_cls)
    common = ["index_table", "image_cache", p, "params:data", "params:run"]
    return Pipeline(
        [
            Node(
                typed(tr.build_augmentation, config_cls),
                ["image_cache", p, "params:data", "params:run"],
                "augmentation",
                name="build_augmentation",
            ),
            Node(
                typed(tr.train_method, config_cls),
                [
                    "index_table",
                    "image_cache",
                    "augmentation",
                    p,
                    "params:data",
                    "params:datasets",
                    "params:paths",
                    "params:run",
                ],
                ["model_state", "training_history"],
                name="train_method",
            ),
            Node(
                embed,
                [*common, "model_state"],
                "test_embeddings",
                name="extract_embeddings",
            ),
            Node(
                embed,
                common,
                "untrained_embeddings",
                name="extract_untrained_embeddings",
            ),
        ],
        tags="training",
    )


def _namespaced(name: str, pipe: Pipeline) -> Pipeline:
    mapping = {
        "params:method": f"params:{name}",
        **{f"params:{k}": f"params:{k}" for k in SHARED_PARAMS},
    }
    free = pipe.inputs()
    return Pipeline(
        pipe,
        namespace=name,
        inputs={"index_table", "image_cache"} & free,
        parameters={k: v for k, v in mapping.items() if k in free},
    )


def create_method_pipeline(name: str) -> Pipeline:
    """The template under namespace ``name``; shared inputs stay un-prefixed and
    ``params:method`` maps to the method's block ``params:<name>``."""
    config_cls = method_configs()[name]
    template = create_pipeline(config_cls) + evaluation_pipeline(config_cls)
    return data_pipeline() + _namespaced(name, template)


def create_method_pipelines() -> dict[str, Pipeline]:
    """One pipeline per registered method and baseline, and ``<name>_mlrc`` (the
    MLRC evaluation over its fold models)."""
    out = {}
    for name in method_configs():
        out[name] = create_method_pipeline(name)
        out[f"{name}_mlrc"] = _namespaced(name, create_mlrc_pipeline())
    return out
