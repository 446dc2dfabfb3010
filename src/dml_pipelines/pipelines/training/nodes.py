"""Training and embedding nodes: thin adapters over ``dml_pipelines.core.engine``.

The ``params`` argument of each node is re-annotated per method with that method's
config model (see ``pipeline.typed``) so Kedro validates it before any node runs.
"""

from pathlib import Path
from typing import Any

import pandas as pd

from dml_pipelines.core.config import (
    DataParams,
    DatasetTable,
    MethodConfig,
    PathsParams,
)


def train_method(
    index_table: pd.DataFrame,
    image_cache: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
    datasets: DatasetTable,
    paths: PathsParams,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train the method on the training split, with checkpoints and resume.

    Args:
        index_table: the dataset's index table.
        image_cache: the cache manifest of the ``data`` pipeline.
        params: the method block (validated config).
        data: the run's dataset.
        datasets: every dataset's block (the K list for validation).
        paths: where checkpoints live (``<models>/<dataset>/<method>/checkpoints``).

    Returns:
        The model state (weights + resolved config) and the per-epoch history.
    """
    from dml_pipelines.core.data.cache import ImageCache
    from dml_pipelines.core.engine.run import train_model

    ckpt = Path(paths.models) / data.name / params.method / "checkpoints"
    return train_model(
        index_table,
        ImageCache.open(image_cache["directory"]),
        params.for_dataset(data.name),
        checkpoint_dir=ckpt,
        recall_at=tuple(datasets.entry(data.name).recall_at),
    )


def extract_embeddings(
    model_state: dict[str, Any],
    index_table: pd.DataFrame,
    image_cache: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
) -> Any:
    """Embed the evaluation split(s) with the trained model.

    Args:
        model_state: output of ``train_method``.
        index_table: the dataset's index table.
        image_cache: the cache manifest.
        params: the method block.
        data: the dataset block (selects the method's recipe).

    Returns:
        The embeddings artifact (``EmbeddingSet``).
    """
    from dml_pipelines.core.data.cache import ImageCache
    from dml_pipelines.core.engine.run import embedding_set, method_from_state

    cfg = params.for_dataset(data.name)
    method = method_from_state(model_state, cfg, len(model_state["classes"]))
    return embedding_set(
        method, index_table, ImageCache.open(image_cache["directory"]), cfg
    )


def extract_untrained_embeddings(
    index_table: pd.DataFrame,
    image_cache: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
) -> Any:
    """Embed the evaluation split(s) with the untrained network (same seed).

    Args:
        index_table: the dataset's index table.
        image_cache: the cache manifest.
        params: the method block.
        data: the dataset block (selects the method's recipe).

    Returns:
        The embeddings artifact of the untrained network.
    """
    from dml_pipelines.core.data.cache import ImageCache
    from dml_pipelines.core.engine.run import (
        embedding_set,
        method_from_state,
        num_train_classes,
    )

    cfg = params.for_dataset(data.name)
    method = method_from_state(None, cfg, num_train_classes(index_table, cfg))
    return embedding_set(
        method, index_table, ImageCache.open(image_cache["directory"]), cfg
    )
