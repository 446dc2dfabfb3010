"""Evaluation nodes: pure functions of the embeddings artifact."""

from typing import Any

import pandas as pd

from dml_pipelines.core.config import (
    DataParams,
    DatasetTable,
    EvaluationParams,
    MethodConfig,
)


def _options(evaluation: EvaluationParams, **extra: Any) -> dict[str, Any]:
    return {**evaluation.model_dump(), **extra}


def evaluate_retrieval(
    test_embeddings: Any,
    data: DataParams,
    datasets: DatasetTable,
    evaluation: EvaluationParams,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Retrieval metrics (Recall@K, P@1, R-Precision, MAP@R) and per-class table.

    Args:
        test_embeddings: the embeddings artifact.
        data: the run's dataset.
        datasets: every dataset's block (the run's K list).
        evaluation: ``metrics.*`` options.

    Returns:
        The metrics dict and the per-class breakdown.
    """
    from dml_pipelines.core.evaluation.report import evaluate_set

    opts = _options(evaluation, clustering=False)
    return evaluate_set(
        test_embeddings,
        recall_at=tuple(datasets.entry(data.name).recall_at),
        per_class=True,
        **opts,
    )


def evaluate_untrained(
    untrained_embeddings: Any,
    data: DataParams,
    datasets: DatasetTable,
    evaluation: EvaluationParams,
) -> dict[str, Any]:
    """Retrieval metrics of the untrained network (the baseline to beat).

    Args:
        untrained_embeddings: the untrained network's embeddings artifact.
        data: the run's dataset.
        datasets: every dataset's block (the run's K list).
        evaluation: ``metrics.*`` options.

    Returns:
        The metrics dict.
    """
    from dml_pipelines.core.evaluation.report import evaluate_set

    opts = _options(evaluation, clustering=False)
    return evaluate_set(
        untrained_embeddings,
        recall_at=tuple(datasets.entry(data.name).recall_at),
        **opts,
    )


def cluster_embeddings(
    test_embeddings: Any, evaluation: EvaluationParams
) -> dict[str, Any]:
    """k-means clustering metrics (NMI, AMI, pairwise F1).

    Args:
        test_embeddings: the embeddings artifact.
        evaluation: ``clustering.*`` options.

    Returns:
        The clustering metrics dict.
    """
    from dml_pipelines.core.evaluation.report import cluster_set

    return cluster_set(test_embeddings, **evaluation.model_dump())


def report_metrics(
    retrieval_metrics: dict[str, Any],
    clustering_metrics: dict[str, Any],
    untrained_metrics: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
) -> dict[str, Any]:
    """The metrics file of one run (specs/metrics.md §9 keys), for DVC.

    Args:
        retrieval_metrics: output of ``evaluate_retrieval``.
        clustering_metrics: output of ``cluster_embeddings``.
        untrained_metrics: output of ``evaluate_untrained``.
        params: the method block (method name, recipe, checkpoint selection).
        data: the run's dataset.

    Returns:
        The merged metrics dict.
    """
    from dml_pipelines.core.evaluation.report import metrics_record

    cfg = params.for_dataset(data.name)
    return metrics_record(
        retrieval_metrics,
        clustering_metrics,
        untrained_metrics,
        dataset=data.name,
        method=cfg.method,
        recipe=cfg.recipe,
        checkpoint_selection=cfg.training.checkpoint_selection,
    )


def write_protocol_card(
    image_cache: dict[str, Any], params: MethodConfig, data: DataParams
) -> dict[str, Any]:
    """The run's protocol card: backbone, BN, pooling, image preparation,
    augmentation, embedding dim, batch composition, selection split, budget.

    Args:
        image_cache: the cache manifest (its resize and bbox use).
        params: the method block.
        data: the run's dataset.

    Returns:
        The protocol card.
    """
    from dml_pipelines.core.config import protocol_card

    cfg = params.for_dataset(data.name)
    return {
        "dataset": data.name,
        "method": cfg.method,
        "recipe": cfg.recipe,
        **protocol_card(cfg, image_cache),
    }
