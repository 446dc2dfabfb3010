"""``evaluate()``: the metrics of one embeddings artifact, and the MLRC reporting
protocol over fold models (docs/protocols.md, "MLRC protocol (4 folds)" and "Embeddings
artifact and metrics file")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dml_pipelines.core.normalization import get_normalization

from .clustering import clustering_metrics
from .embeddings import EmbeddingSet, normalize
from .knn import knn, resolve_backend
from .options import EvaluationOptions
from .ranks import NO_POSITIVE, first_positive_ranks, positive_table
from .retrieval import (
    check_recall_at,
    relevant_counts,
    required_k,
    retrieval_metrics,
)


def resolve_options(options: dict[str, Any]) -> EvaluationOptions:
    """Validate ``evaluate()`` options against the ``evaluation`` block's schema.

    Raises:
        ValueError: one line naming ``evaluation.<key>``, on an unknown option or
            an invalid value.
    """
    return EvaluationOptions.model_validate(options)


def evaluate(
    embeddings: np.ndarray,
    labels: np.ndarray,
    *,
    is_query: np.ndarray | None = None,
    is_gallery: np.ndarray | None = None,
    recall_at: Sequence[int] = (1, 2, 4, 8),
    return_per_class: bool = False,
    normalization: str = "l2",
    **options: Any,
):
    """Retrieval and clustering metrics of one embedding set
    (docs/protocols.md#embeddings-artifact-and-metrics-file).

    Leave-one-out when ``is_query`` and ``is_gallery`` are None; otherwise queries
    are ranked against the gallery (nothing removed).

    Args:
        embeddings: (N, D) float array (numpy or a CPU tensor).
        labels: (N,) int class ids.
        is_query: (N,) bool, query → gallery datasets only.
        is_gallery: (N,) bool; defaults to ``~is_query`` when only ``is_query`` is
            given. An image may not be both.
        recall_at: the dataset's Recall@K list (``datasets.<name>.recall_at``).
        return_per_class: also return the per-class DataFrame (``label,
            num_queries, recall@1, r_precision, map@r``).
        normalization: ``l2`` | ``lipschitz`` | ``none`` (``core/normalization.py``),
            applied before ranking.
        **options: the ``evaluation`` block (``EvaluationOptions``, the schema of
            ``conf/base/parameters.yml``'s ``evaluation``): ``lone_queries``,
            ``knn_backend``, ``knn_chunk_size``, ``knn_k``, ``deep_recall``,
            ``avg_of_avgs``, ``clustering``, ``clustering_backend``,
            ``inshop_set``, ``seed``. Errors name ``evaluation.<key>``.

    Returns:
        The metrics dict: ``recall@{K}``, ``precision@1``, ``r_precision``,
        ``map@r``, ``num_queries``, ``num_lone_queries``, ``knn_backend``,
        ``knn_k`` (the search depth), ``knn_exact_rows`` (rows bf16 redid in
        float32), ``embedding_dim``, ``retrieval_mode`` (``leave_one_out`` |
        ``query_gallery``), and with clustering ``nmi``, ``ami``, ``f1``,
        ``clustering_backend``. With ``return_per_class=True``, the tuple
        ``(metrics, per_class_df)``.
    """
    opts = resolve_options(options)
    norm = get_normalization(normalization)
    x = np.asarray(embeddings, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if x.ndim != 2 or labels.shape != (x.shape[0],):
        raise ValueError(
            f"embeddings {x.shape} and labels {labels.shape} must be (N, D) and (N,)"
        )
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"embeddings: {len(bad)} of {len(x)} rows hold NaN or inf (first: row "
            f"{bad[0]}); the model diverged or the artifact is corrupt"
        )
    query_mask, gallery_mask = split_masks(is_query, is_gallery, x.shape[0])
    leave_one_out = query_mask is None
    if leave_one_out:
        q_x, q_y, r_x, r_y = norm.array(x), labels, None, labels
    else:  # normalise the (fresh) subsets in place: no N×D copy beyond them
        q_x, q_y = norm.array(x[query_mask], inplace=True), labels[query_mask]
        r_x = norm.array(x[gallery_mask], inplace=True)
        r_y = labels[gallery_mask]
    num_refs = len(r_y) - int(leave_one_out)
    relevant = relevant_counts(q_y, r_y, leave_one_out)
    normalized = norm.unit_norm
    backend = resolve_backend(opts.knn_backend, normalized)
    k = required_k(
        relevant, recall_at, num_refs, knn_k=opts.knn_k, deep_recall=opts.deep_recall
    )
    found = knn(
        q_x,
        k,
        r_x,
        normalized=normalized,
        backend=backend,
        chunk_size=opts.knn_chunk_size,
    )
    exact_rows = found.exact_rows
    beyond = None
    deep_ks = [kk for kk in check_recall_at(recall_at) if kk > k]
    if opts.deep_recall == "count" and k < num_refs and deep_ks:
        beyond = np.full(len(q_y), NO_POSITIVE, dtype=np.int64)
        no_hit = ~(r_y[found.indices] == q_y[:, None]).any(axis=1) & (relevant > 0)
        rows = np.nonzero(no_hit)[0]
        beyond[rows], redone = first_positive_ranks(
            q_x,
            r_x,
            rows,
            positive_table(q_y, r_y, leave_one_out),
            normalized=normalized,
            backend=backend,
            decide_at=deep_ks,
            chunk_size=opts.knn_chunk_size,
        )
        exact_rows += redone
    metrics, per_class = retrieval_metrics(
        found.indices,
        q_y,
        r_y,
        leave_one_out=leave_one_out,
        recall_at=recall_at,
        lone_queries=opts.lone_queries,
        avg_of_avgs=opts.avg_of_avgs,
        beyond=beyond,
    )
    metrics["knn_backend"] = found.backend
    metrics["knn_k"] = int(k)
    metrics["knn_exact_rows"] = int(exact_rows)
    metrics["embedding_dim"] = int(x.shape[1])
    metrics["retrieval_mode"] = "leave_one_out" if leave_one_out else "query_gallery"
    if opts.clustering:
        c_mask = clustering_rows(query_mask, gallery_mask, opts.inshop_set)
        c_x = q_x if leave_one_out else norm.array(x[c_mask], inplace=True)
        metrics.update(
            clustering_metrics(
                c_x,
                labels[c_mask],
                seed=opts.seed,
                backend=opts.clustering_backend,
            )
        )
    return (metrics, per_class) if return_per_class else metrics


def clustering_rows(query_mask, gallery_mask, inshop_set: str):
    """Rows clustered (docs/protocols.md#clustering-metrics): the whole set in
    leave-one-out mode (masks ``None``); for query → gallery the union (``inshop_set:
    union``) or the queries (``query``)."""
    if query_mask is None:
        return slice(None)
    return query_mask | gallery_mask if inshop_set == "union" else query_mask


def split_masks(is_query, is_gallery, n: int):
    if is_query is None and is_gallery is None:
        return None, None
    q = None if is_query is None else np.asarray(is_query, dtype=bool)
    g = None if is_gallery is None else np.asarray(is_gallery, dtype=bool)
    q = ~g if q is None else q
    g = ~q if g is None else g
    if q.shape != (n,) or g.shape != (n,):
        raise ValueError(
            f"is_query {q.shape} and is_gallery {g.shape} must have shape ({n},)"
        )
    if (q & g).any():
        raise ValueError(
            f"{int((q & g).sum())} images are both query and gallery; query → "
            "gallery retrieval removes nothing, so the sets must be disjoint"
        )
    if not q.any() or not g.any():
        raise ValueError("query → gallery mode needs at least one query and gallery")
    return q, g


_AVERAGED = ("precision@1", "r_precision", "map@r", "nmi", "ami", "f1")


def evaluate_mlrc(sets: Sequence[EmbeddingSet], **options: Any) -> dict:
    """MLRC reporting (docs/protocols.md#mlrc-protocol-4-folds) over the fold models'
    embedding sets.

    The sets must hold the same images (same ``index`` values, in any order) with
    the same labels and query/gallery flags; they are aligned by ``index``.

    Args:
        sets: one ``EmbeddingSet`` per fold model (4 under MLRC), each (N, D_f).
        **options: ``recall_at`` and the ``evaluate()`` options, except
            ``normalization``, which each set carries.

    Returns:
        ``{"mlrc_separated": {...}, "mlrc_concatenated": {...}}``. Separated ("128D"):
        each fold set is evaluated with its own normalisation, numeric metrics are
        averaged over the folds, and the per-fold dicts are under ``folds``.
        Concatenated ("512D"): each fold's embeddings are L2-normalised,
        concatenated and re-normalised, then evaluated once. Both carry
        ``protocol``.
    """
    if not sets:
        raise ValueError("mlrc: at least one EmbeddingSet is needed")
    for name in ("normalization", "return_per_class"):
        if name in options:
            raise ValueError(f"mlrc: option {name!r} is not accepted here")
    aligned = _align(sets)
    base = aligned[0]
    flags = {"is_query": base.is_query, "is_gallery": base.is_gallery}

    folds = []
    for es in aligned:
        m = evaluate(
            es.embeddings, es.labels, normalization=es.normalization, **flags, **options
        )
        folds.append({"fold": es.fold, **m})
    separated = {k: v for k, v in folds[0].items() if k != "fold"}
    for key in list(separated):
        if key in _AVERAGED or key.startswith("recall@"):
            separated[key] = float(np.mean([f[key] for f in folds]))
    dims = sorted({f["embedding_dim"] for f in folds})
    separated["embedding_dim"] = dims[0] if len(dims) == 1 else dims
    separated.update(protocol="mlrc_separated", folds=folds)

    concat = np.concatenate([normalize(es.embeddings, "l2") for es in aligned], axis=1)
    concatenated = evaluate(
        normalize(concat, "l2"), base.labels, normalization="l2", **flags, **options
    )
    concatenated["protocol"] = "mlrc_concatenated"
    return {"mlrc_separated": separated, "mlrc_concatenated": concatenated}


def _align(sets: Sequence[EmbeddingSet]) -> list[EmbeddingSet]:
    """Reorder every set by ``index`` and check they describe the same images."""
    out = []
    for es in sets:
        order = np.argsort(es.index, kind="stable")
        flags = [None if f is None else f[order] for f in (es.is_query, es.is_gallery)]
        out.append(
            EmbeddingSet(
                es.embeddings[order],
                es.labels[order],
                es.index[order],
                es.normalization,
                *flags,
                fold=es.fold,
            )
        )
    ref = out[0]
    for i, es in enumerate(out[1:], start=1):
        for name in ("index", "labels", "is_query", "is_gallery"):
            a, b = getattr(ref, name), getattr(es, name)
            if (a is None) != (b is None) or (
                a is not None and not np.array_equal(a, b)
            ):
                raise ValueError(
                    f"mlrc: set {i} differs from set 0 in {name!r}; fold sets must "
                    "embed the same images"
                )
    return out
