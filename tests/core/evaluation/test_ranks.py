from __future__ import annotations

import numpy as np
import pytest

from dml_pipelines.core.evaluation.ranks import (
    NO_POSITIVE,
    first_positive_ranks,
    positive_table,
)


def _brute_ranks(query, q_labels, ref, r_labels, normalized):
    """Oracle: float64 count of non-positive references scoring above the best
    positive (self excluded in leave-one-out mode); NO_POSITIVE without one."""
    loo = ref is None
    r = query if loo else ref
    r_labels = q_labels if loo else r_labels
    q64, r64 = query.astype(np.float64), r.astype(np.float64)
    scores = q64 @ r64.T
    if not normalized:
        scores -= 0.5 * (r64 * r64).sum(1)
    out = []
    for i in range(len(query)):
        same = r_labels == q_labels[i]
        if loo:
            same[i] = False
        if not same.any():
            out.append(NO_POSITIVE)
            continue
        other = ~same
        if loo:
            other[i] = False
        out.append(int((scores[i, other] > scores[i, same].max()).sum()))
    return np.array(out, dtype=np.int64)


def _data(seed, n_q, n_r, dim=16, classes=60, noise=1.4):
    """Clustered unit vectors; a few queries have no positive (singletons in
    leave-one-out mode, labels absent from the gallery otherwise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes + 5, dim))
    qy = rng.integers(0, classes, n_q)
    qy[:5] = classes + np.arange(5)  # unique labels
    q = centres[qy] + noise * rng.standard_normal((n_q, dim))
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    if n_r is None:
        return q, qy, None, None
    ry = rng.integers(0, classes, n_r)
    r = centres[ry] + noise * rng.standard_normal((n_r, dim))
    r = (r / np.linalg.norm(r, axis=1, keepdims=True)).astype(np.float32)
    return q, qy, r, ry


def test_positive_table_hand_case():
    q_labels = np.array([5, 7, 5, 9])
    r_labels = np.array([7, 5, 5, 3, 5])
    idx, ok = positive_table(q_labels, r_labels, leave_one_out=False)
    assert idx.shape == (4, 3)
    assert [sorted(idx[i][ok[i]]) for i in range(4)] == [[1, 2, 4], [0], [1, 2, 4], []]
    assert not ok[3].any() and (idx[1][~ok[1]] == 0).all()  # padded with a positive
    # leave-one-out: the query itself is not a positive, its slot points at itself
    labels = np.array([1, 2, 1, 1])
    idx, ok = positive_table(labels, labels, leave_one_out=True)
    assert [sorted(idx[i][ok[i]]) for i in range(4)] == [[2, 3], [], [0, 3], [0, 2]]
    assert all((idx[i][~ok[i]] == i).all() for i in range(4))


@pytest.mark.parametrize("leave_one_out", [True, False])
@pytest.mark.parametrize(
    "backend,normalized", [("torch", True), ("torch", False), ("bf16", True)]
)
def test_ranks_equal_brute_force_counts(backend, normalized, leave_one_out):
    q, qy, r, ry = _data(3, 400, None if leave_one_out else 500)
    if not normalized:
        q = q * np.linspace(0.5, 2.0, len(q), dtype=np.float32)[:, None]
        if r is not None:
            r = r * np.linspace(2.0, 0.5, len(r), dtype=np.float32)[:, None]
    labels_r = qy if leave_one_out else ry
    want = _brute_ranks(q, qy, r, ry, normalized)
    rows = np.arange(len(q))
    table = positive_table(qy, labels_r, leave_one_out)
    # Deciding at every K forces bf16 to count every undecided row exactly.
    every_k = range(1, 1001)
    got, redone = first_positive_ranks(
        q,
        r,
        rows,
        table,
        normalized=normalized,
        backend=backend,
        decide_at=every_k,
        chunk_size=77,
    )
    np.testing.assert_array_equal(got, want)
    assert (want == NO_POSITIVE).any() and (want > 20).any() and (want == 0).any()
    if backend == "bf16":
        assert 0 < redone < len(rows)  # some decided by the bound alone
        # Deciding at a few K only: the hit/miss verdicts equal the exact ones.
        ks = (5, 25, 100)
        some, _ = first_positive_ranks(
            q, r, rows[::2], table, normalized=True, backend="bf16", decide_at=ks
        )
        for kk in ks:
            np.testing.assert_array_equal(some < kk, want[::2] < kk)


def test_bf16_ranks_need_normalised_vectors():
    q, qy, _, _ = _data(4, 20, None)
    table = positive_table(qy, qy, True)
    with pytest.raises(ValueError, match="bf16 needs"):
        first_positive_ranks(
            q,
            None,
            np.arange(20),
            table,
            normalized=False,
            backend="bf16",
            decide_at=(10,),
        )


def test_bf16_floor_keeps_every_comparison():
    import torch

    from dml_pipelines.core.evaluation.ranks import bf16_floor

    g = torch.Generator().manual_seed(0)
    t = torch.cat([torch.randn(500, generator=g) * 0.3, torch.tensor([0.0, -0.0, 1.0])])
    values = (torch.randn(4000, generator=g) * 0.3).bfloat16()
    values = torch.cat([values, t.bfloat16()])  # thresholds' own neighbours
    floor = bf16_floor(t)
    assert floor.dtype == torch.bfloat16 and bool((floor.float() <= t).all())
    want = values.float()[None, :] > t[:, None]
    np.testing.assert_array_equal(values[None, :] > floor[:, None], want)
