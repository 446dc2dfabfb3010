"""Adapters from embeddings artifacts to the metrics records a run stores
(docs/protocols.md#embeddings-artifact-and-metrics-file): retrieval on an
``EmbeddingSet``, clustering on it, and the merged metrics file with the run's identity
and the untrained network's numbers."""

from __future__ import annotations

from typing import Any

import numpy as np

from dml_pipelines.core.evaluation.clustering import clustering_metrics
from dml_pipelines.core.evaluation.embeddings import EmbeddingSet, normalize
from dml_pipelines.core.evaluation.protocols import (
    clustering_rows,
    evaluate,
    resolve_options,
    split_masks,
)


def evaluate_set(
    es: EmbeddingSet,
    *,
    recall_at: tuple[int, ...],
    per_class: bool = False,
    **options: Any,
):
    """``evaluate`` on an artifact (its normalisation and query/gallery flags)."""
    options = {k: v for k, v in options.items() if k != "normalization"}
    return evaluate(
        es.embeddings,
        es.labels,
        is_query=es.is_query,
        is_gallery=es.is_gallery,
        recall_at=recall_at,
        normalization=es.normalization,
        return_per_class=per_class,
        **options,
    )


def cluster_set(es: EmbeddingSet, **options: Any) -> dict[str, Any]:
    """k-means metrics of an artifact: the test set, or for query → gallery data
    the union (``inshop_set: union``) or the queries (``query``)."""
    opts = resolve_options(options)
    x = normalize(np.asarray(es.embeddings, np.float32), es.normalization)
    query_mask, gallery_mask = split_masks(es.is_query, es.is_gallery, len(es.labels))
    rows = clustering_rows(query_mask, gallery_mask, opts.inshop_set)
    return clustering_metrics(
        x[rows], es.labels[rows], seed=opts.seed, backend=opts.clustering_backend
    )


def metrics_record(
    retrieval: dict[str, Any],
    clustering: dict[str, Any],
    untrained: dict[str, Any],
    *,
    dataset: str,
    method: str,
    checkpoint_selection: str,
    recipe: str = "default",
    protocol: str = "conventional",
) -> dict[str, Any]:
    """The metrics JSON of one run: every retrieval and clustering number, the run's
    identity, and the untrained network's ``recall@1`` (and MAP@R) under
    ``untrained``."""
    return {
        **retrieval,
        **clustering,
        "dataset": dataset,
        "method": method,
        "protocol": protocol,
        "recipe": recipe,
        "checkpoint_selection": checkpoint_selection,
        "untrained": {k: untrained[k] for k in ("recall@1", "map@r") if k in untrained},
    }
