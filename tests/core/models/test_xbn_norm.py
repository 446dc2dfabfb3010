"""XBN moment matching (docs/methods/xbn.md Part B, properties 7–12): the
vectorised update against a float64 loop of the B.2 equation, and the spec's
properties on fresh random inputs (eps 0 and no re-normalisation where the
property needs exact moments)."""

import math

import pytest
import torch

from dml_pipelines.core.models.xbn_norm import (
    _covariance,
    batch_moments,
    match_covariance_,
    match_moments_,
    shrink,
)


def rand(n, d, seed, scale=1.0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + shift


def loop_xbn(memory, z, eps, unbiased, renormalize):
    """B.2 written out per dimension and per row, in Python floats."""
    n, d = memory.shape
    b = z.shape[0]
    corr = 1 if unbiased else 0
    out = [[0.0] * d for _ in range(n)]
    for j in range(d):
        col = [float(memory[i, j]) for i in range(n)]
        zc = [float(z[i, j]) for i in range(b)]
        mu_m, mu_z = sum(col) / n, sum(zc) / b
        s_m = math.sqrt(sum((v - mu_m) ** 2 for v in col) / (n - corr))
        s_z = math.sqrt(sum((v - mu_z) ** 2 for v in zc) / (b - corr))
        for i in range(n):
            out[i][j] = (col[i] - mu_m) / (s_m + eps) * s_z + mu_z
    if renormalize:
        for i in range(n):
            norm = math.sqrt(sum(v * v for v in out[i]))
            out[i] = [v / norm for v in out[i]]
    return torch.tensor(out, dtype=torch.float64)


def xbn(memory, z, eps=0.0, unbiased=False, renormalize=False):
    mean, var = batch_moments(z.double(), unbiased)
    out = memory.clone()
    match_moments_(out, mean.double(), var.double().sqrt(), eps, unbiased, renormalize)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    ("eps", "unbiased", "renormalize"),
    [(0.0, False, False), (1e-5, False, True), (0.3, True, True), (1e-5, True, False)],
)
def test_matches_a_float64_loop_of_the_equation(seed, eps, unbiased, renormalize):
    memory, z = rand(11, 5, seed, 2.0, 0.5), rand(6, 5, seed + 10)
    got = xbn(memory, z, eps, unbiased, renormalize)
    ref = loop_xbn(memory, z, eps, unbiased, renormalize)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("unbiased", [False, True])
def test_memory_takes_the_batch_moments(unbiased):  # property 7
    memory, z = rand(40, 6, 3, 0.3, -1.0), rand(8, 6, 4, 2.0, 0.7)
    out = xbn(memory, z, unbiased=unbiased)
    corr = int(unbiased)
    torch.testing.assert_close(out.mean(0), z.mean(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(
        out.std(0, correction=corr), z.std(0, correction=corr), rtol=0, atol=1e-6
    )


def test_second_update_with_the_same_batch_changes_nothing():  # property 8
    memory, z = rand(30, 4, 5, 3.0), rand(8, 4, 6)
    once = xbn(memory, z)
    torch.testing.assert_close(xbn(once, z), once, rtol=0, atol=1e-12)


def test_identity_when_the_memory_already_has_the_batch_moments():  # property 9
    z = rand(8, 4, 7)
    memory = rand(25, 4, 8)
    # give the memory the batch's moments exactly (standardise, then colour)
    memory = (memory - memory.mean(0)) / memory.std(0, correction=0)
    memory = memory * z.std(0, correction=0) + z.mean(0)
    torch.testing.assert_close(xbn(memory, z), memory, rtol=0, atol=1e-12)


def test_invariant_to_a_positive_affine_map_of_the_memory():  # property 10
    memory, z = rand(20, 5, 9), rand(8, 5, 10)
    g = torch.Generator().manual_seed(11)
    a = torch.rand(5, generator=g, dtype=torch.float64) * 5 + 0.1
    b = torch.randn(5, generator=g, dtype=torch.float64) * 3
    torch.testing.assert_close(
        xbn(memory * a + b, z), xbn(memory, z), rtol=0, atol=1e-10
    )


def test_rows_are_mapped_one_to_one_in_order():  # property 11
    memory, z = rand(15, 3, 12), rand(8, 3, 13)
    perm = torch.randperm(15, generator=torch.Generator().manual_seed(0))
    out = xbn(memory, z, eps=1e-5, renormalize=True)
    torch.testing.assert_close(
        xbn(memory[perm], z, eps=1e-5, renormalize=True), out[perm]
    )
    # without re-normalisation each dimension is an increasing affine map
    plain = xbn(memory, z)
    assert torch.equal(plain.argsort(dim=0), memory.argsort(dim=0))


def test_renormalised_rows_have_unit_norm():  # property 12
    memory, z = rand(30, 6, 14, 0.2, 0.1), rand(8, 6, 15)
    out = xbn(memory, z, eps=1e-5, renormalize=True)
    torch.testing.assert_close(
        out.norm(dim=1), torch.ones(30, dtype=torch.float64), rtol=0, atol=1e-12
    )


def test_update_is_in_place_in_float32_too():
    memory, z = rand(12, 4, 16).float(), rand(8, 4, 17).float()
    ptr = memory.data_ptr()
    mean, var = batch_moments(z)
    out = match_moments_(memory, mean, var.sqrt(), 1e-5, False, True)
    assert out.data_ptr() == ptr and out.dtype == torch.float32


def test_duplicates_constant_dimensions_and_one_row_batches_stay_finite():
    memory = torch.ones(10, 3, dtype=torch.float64)  # every row identical
    z = torch.ones(4, 3, dtype=torch.float64)  # identical batch: std 0
    out = xbn(memory, z, eps=0.0, renormalize=True)
    assert torch.isfinite(out).all()
    z2 = rand(4, 3, 18)
    assert torch.isfinite(xbn(memory, z2, eps=0.0)).all()
    torch.testing.assert_close(xbn(memory, z2, eps=0.0).mean(0), z2.mean(0))
    with pytest.raises(ValueError, match="at least 2 rows"):
        batch_moments(torch.ones(1, 3), unbiased=True)


def test_full_covariance_takes_the_shrunk_batch_covariance():
    memory, z = rand(200, 4, 19, 0.5), rand(16, 4, 20, 2.0, 1.0)
    out = memory.clone()
    match_covariance_(out, z, eps=1e-9, unbiased=False, renormalize=False)
    c = out - out.mean(0)
    zc = z - z.mean(0)
    torch.testing.assert_close(out.mean(0), z.mean(0), rtol=0, atol=1e-10)
    torch.testing.assert_close(
        c.T @ c / 200, shrink(zc.T @ zc / 16, 0.1), rtol=0, atol=1e-10
    )


def test_full_covariance_with_rank_deficient_batch_stays_finite_and_unit_norm():
    memory, z = rand(50, 12, 21), rand(4, 12, 22)  # b < D
    out = memory.clone().float()
    match_covariance_(out, z.float(), renormalize=True, shrinkage=0.5)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(50))


def test_batch_moments_biased_by_default_in_float32_and_row_counts():
    g = torch.Generator().manual_seed(40)
    z = torch.randn(5, 3, generator=g)
    mean, var = batch_moments(z)
    torch.testing.assert_close(var, z.var(dim=0, correction=0))
    torch.testing.assert_close(mean, z.mean(dim=0))
    _, var_u = batch_moments(z, unbiased=True)
    torch.testing.assert_close(var_u, z.var(dim=0, correction=1))
    half = batch_moments(z.bfloat16())
    assert half[0].dtype == half[1].dtype == torch.float32
    assert batch_moments(z[:1])[1].tolist() == [0.0, 0.0, 0.0]  # one row, biased
    assert batch_moments(z[:2], unbiased=True)[1].shape == (3,)
    with pytest.raises(ValueError) as info:
        batch_moments(z[:1], unbiased=True)
    assert str(info.value) == "xbn: moments need at least 2 rows, got 1"
    with pytest.raises(ValueError, match=r"at least 1 rows, got 0$"):
        batch_moments(z[:0])


def test_shrink_and_covariance_against_their_formulas():
    c = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 3.0]]).double()
    expected = 0.75 * c + 0.25 * (6.0 / 3) * torch.eye(3, dtype=torch.float64)
    got = shrink(c, 0.25)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)
    g = torch.Generator().manual_seed(41)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(_covariance(x, True), torch.cov(x.T, correction=1))
    torch.testing.assert_close(_covariance(x, False), torch.cov(x.T, correction=0))
