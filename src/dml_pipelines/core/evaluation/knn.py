"""Exact k-nearest-neighbour search (docs/protocols.md#nearest-neighbour-search).

Three backends return the same neighbours up to ties: faiss (``IndexFlatIP`` on
L2-normalised vectors, ``IndexFlatL2`` otherwise), a chunked pure-torch search
(matrix product + ``topk``, ties broken by (distance, reference index)), and
``bf16``, a chunked torch search whose matrix product runs in bfloat16 (AMX /
tensor cores, several times faster than float32) to pick candidates that are then
re-ranked in float32. ``bf16`` stays exact: a rigorous bound on the bfloat16 error
(``Bf16Products``) certifies, row by row, that no reference outside the
candidates can enter the top k; a row that cannot be certified is searched again
in float32. ``auto`` picks ``bf16`` where bfloat16 matrix products are fast (a GPU,
or a CPU with AMX-BF16 / AVX512-BF16) and the vectors are L2-normalised, else
faiss. faiss is imported lazily; when it is not importable the torch backend is
used.

Leave-one-out (``reference=None``): each query's own row is removed **by index**,
never by distance. Query → gallery: nothing is removed.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .options import check_choice

BF16_MARGIN = 16  # extra bf16 candidates per row beyond k (re-ranked in float32)
GPU_MAX_K = 2048  # faiss-GPU top-k limit (1024 on CUDA < 9.5)
_FAISS_BLOCK = 16384  # query rows per faiss search call (bounds the result memory)


class KnnResult(NamedTuple):
    """Neighbours of each query, nearest first.

    Attributes:
        indices: (Q, k) int64 row indices into the references.
        distances: (Q, k) float32 squared Euclidean distances.
        backend: the backend that ran: ``faiss``, ``faiss-gpu``, ``torch``,
            ``bf16`` or ``bf16-cuda``.
        exact_rows: rows the bf16 backend could not certify and searched again
            in float32 (0 for the other backends).
    """

    indices: np.ndarray
    distances: np.ndarray
    backend: str
    exact_rows: int = 0


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


def bf16_is_fast() -> bool:
    """bfloat16 matrix products run on dedicated hardware here: a CUDA GPU, or a
    CPU with AMX-BF16 or AVX512-BF16 (read from ``/proc/cpuinfo``)."""
    if torch.cuda.is_available():
        return True
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_backend(backend: str, normalized: bool) -> str:
    """The backend that will run: ``auto`` becomes ``bf16`` on L2-normalised
    vectors where bfloat16 is fast, else ``faiss``; ``faiss`` becomes ``torch``
    when faiss is not importable.

    Raises:
        ValueError: naming ``evaluation.knn_backend`` for an unknown backend, or for
            ``bf16`` on vectors that are not L2-normalised.
    """
    check_choice("knn_backend", backend)
    if backend == "auto":
        backend = "bf16" if normalized and bf16_is_fast() else "faiss"
    if backend == "bf16" and not normalized:
        raise ValueError(
            "evaluation.knn_backend: bf16 needs L2-normalised embeddings "
            "(normalization: l2); use faiss or torch with normalization "
            "lipschitz or none"
        )
    if backend == "faiss" and import_faiss() is None:
        backend = "torch"
    return backend


def knn(
    query: np.ndarray,
    k: int,
    reference: np.ndarray | None = None,
    *,
    normalized: bool = False,
    backend: str = "faiss",
    chunk_size: int = 4096,
    bf16_margin: int = BF16_MARGIN,
) -> KnnResult:
    """Exact k nearest references of each query under Euclidean distance.

    Args:
        query: (Q, D) float32 embeddings.
        k: neighbours per query; at most the number of references (minus one in
            leave-one-out mode).
        reference: (R, D) float32 embeddings, or None for leave-one-out, where the
            references are the queries and each query's own row is removed by index.
        normalized: the rows are unit vectors (faiss then uses inner product, which
            gives the same order; ``bf16`` needs it).
        backend: ``auto``, ``faiss`` (falls back to ``torch`` if faiss is not
            importable), ``torch`` or ``bf16`` (see the module docstring).
        chunk_size: query rows per block of the torch and bf16 backends
            (``evaluation.knn_chunk_size``; bf16 caps it, see ``bf16_rows``).
        bf16_margin: extra candidates per row of the bf16 backend.

    Returns:
        A ``KnnResult`` with (Q, k) ``indices`` and ``distances``.
    """
    backend = resolve_backend(backend, normalized)
    if int(chunk_size) < 1:
        raise ValueError(f"evaluation.knn_chunk_size must be >= 1, got {chunk_size}")
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
    if backend == "bf16":
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dist, idx, redone = _bf16_knn(
            query, reference, k, leave_one_out, chunk_size, bf16_margin, device
        )
        name = "bf16" if device == "cpu" else "bf16-cuda"
        return KnnResult(idx, dist, name, redone)
    if backend == "torch":
        dist, idx = _torch_knn(
            query, reference, k, normalized, leave_one_out, chunk_size
        )
        return KnnResult(idx, dist, "torch")
    return _faiss_knn(import_faiss(), query, reference, k, normalized, leave_one_out)


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


_U = 2.0**-8  # bfloat16 unit round-off (8 significant bits, round to nearest)
_C = _U / (1.0 - _U)  # |round(a) - a| <= _C * |round(a)|


class Bf16Products:
    """bfloat16 inner products of query rows with fixed references, and a rigorous
    bound on their error.

    For a query x and a reference y, let x = x_hi + x_lo with x_hi = bf16(x), and
    likewise y. The product's output ŝ is round_bf16(acc) where acc is the float32
    sum of the exact products x_hi,i·y_hi,i. Then, exactly,

        |x·y - acc| ≤ ‖x_lo‖‖y‖ + ‖x_hi‖‖y_lo‖ + γ_d‖x_hi‖‖y_hi‖ =: E_x
        |acc - ŝ|   ≤ c·|ŝ|,  c = u/(1-u), u = 2⁻⁸,

    with γ_d = d·2⁻²⁴/(1 - d·2⁻²⁴) (float32 summation) and Cauchy-Schwarz for the
    first two terms, taken with the largest reference norms. ``E_x`` also holds
    γ_d‖x‖max‖y‖ for the float32 re-rank, and is enlarged by 1 %, which also
    covers the float32 norms (relative error ≤ γ_d; x - x_hi is exact in float32).
    So the exact similarity lies in [ŝ - c|ŝ| - E_x, ŝ + c|ŝ| + E_x].

    The products go into one reused output buffer: fresh multi-hundred-MB outputs
    cost more in page faults than the product itself. On CUDA, reduced-precision
    reductions are switched off so that the float32-accumulation premise holds.
    """

    def __init__(self, reference: torch.Tensor, chunk_size: int):
        hi = reference.to(torch.bfloat16)
        self.ref_t = hi.T.contiguous()  # (D, R)
        norm, hi_norm, lo_norm = _split_norms(reference, hi)
        self.max_norm = float(norm.max())
        self.max_hi = float(hi_norm.max())
        self.max_lo = float(lo_norm.max())
        d = reference.shape[1]
        self.gamma = d * 2.0**-24 / (1.0 - d * 2.0**-24)
        self.buf = torch.empty(
            (chunk_size, reference.shape[0]),
            dtype=torch.bfloat16,
            device=reference.device,
        )

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        """(m, R) bfloat16 products of float32 query rows (m ≤ chunk size); the
        result is a view of the shared buffer, valid until the next call."""
        out = self.buf[: rows.shape[0]]
        if rows.is_cuda:  # pragma: no cover - needs a GPU
            flag = torch.backends.cuda.matmul
            old = flag.allow_bf16_reduced_precision_reduction
            flag.allow_bf16_reduced_precision_reduction = False
            try:
                return torch.mm(rows.to(torch.bfloat16), self.ref_t, out=out)
            finally:
                flag.allow_bf16_reduced_precision_reduction = old
        return torch.mm(rows.to(torch.bfloat16), self.ref_t, out=out)

    def row_error(self, rows: torch.Tensor) -> torch.Tensor:
        """(m,) float64 E_x of each query row (see the class docstring)."""
        norm, hi_norm, lo_norm = (
            t.double() for t in _split_norms(rows, rows.to(torch.bfloat16))
        )
        err = lo_norm * self.max_norm
        err += hi_norm * (self.max_lo + self.gamma * self.max_hi)
        err += self.gamma * norm * self.max_norm
        return 1.01 * err

    @staticmethod
    def upper(value: torch.Tensor, row_error: torch.Tensor) -> torch.Tensor:
        """Largest exact similarity a product output ``value`` can stand for."""
        value = value.double()
        return value + _C * value.abs() + row_error

    @staticmethod
    def margin(threshold: torch.Tensor, row_error: torch.Tensor) -> torch.Tensor:
        """δ such that ŝ > t + δ proves s > t, and s > t proves ŝ > t - δ."""
        return (row_error + _C * threshold.double().abs()) / (1.0 - _C)


def _split_norms(x: torch.Tensor, hi: torch.Tensor):
    """Row norms of x, of x_hi = bf16(x) and of x - x_hi (exact in float32)."""
    hi32 = hi.float()
    norm = torch.linalg.vector_norm
    return norm(x, dim=1), norm(hi32, dim=1), norm(x - hi32, dim=1)


BF16_BLOCK = 1 << 24  # entries of one bfloat16 product block (32 MB)


def bf16_rows(chunk_size: int, num_queries: int, num_references: int) -> int:
    """Query rows per bf16 block: ``knn_chunk_size``, but at most
    ``BF16_BLOCK / references`` (≥ 64): cache-sized blocks run faster and
    need less memory than wide ones."""
    cap = max(64, BF16_BLOCK // max(num_references, 1))
    return max(1, min(int(chunk_size), cap, num_queries))


def top_candidates(
    approx: torch.Tensor, n_cand: int, group: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n_cand`` largest entries of each row of a bfloat16 matrix (unsorted):
    the same set as ``torch.topk``, about 4x faster on wide rows.

    Columns are split into groups {g, g + G', g + 2G', ...} (G' = columns // group);
    the top entries lie in the ``n_cand`` groups with the largest maxima (each of
    those maxima is an entry at least as large as any entry of the other groups).
    Group maxima are taken on the raw bits as int16 (vectorised, ~15x faster than
    a bfloat16 max), an order that agrees with the values on non-negative numbers
    and puts every negative number below them; a row whose selected entries are
    not all positive is redone with ``torch.topk``.
    """
    m, n = approx.shape
    n_groups = n // group
    if n_groups <= 4 * n_cand:
        return torch.topk(approx, n_cand, dim=1, sorted=False)
    keys = approx.view(torch.int16)
    gmax = keys[:, : n_groups * group].unflatten(1, (group, n_groups)).amax(dim=1)
    _, gid = torch.topk(gmax, n_cand, dim=1, sorted=False)
    offsets = torch.arange(group, device=approx.device) * n_groups
    cols = (gid.unsqueeze(2) + offsets).flatten(1)
    if n_groups * group < n:  # the last columns always compete
        tail = torch.arange(n_groups * group, n, device=approx.device)
        cols = torch.cat([cols, tail.expand(m, -1)], dim=1)
    vals, pos = torch.topk(approx.gather(1, cols), n_cand, dim=1, sorted=False)
    cand = cols.gather(1, pos)
    bad = (vals.min(dim=1).values <= 0).nonzero().squeeze(1)
    if bad.numel():
        vals[bad], cand[bad] = torch.topk(approx[bad], n_cand, dim=1, sorted=False)
    return vals, cand


_RERANK_BYTES = 4 << 20  # candidate vectors gathered at once (cache-sized)


def _rerank(ref, cand, block, buf, sub: int) -> torch.Tensor:
    """float32 inner products of each query row with its candidate references,
    ``sub`` rows at a time so that the gathered vectors stay in cache."""
    m, n_cand = cand.shape
    out = block.new_empty((m, n_cand))
    for s in range(0, m, sub):
        c = cand[s : s + sub]
        vecs = torch.index_select(ref, 0, c.reshape(-1), out=buf[: c.numel()])
        rows = block[s : s + sub].unsqueeze(2)
        torch.bmm(vecs.view(len(c), n_cand, -1), rows, out=out[s : s + sub, :, None])
    return out


def _exact_rows(q_rows, ref, k, self_cols):
    """float32 top-k inner products of some query rows against all references
    (``self_cols``: each row's own reference column to exclude, or None)."""
    sims = q_rows @ ref.T
    if self_cols is not None:
        sims[torch.arange(len(self_cols), device=sims.device), self_cols] = -torch.inf
    return torch.topk(sims, k, dim=1, sorted=True)


@torch.no_grad()
def _bf16_knn(query, reference, k, leave_one_out, chunk_size, margin, device):
    q_all = torch.from_numpy(query).to(device)
    ref = q_all if leave_one_out else torch.from_numpy(reference).to(device)
    n_ref = ref.shape[0]
    chunk_size = bf16_rows(chunk_size, query.shape[0], n_ref)
    n_cand = min(k + int(margin), n_ref - int(leave_one_out))
    certify_all = n_cand == n_ref - int(leave_one_out)  # every reference re-ranked
    products = Bf16Products(ref, chunk_size)
    sub = max(1, _RERANK_BYTES // (n_cand * ref.shape[1] * 4))
    gather_buf = ref.new_empty((min(sub, chunk_size) * n_cand, ref.shape[1]))
    out_idx = np.empty((query.shape[0], k), dtype=np.int64)
    out_sim = np.empty((query.shape[0], k), dtype=np.float32)
    redone = 0
    for start in range(0, query.shape[0], chunk_size):
        block = q_all[start : start + chunk_size]
        m = block.shape[0]
        rows = torch.arange(m, device=device)
        approx = products(block)
        if leave_one_out:
            approx[rows, rows + start] = -torch.inf
        cand_val, cand = top_candidates(approx, n_cand)
        exact = _rerank(ref, cand, block, gather_buf, sub)
        sim, pos = torch.topk(exact, k, dim=1, sorted=True)
        idx = cand.gather(1, pos)
        if not certify_all:
            # A reference outside the candidates has ŝ ≤ min(candidate ŝ), so its
            # exact similarity is ≤ upper(that): below the k-th one, it cannot
            # enter the top k.
            bound = products.upper(
                cand_val.min(dim=1).values, products.row_error(block)
            )
            bad = (sim[:, -1].double() <= bound).nonzero().squeeze(1)
            redone += bad.numel()
            if bad.numel():
                self_cols = bad + start if leave_one_out else None
                sim[bad], idx[bad] = _exact_rows(block[bad], ref, k, self_cols)
        out_idx[start : start + m] = idx.cpu().numpy()
        out_sim[start : start + m] = sim.cpu().numpy()
    dist = np.maximum(2.0 - 2.0 * out_sim, 0.0, dtype=np.float32)
    return dist, out_idx, redone


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
