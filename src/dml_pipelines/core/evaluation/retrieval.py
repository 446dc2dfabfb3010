"""Retrieval metrics from neighbour lists (docs/protocols.md#retrieval-metrics).

Recall@K (hit rate), P@1, R-Precision and MAP@R (MLRC definition: divided by R_q,
positions beyond R_q contribute nothing), computed vectorised on blocks of the
(num_queries × k) relevance matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .options import check_choice

PER_CLASS_COLUMNS = ["label", "num_queries", "recall@1", "r_precision", "map@r"]
_BLOCK = 8192  # query rows per block of the relevance matrix


def relevant_counts(
    query_labels: np.ndarray, reference_labels: np.ndarray, leave_one_out: bool
) -> np.ndarray:
    """R_q: references sharing each query's label (the query itself excluded in
    leave-one-out mode).

    Args:
        query_labels: (Q,) int labels.
        reference_labels: (R,) int labels (the query labels in leave-one-out mode).
        leave_one_out: queries are the references.

    Returns:
        (Q,) int64 counts; 0 marks a lone query.
    """
    classes, counts = np.unique(reference_labels, return_counts=True)
    pos = np.searchsorted(classes, query_labels)
    pos = np.minimum(pos, len(classes) - 1)
    found = classes[pos] == query_labels
    r = np.where(found, counts[pos], 0).astype(np.int64)
    return r - 1 if leave_one_out else r


def check_recall_at(recall_at: Sequence[int]) -> tuple[int, ...]:
    """Validate the Recall@K list: a non-empty sequence of positive ints."""
    try:
        ks = tuple(int(k) for k in recall_at)
    except (TypeError, ValueError):
        raise ValueError(
            "datasets.<name>.recall_at: must be a list of positive ints "
            f"(got {recall_at!r})"
        ) from None
    if not ks or min(ks) < 1 or any(k != v for k, v in zip(ks, recall_at, strict=True)):
        raise ValueError(
            "datasets.<name>.recall_at: must be a non-empty list of positive ints "
            f"(got {recall_at!r})"
        )
    return ks


def required_k(
    relevant: np.ndarray,
    recall_at: Sequence[int],
    num_references: int,
    knn_k: int | None = None,
    deep_recall: str = "search",
) -> int:
    """Search depth k, capped at the number of references.

    ``deep_recall: search`` (the spec's depth): k = max(largest K, R_max).
    ``deep_recall: count``: k = R_max; Recall@K for K > k comes from counting
    (``ranks.first_positive_ranks``). Capping is exact: Recall@K for K ≥ the number
    of references equals Recall@(that number).

    Args:
        relevant: (Q,) R_q per query (``relevant_counts``).
        recall_at: the Recall@K list.
        num_references: references each query can retrieve (N - 1 in leave-one-out).
        knn_k: an explicit depth (``evaluation.knn_k``), or None to derive it.
        deep_recall: ``search`` or ``count`` (``evaluation.deep_recall``).

    Raises:
        ValueError: naming ``evaluation.knn_k`` if it is below R_max, or (``search``)
            below the largest K.
    """
    check_choice("deep_recall", deep_recall)
    r_max = int(relevant.max(initial=0))
    k_max = min(max(check_recall_at(recall_at)), num_references)
    if knn_k is None:
        depth = r_max if deep_recall == "count" else max(k_max, r_max)
        return min(max(depth, 1), num_references)
    if knn_k < r_max:
        raise ValueError(
            f"evaluation.knn_k={knn_k} is smaller than R_max={r_max} (the largest "
            "number of same-label references of a query); R-Precision and MAP@R "
            "need k >= R_max"
        )
    if knn_k < k_max and deep_recall == "search":
        raise ValueError(
            f"evaluation.knn_k={knn_k} is smaller than the largest Recall@K K={k_max} "
            "(evaluation.deep_recall: search)"
        )
    return min(int(knn_k), num_references)


def per_query_scores(
    knn_indices: np.ndarray,
    query_labels: np.ndarray,
    reference_labels: np.ndarray,
    relevant: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank of the first hit, R-Precision and AP@R of every query.

    Args:
        knn_indices: (Q, k) neighbour indices into the references, nearest first.
        query_labels: (Q,) labels.
        reference_labels: (R,) labels.
        relevant: (Q,) R_q; every R_q must be ≤ k.

    Returns:
        first_hit (Q,) int64, 0-based rank of the first same-label neighbour (k if
        none); rp (Q,) and ap (Q,) float64, NaN for lone queries (R_q = 0).
    """
    q, k = knn_indices.shape
    r_cols = int(relevant.max(initial=0))
    first_hit = np.empty(q, dtype=np.int64)
    rp = np.empty(q, dtype=np.float64)
    ap = np.empty(q, dtype=np.float64)
    inv_rank = 1.0 / np.arange(1, r_cols + 1, dtype=np.float64)
    for s in range(0, q, _BLOCK):
        e = min(s + _BLOCK, q)
        rel = reference_labels[knn_indices[s:e]] == query_labels[s:e, None]
        has_hit = rel.any(axis=1)
        first_hit[s:e] = np.where(has_hit, rel.argmax(axis=1), k)
        r = relevant[s:e]
        rel_r = rel[:, :r_cols] & (np.arange(r_cols) < r[:, None])
        hits = np.cumsum(rel_r, axis=1, dtype=np.int32)
        with np.errstate(invalid="ignore", divide="ignore"):
            rp[s:e] = hits[:, -1] / r if r_cols else np.nan
            ap[s:e] = (hits * rel_r) @ inv_rank / r if r_cols else np.nan
    return first_hit, rp, ap


def retrieval_metrics(
    knn_indices: np.ndarray,
    query_labels: np.ndarray,
    reference_labels: np.ndarray,
    *,
    leave_one_out: bool,
    recall_at: Sequence[int] = (1, 2, 4, 8),
    lone_queries: str = "drop",
    avg_of_avgs: bool = False,
    beyond: np.ndarray | None = None,
) -> tuple[dict, pd.DataFrame]:
    """Recall@K, P@1, R-Precision and MAP@R from neighbour lists.

    Args:
        knn_indices: (Q, k) neighbour indices into the references, nearest first
            (self already removed in leave-one-out mode).
        query_labels: (Q,) int labels.
        reference_labels: (R,) int labels (equal to ``query_labels`` in
            leave-one-out mode).
        leave_one_out: queries are the references (R_q excludes the query).
        recall_at: the Recall@K list.
        lone_queries: ``drop`` (DEFAULT): queries with R_q = 0 leave every metric;
            ``miss``: they count as misses for Recall@K (P@1, R-Precision and MAP@R
            still skip them, R_q = 0 having no defined R-Precision).
        avg_of_avgs: average per class first, then over classes (diagnostics).
        beyond: (Q,) 0-based rank of the first positive of the queries that have
            none among their k neighbours (``ranks.first_positive_ranks``;
            ``ranks.NO_POSITIVE`` for lone queries; other entries are ignored).
            With it, Recall@K for K > k is taken from these ranks.

    Returns:
        ``(metrics, per_class)``: metrics has ``recall@{K}``, ``precision@1``,
        ``r_precision``, ``map@r``, ``num_queries`` (queries averaged for Recall@K)
        and ``num_lone_queries``; per_class has the columns ``label, num_queries,
        recall@1, r_precision, map@r`` (one row per query label in Recall@K).

    Raises:
        ValueError: naming ``evaluation.knn_k`` when k < R_max or k < the largest K
            (and fewer than k references exist).
    """
    check_choice("lone_queries", lone_queries)
    ks = check_recall_at(recall_at)
    query_labels = np.asarray(query_labels, dtype=np.int64)
    reference_labels = np.asarray(reference_labels, dtype=np.int64)
    knn_indices = np.asarray(knn_indices)
    if knn_indices.ndim != 2 or knn_indices.shape[0] != len(query_labels):
        raise ValueError(
            f"knn_indices shape {knn_indices.shape} does not match "
            f"{len(query_labels)} queries"
        )
    relevant = relevant_counts(query_labels, reference_labels, leave_one_out)
    k = knn_indices.shape[1]
    num_refs = len(reference_labels) - int(leave_one_out)
    deep = "search" if beyond is None else "count"
    required_k(relevant, ks, num_refs, knn_k=k, deep_recall=deep)

    first_hit, rp, ap = per_query_scores(
        knn_indices, query_labels, reference_labels, relevant
    )
    cap = k
    if beyond is not None:
        beyond = np.asarray(beyond, dtype=np.int64)
        if beyond.shape != first_hit.shape:
            raise ValueError(f"beyond {beyond.shape} must be ({len(first_hit)},)")
        # Such a query's rank is >= k; a certified bf16 count may lie below k
        # (it only decides the K > k), so it is raised to k.
        first_hit = np.where(first_hit >= k, np.maximum(beyond, k), first_hit)
        cap = np.iinfo(np.int64).max
    kept = relevant > 0
    counted = kept if lone_queries == "drop" else np.ones_like(kept)
    _, codes = np.unique(query_labels, return_inverse=True)

    def mean(values: np.ndarray, mask: np.ndarray) -> float:
        if not mask.any():
            return float("nan")
        if not avg_of_avgs:
            return float(values[mask].mean())
        sums = np.bincount(codes[mask], weights=values[mask])
        sizes = np.bincount(codes[mask])
        return float((sums[sizes > 0] / sizes[sizes > 0]).mean())

    metrics: dict = {}
    for kk in ks:
        metrics[f"recall@{kk}"] = mean(first_hit < min(kk, cap), counted)
    metrics["precision@1"] = mean(first_hit == 0, kept)
    metrics["r_precision"] = mean(rp, kept)
    metrics["map@r"] = mean(ap, kept)
    metrics["num_queries"] = int(counted.sum())
    metrics["num_lone_queries"] = int((~kept).sum())
    return metrics, per_class_table(query_labels, first_hit, rp, ap, counted)


def per_class_table(
    query_labels: np.ndarray,
    first_hit: np.ndarray,
    rp: np.ndarray,
    ap: np.ndarray,
    counted: np.ndarray,
) -> pd.DataFrame:
    """Per-class means of Recall@1, R-Precision and MAP@R over the counted queries.

    Args:
        query_labels, first_hit, rp, ap, counted: (Q,) arrays; ``counted`` marks the
            queries that enter Recall@K.

    Returns:
        DataFrame with ``PER_CLASS_COLUMNS``, sorted by label.
    """
    labels, codes = np.unique(query_labels[counted], return_inverse=True)
    sizes = np.bincount(codes, minlength=len(labels))
    hit1 = np.bincount(codes, weights=first_hit[counted] == 0, minlength=len(labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        rp_sum = np.bincount(codes, weights=rp[counted], minlength=len(labels))
        ap_sum = np.bincount(codes, weights=ap[counted], minlength=len(labels))
        return pd.DataFrame(
            {
                "label": labels.astype(np.int64),
                "num_queries": sizes.astype(np.int64),
                "recall@1": hit1 / sizes,
                "r_precision": rp_sum / sizes,
                "map@r": ap_sum / sizes,
            },
            columns=PER_CLASS_COLUMNS,
        )
