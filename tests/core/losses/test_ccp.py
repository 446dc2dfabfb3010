"""CCP's instance loss (docs/methods/ccp.md, "What was verified"): each of the four
pair losses in proxy form and in-batch form against a float64 loop of the spec's
formula, the 1.0 / 0.1 weighting, M = 1, permutations within a class, edge
cases."""

import math

import pytest
import torch

from dml_pipelines.core.losses import load_all
from dml_pipelines.core.losses.ccp import ProxyPairLoss, proxy_labels, sparse_triplets

LOSSES = load_all()
ARGS = {  # the CUB row of the supplement (C1: m = 0.5)
    "contrastive_c1": {"margin": 0.5},
    "contrastive_c2": {"pos_margin": 0.1, "neg_margin": 0.3841},
    "multi_similarity": {"alpha": 2.0, "beta": 40.0, "base": 0.5},
    "triplet": {"margin": 0.0961},
}
NAMES = tuple(ARGS)


def pair_loss(name, distance="clip_to_ball"):
    builder = LOSSES.get(name)
    return builder(
        embedding_size=5, num_classes=3, distance=distance, **ARGS[name]
    ).double()


def lipschitz(v):
    return v / max(1.0, float(v.norm()))


def unit(v):
    return v / float(v.norm())


def oracle(name, x, y, refs, ref_y, same, norm=lipschitz):
    """The spec's formula (§3.3) as loops; ``same``: references are the anchors
    (self-pairs excluded)."""
    a_n = [norm(v) for v in x]
    r_n = [norm(v) for v in refs]
    s = [[float(a @ r) for r in r_n] for a in a_n]
    d = [[float((a - r).norm()) for r in r_n] for a in a_n]
    pos = [
        [j for j in range(len(refs)) if ref_y[j] == y[i] and not (same and i == j)]
        for i in range(len(x))
    ]
    neg = [[j for j in range(len(refs)) if ref_y[j] != y[i]] for i in range(len(x))]
    args = ARGS[name]
    if name == "contrastive_c1":
        m = args["margin"]
        total = sum(1 - s[i][j] for i in range(len(x)) for j in pos[i])
        total += sum(max(s[i][j] - m, 0) for i in range(len(x)) for j in neg[i])
        return total / len(x)
    if name == "contrastive_c2":
        pt = [
            max(d[i][j] - args["pos_margin"], 0) for i in range(len(x)) for j in pos[i]
        ]
        nt = [
            max(args["neg_margin"] - d[i][j], 0) for i in range(len(x)) for j in neg[i]
        ]
        return mean_nonzero(pt) + mean_nonzero(nt)
    if name == "multi_similarity":
        al, be, la = args["alpha"], args["beta"], args["base"]
        total = 0.0
        for i in range(len(x)):
            sp = sum(math.exp(-al * (s[i][j] - la)) for j in pos[i])
            sn = sum(math.exp(be * (s[i][j] - la)) for j in neg[i])
            total += math.log1p(sp) / al + math.log1p(sn) / be
        return total / len(x)
    m = args["margin"]
    terms = [
        max(d[i][p] - d[i][n] + m, 0)
        for i in range(len(x))
        for p in pos[i]
        for n in neg[i]
    ]
    return mean_nonzero(terms)


def mean_nonzero(terms):
    nz = [t for t in terms if t > 0]
    return sum(nz) / len(nz) if nz else 0.0


def data(seed, n_classes=3, per_class=3, m=2, dim=5):
    """Batch and m-major proxies with norms on both sides of 1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_classes * per_class, dim, generator=g, dtype=torch.float64)
    x = x * torch.empty(len(x), 1, dtype=torch.float64).uniform_(0.3, 2.0, generator=g)
    y = torch.arange(n_classes).repeat_interleave(per_class)
    p = torch.randn(n_classes * m, dim, generator=g, dtype=torch.float64)
    p = p * torch.empty(len(p), 1, dtype=torch.float64).uniform_(0.3, 2.0, generator=g)
    return x, y, p, proxy_labels(n_classes, m)


def test_proxy_labels_are_m_major():
    assert proxy_labels(3, 2).tolist() == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_proxy_and_batch_terms_match_the_loop(name, seed):
    x, y, p, py = data(seed)
    loss = ProxyPairLoss(pair_loss(name), 1.0, 0.1)
    got, logs = loss(x, y, p, py)
    proxy = oracle(name, x, y, p, py, same=False)
    batch = oracle(name, x, y, x, y, same=True)
    assert abs(logs["proxy_loss"] - proxy) < 1e-10
    assert abs(logs["batch_loss"] - batch) < 1e-10
    assert abs(float(got) - (proxy + 0.1 * batch)) < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_l2_normalisation_variant_matches_the_loop(name):
    x, y, p, py = data(2)
    got, _ = ProxyPairLoss(pair_loss(name, "normalised"), 1.0, 0.0)(x, y, p, py)
    assert abs(float(got) - oracle(name, x, y, p, py, False, norm=unit)) < 1e-10


def test_clip_differs_from_l2_inside_the_ball():
    x, y, p, py = data(3)
    x, p = x * 0.1, p * 0.1  # all norms < 1: clipping leaves them as they are
    clip, _ = ProxyPairLoss(pair_loss("contrastive_c1"), 1.0, 0.0)(x, y, p, py)
    l2, _ = ProxyPairLoss(pair_loss("contrastive_c1", "normalised"), 1.0, 0.0)(
        x, y, p, py
    )
    assert abs(float(clip) - float(l2)) > 1e-3


@pytest.mark.parametrize("name", NAMES)
def test_one_proxy_per_class_without_batch_term_is_the_single_proxy_loss(name):
    x, y, p, py = data(4, m=1)
    got, logs = ProxyPairLoss(pair_loss(name), 1.0, 0.0)(x, y, p, py)
    assert set(logs) == {"proxy_loss"}
    plain = pair_loss(name)(x, y, ref_embeddings=p, ref_labels=torch.arange(3))
    assert float(got) == pytest.approx(float(plain), abs=1e-12)
    assert abs(float(got) - oracle(name, x, y, p, torch.arange(3), False)) < 1e-10


@pytest.mark.parametrize("name", NAMES)
def test_permuting_proxies_within_a_class_leaves_the_loss_unchanged(name):
    x, y, p, py = data(5, m=3)
    loss = ProxyPairLoss(pair_loss(name), 1.0, 0.1)
    before, _ = loss(x, y, p, py)
    per_class = p.reshape(3, 3, -1)  # (M, C, D)
    g = torch.Generator().manual_seed(0)
    shuffled = torch.stack(
        [per_class[torch.randperm(3, generator=g), c] for c in range(3)], dim=1
    ).reshape(9, -1)
    assert not torch.equal(shuffled, p)
    after, _ = loss(x, y, shuffled, py)
    assert float(after) == pytest.approx(float(before), abs=1e-12)
    moved = p.clone()
    moved[[0, 1]] = p[[1, 0]]  # swap proxies of two different classes
    other, _ = loss(x, y, moved, py)
    assert abs(float(other) - float(before)) > 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_edge_cases_give_finite_values_and_gradients(name):
    loss = ProxyPairLoss(pair_loss(name), 1.0, 0.1)
    x, y, p, py = data(6)
    dup = x[:1].repeat(len(x), 1).requires_grad_()  # duplicates everywhere
    value, _ = loss(dup, y, p, py)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(dup.grad).all()
    one = torch.zeros_like(y)  # one class: no negatives at all
    value, _ = loss(x, one, p[::3][:2], torch.zeros(2, dtype=torch.long))
    assert torch.isfinite(value)
    lone = torch.arange(len(x))  # no in-batch positives; most without a proxy
    value, logs = loss(x, lone, p, py)
    assert torch.isfinite(value) and math.isfinite(logs["batch_loss"])


def test_proxies_get_gradient_only_from_the_proxy_term():
    x, y, p, py = data(7)
    p = p.clone().requires_grad_()
    loss, _ = ProxyPairLoss(pair_loss("contrastive_c2"), 1.0, 0.1)(x, y, p, py)
    loss.backward()
    assert p.grad.abs().sum() > 0
    q = p.detach().clone().requires_grad_()
    x = x.clone().requires_grad_()
    batch_only = ProxyPairLoss(pair_loss("contrastive_c2"), 0.0, 0.1)
    value, logs = batch_only(x, y, q, py)
    assert set(logs) == {"batch_loss"}
    value.backward()
    assert q.grad is None and x.grad.abs().sum() > 0


def test_negative_weights_are_rejected():
    with pytest.raises(ValueError, match="batch_loss_weight"):
        ProxyPairLoss(pair_loss("triplet"), 1.0, -0.1)


@pytest.mark.parametrize("seed", [0, 1])
def test_sparse_triplets_equal_the_dense_mask_triplets(seed):
    g = torch.Generator().manual_seed(seed)
    pos = torch.rand(5, 7, generator=g) < 0.3
    neg = (torch.rand(5, 7, generator=g) < 0.6) & ~pos
    neg[2] = False  # an anchor without negatives
    dense = torch.nonzero(pos[:, :, None] & neg[:, None, :], as_tuple=True)
    sparse = sparse_triplets(pos, neg)
    assert len(dense[0]) > 0
    for d, s in zip(dense, sparse, strict=True):
        assert torch.equal(d, s)


def test_triplet_proxy_term_equals_the_dense_pair_loss():
    x, y, p, py = data(8, m=3)
    pair = pair_loss("triplet")
    got, _ = ProxyPairLoss(pair, 1.0, 0.0)(x, y, p, py)
    dense = pair(x, y, ref_embeddings=p, ref_labels=py)
    assert float(got) == pytest.approx(float(dense), abs=1e-12)
