"""Clustering metrics (docs/protocols.md#clustering-metrics): k-means with k = number of
classes, then NMI (arithmetic), AMI and pairwise F1.

k-means runs with faiss (``faiss.Kmeans(d, k, niter=20, min_points_per_centroid=1,
seed=seed)``, points assigned to their nearest centroid) or, when faiss is not
importable or ``backend="sklearn"``, scikit-learn
(``KMeans(n_init=1, max_iter=20, random_state=seed)``). The backends are not
bit-identical; the result records which one ran.
"""

from __future__ import annotations

import numpy as np

from .knn import faiss_num_gpus, import_faiss
from .options import check_choice


def kmeans_assign(
    x: np.ndarray, num_clusters: int, *, seed: int = 0, backend: str = "faiss"
) -> tuple[np.ndarray, str]:
    """Cluster the rows of ``x`` and assign each to its nearest centroid.

    Args:
        x: (N, D) float32 embeddings (already normalised).
        num_clusters: k, at most N.
        seed: k-means seed (the run seed).
        backend: ``faiss`` (falls back to ``sklearn`` if faiss is not importable) or
            ``sklearn``.

    Returns:
        ``(assignments, backend)``: (N,) int64 cluster ids and the backend that ran.
    """
    check_choice("clustering_backend", backend)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not 1 <= num_clusters <= x.shape[0]:
        raise ValueError(f"num_clusters={num_clusters} must be in [1, {x.shape[0]}]")
    faiss = import_faiss() if backend == "faiss" else None
    if faiss is not None:
        km = faiss.Kmeans(
            x.shape[1],
            int(num_clusters),
            niter=20,
            min_points_per_centroid=1,
            seed=int(seed),
            gpu=faiss_num_gpus(faiss) > 0,
        )
        km.train(x)
        _, assign = km.index.search(x, 1)
        return assign[:, 0].astype(np.int64), "faiss"
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=int(num_clusters), n_init=1, max_iter=20, random_state=seed)
    return km.fit_predict(x).astype(np.int64), "sklearn"


def pairwise_f1(labels: np.ndarray, assignments: np.ndarray) -> float:
    """Pairwise F1 over all unordered pairs (Roth et al. / RDML), from the non-zero
    cells of the contingency table: TP = Σ C(n_ck, 2), P = TP / Σ_k C(n_·k, 2),
    R = TP / Σ_c C(n_c·, 2), F1 = 2PR / (P + R) (0 if P + R = 0).

    Args:
        labels: (N,) class ids.
        assignments: (N,) cluster ids.
    """
    _, c = np.unique(labels, return_inverse=True)
    _, k = np.unique(assignments, return_inverse=True)
    _, cell = np.unique(c.astype(np.int64) * (k.max() + 1) + k, return_counts=True)

    def pairs(n: np.ndarray) -> float:
        n = n.astype(np.float64)
        return float((n * (n - 1) / 2).sum())

    tp = pairs(cell)
    same_cluster = pairs(np.bincount(k))
    same_class = pairs(np.bincount(c))
    precision = tp / same_cluster if same_cluster else 0.0
    recall = tp / same_class if same_class else 0.0
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def clustering_scores(labels: np.ndarray, assignments: np.ndarray) -> dict:
    """NMI (scikit-learn, ``average_method='arithmetic'``), AMI and pairwise F1.

    Args:
        labels: (N,) class ids.
        assignments: (N,) cluster ids.

    Returns:
        ``{"nmi": float, "ami": float, "f1": float}``.
    """
    from sklearn.metrics import adjusted_mutual_info_score, normalized_mutual_info_score

    return {
        "nmi": float(
            normalized_mutual_info_score(
                labels, assignments, average_method="arithmetic"
            )
        ),
        "ami": float(adjusted_mutual_info_score(labels, assignments)),
        "f1": float(pairwise_f1(labels, assignments)),
    }


def clustering_metrics(
    x: np.ndarray, labels: np.ndarray, *, seed: int = 0, backend: str = "faiss"
) -> dict:
    """k-means with k = number of distinct labels, then ``clustering_scores``.

    Args:
        x: (N, D) float32 embeddings (already normalised).
        labels: (N,) class ids.
        seed: k-means seed.
        backend: ``faiss`` or ``sklearn`` (see ``kmeans_assign``).

    Returns:
        ``nmi``, ``ami``, ``f1`` and ``clustering_backend``.
    """
    labels = np.asarray(labels)
    assignments, ran = kmeans_assign(
        x, len(np.unique(labels)), seed=seed, backend=backend
    )
    return {**clustering_scores(labels, assignments), "clustering_backend": ran}
