"""Exact k-nearest-neighbour search (specs/metrics.md §3).

Two backends return the same neighbours up to ties: faiss (``IndexFlatIP`` on
L2-normalised vectors, ``IndexFlatL2`` otherwise) and a chunked pure-torch search
(matrix product + ``topk``, ties broken by (distance, reference index)). faiss is
imported lazily; when it is not importable the torch backend is used.

Leave-one-out (``reference=None``): each query's own row is removed **by index**,
never by distance. Query → gallery: nothing is removed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

KNN_BACKENDS = ("faiss", "torch")
GPU_MAX_K = 2048  # faiss-GPU top-k limit (1024 on CUDA < 9.5)
_FAISS_BLOCK = 16384  # query rows per faiss search call (bounds the result memory)


class KnnResult(NamedTuple):
    """Neighbours of each query, nearest first.

    Attributes:
        indices: (Q, k) int64 row indices into the references.
        distances: (Q, k) float32 squared Euclidean distances.
        backend: the backend that ran: ``faiss``, ``faiss-gpu`` or ``torch``.
    """

    indices: np.ndarray
    distances: np.ndarray
    backend: str


def gpu_max_k(cuda_version: str | None) -> int:
    """Largest k faiss-GPU accepts: 2048, or 1024 on CUDA < 9.5."""
    if cuda_version:
        major, _, minor = cuda_version.partition(".")
        if (int(major), int(minor or 0)) < (9, 5):
            return 1024
    return GPU_MAX_K


def faiss_device(k: int, num_gpus: int, cuda_version: str | None = None) -> str:
    """Choose where faiss searches: ``gpu`` only if a GPU is available and ``k`` is
    within the faiss-GPU top-k cap, else ``cpu``.

    Args:
        k: number of neighbours faiss is asked for (k + 1 in leave-one-out mode).
        num_gpus: GPUs faiss can see (``faiss.get_num_gpus()``).
        cuda_version: CUDA version string, e.g. ``"12.4"``; None means recent.
    """
    return "gpu" if num_gpus > 0 and k <= gpu_max_k(cuda_version) else "cpu"


def import_faiss():
    """The faiss module, or None when it is not importable."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def faiss_num_gpus(faiss) -> int:
    """GPUs faiss can use (0 for faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def knn(
    query: np.ndarray,
    k: int,
    reference: np.ndarray | None = None,
    *,
    normalized: bool = False,
    backend: str = "faiss",
    chunk_size: int = 4096,
) -> KnnResult:
    """Exact k nearest references of each query under Euclidean distance.

    Args:
        query: (Q, D) float32 embeddings.
        k: neighbours per query; at most the number of references (minus one in
            leave-one-out mode).
        reference: (R, D) float32 embeddings, or None for leave-one-out, where the
            references are the queries and each query's own row is removed by index.
        normalized: the rows are unit vectors (faiss then uses inner product, which
            gives the same order).
        backend: ``faiss`` (falls back to ``torch`` if faiss is not importable) or
            ``torch``.
        chunk_size: query rows per block of the torch backend
            (``metrics.knn_chunk_size``).

    Returns:
        A ``KnnResult`` with (Q, k) ``indices`` and ``distances``.
    """
    if backend not in KNN_BACKENDS:
        raise ValueError(
            f"metrics.knn_backend: invalid value {backend!r}; "
            f"valid: {', '.join(KNN_BACKENDS)}"
        )
    if int(chunk_size) < 1:
        raise ValueError(f"metrics.knn_chunk_size must be >= 1, got {chunk_size}")
    query = np.ascontiguousarray(query, dtype=np.float32)
    leave_one_out = reference is None
    reference = query if leave_one_out else np.ascontiguousarray(reference, np.float32)
    available = reference.shape[0] - int(leave_one_out)
    if not 1 <= k <= available:
        raise ValueError(f"k={k} must be in [1, {available}] (number of references)")
    if query.shape[1] != reference.shape[1]:
        raise ValueError(
            f"query dim {query.shape[1]} != reference dim {reference.shape[1]}"
        )
    faiss = import_faiss() if backend == "faiss" else None
    if faiss is None:
        dist, idx = _torch_knn(
            query, reference, k, normalized, leave_one_out, chunk_size
        )
        return KnnResult(idx, dist, "torch")
    return _faiss_knn(faiss, query, reference, k, normalized, leave_one_out)


def _faiss_knn(faiss, query, reference, k, normalized, leave_one_out) -> KnnResult:
    search_k = k + int(leave_one_out)
    dim = query.shape[1]
    index = faiss.IndexFlatIP(dim) if normalized else faiss.IndexFlatL2(dim)
    device = faiss_device(search_k, faiss_num_gpus(faiss), torch.version.cuda)
    if device == "gpu":  # pragma: no cover - needs faiss-gpu and a GPU
        resources = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(resources, 0, index)
    index.add(reference)
    idx = np.empty((query.shape[0], k), dtype=np.int64)
    dist = np.empty((query.shape[0], k), dtype=np.float32)
    for start in range(0, query.shape[0], _FAISS_BLOCK):
        block = query[start : start + _FAISS_BLOCK]
        d, i = index.search(block, search_k)
        if normalized:  # inner product -> squared distance of unit vectors
            d = np.maximum(2.0 - 2.0 * d, 0.0, dtype=np.float32)
        if leave_one_out:
            i, d = remove_self(i, d, offset=start)
        idx[start : start + len(block)] = i
        dist[start : start + len(block)] = d
    name = "faiss" if device == "cpu" else "faiss-gpu"
    return KnnResult(idx, dist, name)


def remove_self(
    idx: np.ndarray, dist: np.ndarray, offset: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Drop each row's own index from a (Q, k + 1) leave-one-out result.

    Row q's entry equal to q + offset is removed wherever it sits; a row that does
    not contain it loses its last column instead.

    Args:
        idx: (Q, k + 1) neighbour indices.
        dist: (Q, k + 1) distances.
        offset: reference index of the first row (for blocks of queries).

    Returns:
        (Q, k) indices and distances.
    """
    q, cols = idx.shape
    is_self = idx == np.arange(offset, offset + q)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    return idx[keep].reshape(q, cols - 1), dist[keep].reshape(q, cols - 1)


@torch.no_grad()
def _torch_knn(query, reference, k, normalized, leave_one_out, chunk_size):
    q_all = torch.from_numpy(query)
    ref = torch.from_numpy(reference)
    n_ref = ref.shape[0]
    ref_sq = None if normalized else (ref * ref).sum(dim=1)
    probe = min(k + 1, n_ref)  # one spare column detects ties at the k-th place
    out_idx = np.empty((query.shape[0], k), dtype=np.int64)
    out_dist = np.empty((query.shape[0], k), dtype=np.float32)
    ref_ids = torch.arange(n_ref, dtype=torch.int64)
    for start in range(0, query.shape[0], chunk_size):
        block = q_all[start : start + chunk_size]
        if normalized:
            d = (block @ ref.T).mul_(-2.0).add_(2.0)
        else:
            d = torch.addmm(ref_sq[None, :], block, ref.T, alpha=-2.0)
            d.add_((block * block).sum(dim=1, keepdim=True))
        d.clamp_min_(0.0).add_(0.0)  # also turns -0.0 into +0.0 for the bit keys
        rows = torch.arange(block.shape[0])
        if leave_one_out:
            d[rows, rows + start] = float("inf")
        vals, idx = torch.topk(d, probe, dim=1, largest=False, sorted=True)
        if probe > k:
            tied = (vals[:, k - 1] == vals[:, k]).nonzero().squeeze(1)
            if tied.numel():
                # Exact (distance, index) order: float bits of a non-negative float32
                # are monotonic, so (bits << 32) | index is a unique sortable key.
                sub = d[tied]
                key = (sub.view(torch.int32).to(torch.int64) << 32) | ref_ids
                top = torch.topk(key, k, dim=1, largest=False, sorted=True).values
                sel = top & 0xFFFFFFFF
                idx[tied, :k] = sel
                vals[tied, :k] = sub.gather(1, sel)
            vals, idx = vals[:, :k], idx[:, :k]
        idx, perm = idx.sort(dim=1)
        vals = vals.gather(1, perm)
        vals, perm = vals.sort(dim=1, stable=True)
        idx = idx.gather(1, perm)
        out_idx[start : start + block.shape[0]] = idx.numpy()
        out_dist[start : start + block.shape[0]] = vals.numpy()
    return out_dist, out_idx
