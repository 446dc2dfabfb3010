"""The GSP pooling layer (docs/methods/gsp.md#definitions): a naive float64 oracle of
the whole layer, GAP cases, invariances, the GAP memory and the greedy k-center
prototype initialisations (from the GAP memory, from classifier rows)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dml_pipelines.core.models.gsp_pooling import (
    GeneralizedSumPooling,
    greedy_kcenter,
)
from dml_pipelines.core.models.gsp_transport import lipschitz_normalize, transport_plan
from dml_pipelines.core.models.pooling import POOLINGS


def make(c=6, d=5, k=3, seed=0, **args):
    torch.manual_seed(seed)
    pool = GeneralizedSumPooling(dim=d, num_prototypes=k, init="none", **args)
    head = nn.Linear(c, d, bias=False)
    return pool.double(), head.double()


def fmap(b=2, c=6, h=3, w=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g, dtype=torch.float64)


def oracle(f, weight, protos, mu, gamma):
    """Naive loops of the definitions (inputs, transport, pooled vectors): g (D,), z
    (K,) of one image (C, h, w)."""
    f, weight, protos = (np.asarray(a, dtype=np.float64) for a in (f, weight, protos))
    c = f.shape[0]
    feats = f.reshape(c, -1).T  # (n, C)
    n, k = len(feats), len(protos)
    v = [weight @ feats[i] for i in range(n)]

    def clip(u):
        return u / max(1.0, math.sqrt(float(u @ u)))

    cost = [
        [
            math.sqrt(float(((clip(protos[j]) - clip(v[i])) ** 2).sum()))
            for i in range(n)
        ]
        for j in range(k)
    ]
    s = [sum(math.exp(-gamma * cost[j][i]) for j in range(k)) for i in range(n)]
    lo, hi = -60.0, 60.0
    for _ in range(200):
        mid = (lo + hi) / 2
        moved = sum(
            math.exp(mid) * s[i] / (n * (1 + math.exp(mid) * s[i])) for i in range(n)
        )
        lo, hi = (mid, hi) if moved < mu else (lo, mid)
    beta = math.exp((lo + hi) / 2)
    rho = [1 / n / (1 + beta * s[i]) for i in range(n)]
    pi = [
        [beta * math.exp(-gamma * cost[j][i]) * rho[i] for i in range(n)]
        for j in range(k)
    ]
    t = [sum(pi[j][i] for j in range(k)) / mu for i in range(n)]
    g = sum(t[i] * v[i] for i in range(n))
    z = [sum(pi[j]) / mu for j in range(k)]
    return g, np.array(z), np.array(t)


def test_registered_and_dim_is_required():
    assert POOLINGS.get("gsp") is GeneralizedSumPooling
    with pytest.raises(ValueError, match="pooling.args.dim: gsp needs"):
        GeneralizedSumPooling()
    with pytest.raises(ValueError, match="pooling.args.transport_ratio"):
        GeneralizedSumPooling(dim=4, transport_ratio=1.5)
    with pytest.raises(ValueError, match="pooling.args.init_memory_size"):
        GeneralizedSumPooling(dim=4, num_prototypes=8, init_memory_size=8)


@pytest.mark.parametrize(("mu", "gamma"), [(0.3, 5.0), (0.5, 2.0)])
def test_layer_matches_the_naive_oracle(mu, gamma):
    pool, head = make(transport_ratio=mu, entropy_weight=gamma)
    with torch.no_grad():
        pool.prototypes.mul_(3)  # some prototypes outside the unit ball
    x = fmap()
    out = pool(x, head)
    for b in range(2):
        g, z, t = oracle(
            x[b], head.weight.detach(), pool.prototypes.detach(), mu, gamma
        )
        np.testing.assert_allclose(out["embedding"][b].detach().numpy(), g, atol=1e-12)
        np.testing.assert_allclose(out["aux"][b].detach().numpy(), z, atol=1e-12)
        np.testing.assert_allclose(out["weights"][b].detach().numpy(), t, atol=1e-12)


def test_weights_and_attributes_are_distributions():
    pool, head = make(k=4, transport_ratio=0.3)
    x = fmap(b=3, h=4, w=4)
    out = pool(x, head)
    t, z, n = out["weights"], out["aux"], 16
    assert (t >= 0).all() and (t <= 1 / (n * 0.3) + 1e-12).all()
    torch.testing.assert_close(t.sum(dim=1), torch.ones(3, dtype=t.dtype))
    assert (z >= 0).all()
    torch.testing.assert_close(z.sum(dim=1), torch.ones(3, dtype=z.dtype))
    # the code form (1 − nρ)/μ equals n·t
    v = x.flatten(2).transpose(1, 2) @ head.weight.T
    costs = torch.cdist(
        lipschitz_normalize(pool.prototypes)[None].expand(3, -1, -1),
        lipschitz_normalize(v),
    )
    rho = transport_plan(costs, 0.3, 5.0, 100)[:, 0]
    torch.testing.assert_close((1 - n * rho) / 0.3, n * t)


def test_gamma_zero_gives_exactly_w_gap():
    for mu in (0.1, 0.3, 0.8):
        pool, head = make(transport_ratio=mu, entropy_weight=0.0)
        x = fmap()
        torch.testing.assert_close(
            pool(x, head)["embedding"], head(x.mean(dim=(2, 3))), rtol=0, atol=1e-15
        )


def test_equidistant_features_give_w_gap():
    # one prototype at the origin, every feature outside the ball: all costs = 1
    pool, head = make(k=1, entropy_weight=5.0)
    with torch.no_grad():
        pool.prototypes.zero_()
        head.weight.mul_(100)
    x = fmap().abs() + 1
    torch.testing.assert_close(
        pool(x, head)["embedding"], head(x.mean(dim=(2, 3))), rtol=0, atol=1e-13
    )


def test_invariant_to_spatial_and_prototype_permutations():
    pool, head = make(k=4)
    x = fmap(h=3, w=3)
    out = pool(x, head)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(2))
    shuffled = x.flatten(2)[:, :, perm].reshape_as(x)
    out2 = pool(shuffled, head)
    torch.testing.assert_close(out2["embedding"], out["embedding"])
    torch.testing.assert_close(out2["aux"], out["aux"])
    kperm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        pool.prototypes.copy_(pool.prototypes[kperm])
    out3 = pool(x, head)
    torch.testing.assert_close(out3["embedding"], out["embedding"])
    torch.testing.assert_close(out3["aux"], out["aux"][:, kperm])


def test_weighted_max_and_augment_max_pool():
    pool, head = make(operator="weighted_max", augment_max_pool=True)
    x = fmap()
    out = pool(x, head)
    n = 12
    w = n * out["weights"]  # (1 − nρ)/μ
    expected = (w[:, None, :] * x.flatten(2)).amax(dim=2)
    torch.testing.assert_close(out["pooled"], expected)
    torch.testing.assert_close(
        out["embedding"], head(expected) + head(x.amax(dim=(2, 3)))
    )


def test_duplicate_features_and_zero_costs_stay_finite():
    pool, head = make(k=2)
    x = fmap(b=2, h=2, w=2)[:, :, :1, :1].expand(-1, -1, 2, 2).contiguous()
    with torch.no_grad():  # prototype 0 exactly at image 0's (clipped) feature
        v = head(x[0, :, 0, 0])
        pool.prototypes[0] = v / v.norm().clamp_min(1)
    x.requires_grad_(True)
    out = pool(x, head)
    (out["embedding"].sum() + out["aux"][:, 0].sum()).backward()
    for t in (out["embedding"], out["aux"], x.grad, pool.prototypes.grad):
        assert torch.isfinite(t).all()
    torch.testing.assert_close(out["weights"], torch.full_like(out["weights"], 0.25))


def kcenter_brute(points, seeds, k):
    chosen = []
    for _ in range(k):
        best, best_d = None, -1.0
        for i, p in enumerate(points.tolist()):
            if i in chosen:
                continue
            ref = seeds.tolist() + [points[j].tolist() for j in chosen]
            d = min(sum((a - b) ** 2 for a, b in zip(p, q, strict=True)) for q in ref)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def covering_radius(points, centres):
    return float(torch.cdist(points, centres).amin(dim=1).max())


def test_greedy_kcenter_equals_brute_force_and_shrinks_the_cover():
    g = torch.Generator().manual_seed(3)
    points = torch.randn(40, 3, generator=g, dtype=torch.float64)
    seeds = torch.randn(5, 3, generator=g, dtype=torch.float64)
    idx = greedy_kcenter(points, seeds, 6)
    assert idx.tolist() == kcenter_brute(points, seeds, 6)
    assert len(set(idx.tolist())) == 6
    assert covering_radius(points, torch.cat([seeds, points[idx]])) <= covering_radius(
        points, seeds
    )


def test_memory_fills_then_prototypes_are_set_in_place_by_kcenter():
    torch.manual_seed(0)
    pool = GeneralizedSumPooling(dim=4, num_prototypes=3, init_memory_size=10)
    head = nn.Linear(6, 4, bias=False)
    param = pool.prototypes
    x = fmap(b=4, seed=5).float()
    out = pool(x, head)  # before initialisation: plain GAP, zero attributes
    torch.testing.assert_close(out["embedding"], head(x.mean(dim=(2, 3))))
    assert torch.equal(out["aux"], torch.zeros(4, 3))
    rows = [torch.randn(4, 4) for _ in range(3)]
    assert pool.observe(rows[0]) is False and pool.observe(rows[1]) is False
    assert int(pool.memory_count) == 8 and not bool(pool.initialized)
    # the third batch does not fit (2 rows left): as the official code, it is
    # written over the last 4 rows, overwriting the tail of the second batch
    assert pool.observe(rows[2]) is True
    memory = torch.cat([rows[0], rows[1][:2], rows[2]])
    torch.testing.assert_close(pool.memory, memory)
    idx = kcenter_brute(memory[3:].double(), memory[:3].double(), 3)
    assert pool.prototypes is param  # the optimiser keeps the same Parameter
    torch.testing.assert_close(pool.prototypes.detach(), memory[3:][idx])
    assert pool.observe(rows[0]) is False  # once only
    torch.testing.assert_close(pool.prototypes.detach(), memory[3:][idx])
    assert pool(x, head)["aux"].sum(dim=1).allclose(torch.ones(4))


def test_init_delay_steps_postpone_the_memory():
    pool = GeneralizedSumPooling(
        dim=2, num_prototypes=1, init_memory_size=2, init_delay_steps=2
    )
    for _ in range(2):
        pool.observe(torch.ones(2, 2))
    assert int(pool.memory_count) == 0
    assert pool.observe(torch.ones(2, 2)) is True


def test_classifier_kcenter_picks_classifier_rows_once_in_place():
    """Classifier k-center initialisation: row 0, then K − 1 rows by farthest-point
    selection."""
    torch.manual_seed(0)
    pool = GeneralizedSumPooling(dim=4, num_prototypes=5, init="classifier_kcenter")
    head = nn.Linear(6, 4)
    param = pool.prototypes
    assert len(pool.memory) == 0  # no GAP memory for this initialisation
    x = fmap(b=3, seed=2).float()
    out = pool(x, head)  # before the rows are handed over: plain GAP
    torch.testing.assert_close(out["embedding"], head(x.mean(dim=(2, 3))))
    rows = torch.randn(12, 4, generator=torch.Generator().manual_seed(4))
    assert pool.initialize_from_rows(rows) is True
    picked = [0] + [1 + i for i in kcenter_brute(rows[1:].double(), rows[:1], 4)]
    assert len(set(picked)) == 5
    assert pool.prototypes is param  # in place: an optimiser keeps it
    assert torch.equal(pool.prototypes.detach(), rows[picked])
    assert bool(pool.initialized)
    assert pool.initialize_from_rows(torch.randn(12, 4)) is False  # once only
    assert torch.equal(pool.prototypes.detach(), rows[picked])
    assert pool(x, head)["aux"].sum(dim=1).allclose(torch.ones(3))


def test_classifier_kcenter_needs_k_rows_of_the_prototype_size():
    pool = GeneralizedSumPooling(dim=4, num_prototypes=5, init="classifier_kcenter")
    for rows in (torch.randn(4, 4), torch.randn(9, 3)):
        with pytest.raises(ValueError, match="classifier_kcenter picks 5"):
            pool.initialize_from_rows(rows)
    assert not bool(pool.initialized)
