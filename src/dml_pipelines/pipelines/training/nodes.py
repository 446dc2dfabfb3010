"""Training and embedding nodes: thin adapters over ``dml_pipelines.core.engine``.

The ``params`` argument of each node is re-annotated per method with that method's
config model (see ``pipelines.typing.typed``) so Kedro validates it before any
node runs. ``resolve`` gives the config a run uses (dataset recipe + run axes).
"""

from pathlib import Path
from typing import Any

import pandas as pd

from dml_pipelines.core.config import (
    DataParams,
    DatasetTable,
    MethodConfig,
    PathsParams,
    RunParams,
)
from dml_pipelines.pipelines.typing import resolve


def train_method(
    index_table: pd.DataFrame,
    image_cache: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
    datasets: DatasetTable,
    paths: PathsParams,
    run: RunParams,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train the method on the training split, with checkpoints and resume.

    Args:
        index_table: the dataset's index table.
        image_cache: the cache manifest of the ``data`` pipeline.
        params: the method block (validated config).
        data: the run's dataset.
        datasets: every dataset's block (the K list for validation).
        paths: where checkpoints live
            (``<models>/<dataset>/<method>/seed<S>[/fold<F>]/checkpoints``).
        run: the run axes (seed, fold).

    Returns:
        The model state (inference weights + resolved config) and the per-epoch
        history.
    """
    from dml_pipelines.core.data.cache import ImageCache
    from dml_pipelines.core.engine.run import train_model

    ckpt = Path(paths.models) / data.name / params.method / run.directory
    state, history = train_model(
        index_table,
        ImageCache.open(image_cache["directory"]),
        resolve(params, data, run),
        checkpoint_dir=ckpt / "checkpoints",
        recall_at=tuple(datasets.entry(data.name).recall_at),
    )
    return {**state, "git_commit": git_commit()}, history


def git_commit() -> str:
    """The code version (``git describe --always --dirty``), or ``unknown``."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def extract_embeddings(
    index_table: pd.DataFrame,
    image_cache: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
    run: RunParams,
    model_state: dict[str, Any] | None = None,
) -> Any:
    """Embed the evaluation split(s) with the trained model, or with the
    untrained network (same seed) when ``model_state`` is not given.

    Args:
        index_table: the dataset's index table.
        image_cache: the cache manifest.
        params: the method block.
        data: the run's dataset (selects the method's recipe).
        run: the run axes (seed, fold).
        model_state: output of ``train_method``; ``None``: untrained network.

    Returns:
        The embeddings artifact (``EmbeddingSet``).
    """
    from dml_pipelines.core.data.cache import ImageCache
    from dml_pipelines.core.engine.run import (
        embedding_set,
        method_from_state,
        num_train_classes,
    )

    cfg = resolve(params, data, run)
    classes = (
        len(model_state["classes"])
        if model_state is not None
        else num_train_classes(index_table, cfg)
    )
    method = method_from_state(model_state, cfg, classes)
    cache = ImageCache.open(image_cache["directory"])
    return embedding_set(method, index_table, cache, cfg, fold=run.fold)
