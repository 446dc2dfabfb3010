from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from dml_pipelines.core.evaluation import knn as knn_mod
from dml_pipelines.core.evaluation.knn import (
    Bf16Products,
    faiss_device,
    gpu_max_k,
    knn,
    remove_self,
    resolve_backend,
    top_candidates,
)


def _brute_force(query, reference, k, leave_one_out):
    """Oracle: float64 squared distances, order by (distance, reference index)."""
    q = query.astype(np.float64)
    r = q if reference is None else reference.astype(np.float64)
    d = ((q[:, None, :] - r[None, :, :]) ** 2).sum(-1)
    if leave_one_out:
        np.fill_diagonal(d, np.inf)
    cols = np.arange(d.shape[1])
    order = np.array([np.lexsort((cols, row))[:k] for row in d])
    return order, np.take_along_axis(d, order, axis=1)


@pytest.mark.parametrize("normalized", [True, False])
@pytest.mark.parametrize("leave_one_out", [True, False])
def test_faiss_and_torch_agree_with_brute_force(normalized, leave_one_out, monkeypatch):
    monkeypatch.setattr(knn_mod, "_FAISS_BLOCK", 64)  # several faiss query blocks
    rng = np.random.default_rng(1)
    q = rng.standard_normal((300, 24)).astype(np.float32)
    r = None if leave_one_out else rng.standard_normal((410, 24)).astype(np.float32)
    if normalized:
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        if r is not None:
            r /= np.linalg.norm(r, axis=1, keepdims=True)
    k = 15
    want_idx, want_d = _brute_force(q, r, k, leave_one_out)
    got_f = knn(q, k, r, normalized=normalized, backend="faiss")
    got_t = knn(q, k, r, normalized=normalized, backend="torch", chunk_size=37)
    assert got_f.backend == "faiss" and got_t.backend == "torch"
    np.testing.assert_array_equal(got_f.indices, want_idx)
    np.testing.assert_array_equal(got_t.indices, want_idx)
    np.testing.assert_allclose(got_f.distances, want_d, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_t.distances, want_d, rtol=1e-4, atol=1e-4)
    assert got_t.indices.dtype == np.int64 and got_f.indices.dtype == np.int64


@pytest.mark.parametrize("margin", [0, 3, 24])
@pytest.mark.parametrize("leave_one_out", [True, False])
def test_bf16_search_is_exact(leave_one_out, margin):
    # Dense, clustered unit vectors: many near-equal similarities around the k-th
    # place. Margin 0 leaves most rows uncertified (searched again in float32).
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((20, 32))
    q = centres[rng.integers(0, 20, 500)] + 0.5 * rng.standard_normal((500, 32))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    r = None
    if not leave_one_out:
        r = centres[rng.integers(0, 20, 700)] + 0.5 * rng.standard_normal((700, 32))
        r = (r / np.linalg.norm(r, axis=1, keepdims=True)).astype(np.float32)
    k = 12
    want_idx, want_d = _brute_force(q, r, k, leave_one_out)
    got = knn(
        q, k, r, normalized=True, backend="bf16", chunk_size=97, bf16_margin=margin
    )
    assert got.backend == "bf16"
    np.testing.assert_array_equal(got.indices, want_idx)
    np.testing.assert_allclose(got.distances, want_d, rtol=1e-4, atol=1e-5)
    if margin == 0:
        assert got.exact_rows > 400
    elif margin == 24:
        assert got.exact_rows < 50


def test_bf16_with_every_reference_a_candidate():
    x = np.random.default_rng(8).standard_normal((40, 5)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    got = knn(x, 30, normalized=True, backend="bf16")  # 30 + margin > 39
    np.testing.assert_array_equal(got.indices, _brute_force(x, None, 30, True)[0])
    assert got.exact_rows == 0


@pytest.mark.parametrize("kind", ["gaussian", "half_ulp", "sparse"])
def test_bf16_error_bound_holds_and_is_useful(kind):
    rng = np.random.default_rng(9)
    d = 256
    if kind == "gaussian":
        x = rng.standard_normal((300, d))
        y = rng.standard_normal((400, d)) + 0.3
    elif kind == "half_ulp":
        # every component just short of a bfloat16 rounding midpoint: each input
        # rounds by almost half a unit in the last place (near-unit vectors)
        z = rng.standard_normal((700, d))
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        v = torch.from_numpy(z).float().bfloat16().double().numpy()
        ulp = 2.0 ** (np.floor(np.log2(np.abs(v))) - 7)
        z = v + 0.49 * ulp * rng.choice([-1.0, 1.0], size=v.shape)
        x, y = z[:300], z[300:]
    else:
        x = rng.standard_normal((300, d)) * (rng.random((300, d)) < 0.05)
        y = rng.standard_normal((400, d)) * (rng.random((400, d)) < 0.05)
        x[:, 0] += 1e-3
        y[:, 0] += 1e-3
    if kind != "half_ulp":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        y = y / np.linalg.norm(y, axis=1, keepdims=True)
    x, y = x.astype(np.float32), y.astype(np.float32)
    products = Bf16Products(torch.from_numpy(y), chunk_size=300)
    xt = torch.from_numpy(x)
    approx = products(xt).double()
    exact = torch.from_numpy(x.astype(np.float64) @ y.astype(np.float64).T)
    err = products.row_error(xt)[:, None]
    upper = Bf16Products.upper(approx, err)
    lower = approx - (upper - approx)
    assert bool((exact <= upper).all()) and bool((exact >= lower).all())
    assert float((approx - exact).abs().max()) > 0  # bfloat16 really is inexact
    assert float(err.max()) < 1.6 * 2.0**-8  # far tighter than the 3u textbook bound
    # margin(): ŝ > t + δ proves s > t, and s > t proves ŝ > t - δ
    t = exact[:, :1].expand_as(exact)
    delta = Bf16Products.margin(t, err.expand_as(exact))
    proved = approx > t + delta
    assert bool((exact[proved] > t[proved]).all())
    above = exact > t
    assert bool((approx[above] > (t - delta)[above]).all())


def test_auto_backend_resolution(monkeypatch):
    from dml_pipelines.core.evaluation import knn as knn_mod

    monkeypatch.setattr(knn_mod, "bf16_is_fast", lambda: True)
    assert resolve_backend("auto", normalized=True) == "bf16"
    assert resolve_backend("auto", normalized=False) == "faiss"
    monkeypatch.setattr(knn_mod, "bf16_is_fast", lambda: False)
    assert resolve_backend("auto", normalized=True) == "faiss"
    with pytest.raises(ValueError, match="bf16 needs L2-normalised"):
        resolve_backend("bf16", normalized=False)
    monkeypatch.setitem(sys.modules, "faiss", None)
    assert resolve_backend("auto", normalized=True) == "torch"


def test_torch_breaks_ties_by_distance_then_index():
    # Integer lattice points: many exactly equal distances, also at the k-th place.
    rng = np.random.default_rng(2)
    x = rng.integers(-2, 3, size=(200, 3)).astype(np.float32)
    for leave_one_out in (True, False):
        ref = None if leave_one_out else x[::-1].copy()
        want_idx, _ = _brute_force(x, ref, 9, leave_one_out)
        got = knn(x, 9, ref, backend="torch", chunk_size=64)
        np.testing.assert_array_equal(got.indices, want_idx)


@pytest.mark.parametrize("backend", ["faiss", "torch", "bf16"])
def test_self_exclusion_is_by_index_with_duplicates(backend):
    x = np.array([[1, 0], [1, 0], [0, 1], [0.1, 1], [-1, 0]], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    res = knn(x, 2, normalized=True, backend=backend)
    assert res.indices[0, 0] == 1 and res.indices[1, 0] == 0
    assert res.distances[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert not (res.indices == np.arange(5)[:, None]).any()


def test_remove_self_drops_own_index_or_last_column():
    idx = np.array([[0, 5, 6], [7, 1, 8], [4, 5, 6]])
    dist = idx.astype(np.float32) / 10
    got_i, got_d = remove_self(idx, dist)
    np.testing.assert_array_equal(got_i, [[5, 6], [7, 8], [4, 5]])
    np.testing.assert_allclose(got_d, [[0.5, 0.6], [0.7, 0.8], [0.4, 0.5]])
    got_i, _ = remove_self(idx, dist, offset=4)  # rows are queries 4, 5, 6
    np.testing.assert_array_equal(got_i, [[0, 5], [7, 1], [4, 5]])


def test_faiss_device_selection():
    assert faiss_device(2048, num_gpus=1) == "gpu"
    assert faiss_device(2049, num_gpus=1) == "cpu"
    assert faiss_device(5, num_gpus=0) == "cpu"
    assert faiss_device(1025, num_gpus=1, cuda_version="9.0") == "cpu"
    assert faiss_device(1024, num_gpus=1, cuda_version="9.0") == "gpu"
    assert gpu_max_k("12.4") == 2048 and gpu_max_k(None) == 2048


def test_gpu_with_k_above_cap_falls_back_to_cpu_and_results_unchanged(monkeypatch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2060, 4)).astype(np.float32)
    k = 2050  # leave-one-out searches k + 1 = 2051 > 2048
    want = knn(x, k, backend="faiss")
    # Pretend faiss sees a GPU: the GPU path would fail on faiss-cpu, so the search
    # must go to the CPU index.
    monkeypatch.setattr(knn_mod, "faiss_num_gpus", lambda faiss: 1)
    got = knn(x, k, backend="faiss")
    assert got.backend == "faiss"
    np.testing.assert_array_equal(got.indices, want.indices)
    # And with k within the cap the GPU path is really chosen (and fails here).
    with pytest.raises((AttributeError, RuntimeError)):
        knn(x, 10, backend="faiss")


def test_falls_back_to_torch_without_faiss(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` fail
    x = np.random.default_rng(4).standard_normal((50, 8)).astype(np.float32)
    res = knn(x, 3, backend="faiss")
    assert res.backend == "torch"
    np.testing.assert_array_equal(res.indices, _brute_force(x, None, 3, True)[0])


def test_invalid_arguments():
    x = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError, match="evaluation.knn_backend"):
        knn(x, 1, backend="annoy")
    with pytest.raises(ValueError, match=r"k=5"):
        knn(x, 5)  # only 4 references in leave-one-out mode
    with pytest.raises(ValueError, match="evaluation.knn_chunk_size"):
        knn(x, 1, backend="torch", chunk_size=0)


@pytest.mark.parametrize("n,n_cand", [(5000, 20), (997, 7), (300, 40)])
def test_top_candidates_equal_topk(n, n_cand):
    g = torch.Generator().manual_seed(n)
    approx = (torch.randn(64, n, generator=g) * 0.05 + 0.03).bfloat16()
    approx[:4] -= 1.0  # rows of negative values take the plain topk path
    approx[4, :] = 0.25  # a row of ties
    approx[5, ::7] = -torch.inf  # masked entries
    vals, cols = top_candidates(approx, n_cand)
    want, _ = torch.topk(approx, n_cand, dim=1)
    assert torch.equal(vals.float().sort(dim=1).values, want.float().sort(dim=1).values)
    assert torch.equal(approx.gather(1, cols), vals)
    assert all(len(set(row.tolist())) == n_cand for row in cols)  # distinct columns
