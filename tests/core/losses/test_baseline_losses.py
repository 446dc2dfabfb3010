"""Every PML-backed baseline against a brute-force loop of its formula
(docs/baselines.md#what-the-tests-check), float64, ≤ 1e-10."""

import math

import pytest
import torch

from dml_pipelines.core.losses import load_all

LOSSES = load_all()


def cos(a, b):
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def dist(a, b):
    a, b = a / a.norm(), b / b.norm()
    return float((a - b).norm())


def build(name, **args):
    return LOSSES.get(name)(embedding_size=6, num_classes=4, **args).double()


def pairs(y):
    n = len(y)
    pos = [(a, p) for a in range(n) for p in range(n) if a != p and y[a] == y[p]]
    neg = [(a, m) for a in range(n) for m in range(n) if y[a] != y[m]]
    return pos, neg


def test_c1_matches_loop(batch):
    x, y = batch
    pos, neg = pairs(y)
    m = 0.5
    ref = sum(1 - cos(x[a], x[p]) for a, p in pos) + sum(
        max(cos(x[a], x[n]) - m, 0) for a, n in neg
    )
    ref /= len(y)
    assert abs(float(build("contrastive_c1")(x, y)) - ref) < 1e-10


def test_c1_proxy_form_uses_all_reference_pairs(batch):
    x, y = batch
    g = torch.Generator().manual_seed(1)
    proxies = torch.nn.functional.normalize(
        torch.randn(4, 6, generator=g, dtype=torch.float64), dim=1
    )
    py = torch.arange(4)
    ref = 0.0
    for a in range(len(y)):
        for j in range(4):
            s = cos(x[a], proxies[j])
            ref += (1 - s) if y[a] == py[j] else max(s - 0.5, 0)
    ref /= len(y)
    got = build("contrastive_c1")(x, y, ref_embeddings=proxies, ref_labels=py)
    assert abs(float(got) - ref) < 1e-10


def test_c1_is_zero_when_positives_coincide_and_negatives_are_far():
    x = torch.tensor([[1.0, 0], [1.0, 0], [0, 1.0], [0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    assert float(build("contrastive_c1")(x, y)) == pytest.approx(0.0, abs=1e-12)
    x2 = torch.tensor([[1.0, 0], [0.8, 0.6], [0.6, 0.8], [0, 1.0]], dtype=torch.float64)
    assert float(build("contrastive_c1")(x2, y)) > 0


def test_self_pairs_are_not_positives():
    x = torch.tensor([[1.0, 0], [0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])  # no positives; negatives at s = 0 ≤ m
    assert float(build("contrastive_c1")(x, y)) == 0.0


def _mean_nonzero(terms):
    nz = [t for t in terms if t > 0]
    return sum(nz) / len(nz) if nz else 0.0


def test_c2_matches_loop(batch):
    x, y = batch
    pos, neg = pairs(y)
    mp, mn = 0.1, 0.9
    ref = _mean_nonzero(
        [max(dist(x[a], x[p]) - mp, 0) for a, p in pos]
    ) + _mean_nonzero([max(mn - dist(x[a], x[n]), 0) for a, n in neg])
    got = build("contrastive_c2", pos_margin=mp, neg_margin=mn)(x, y)
    assert abs(float(got) - ref) < 1e-10


def test_triplet_matches_loop(batch):
    x, y = batch
    m = 0.2
    n = len(y)
    terms = [
        max(dist(x[a], x[p]) - dist(x[a], x[k]) + m, 0)
        for a in range(n)
        for p in range(n)
        for k in range(n)
        if a != p and y[a] == y[p] and y[a] != y[k]
    ]
    got = build("triplet", margin=m)(x, y)
    assert abs(float(got) - _mean_nonzero(terms)) < 1e-10


def test_multi_similarity_matches_loop(batch):
    x, y = batch
    al, be, la = 2.0, 40.0, 0.5
    n = len(y)
    ref = 0.0
    for a in range(n):
        sp = sum(
            math.exp(-al * (cos(x[a], x[p]) - la))
            for p in range(n)
            if p != a and y[p] == y[a]
        )
        sn = sum(
            math.exp(be * (cos(x[a], x[k]) - la)) for k in range(n) if y[k] != y[a]
        )
        ref += math.log1p(sp) / al + math.log1p(sn) / be
    got = build("multi_similarity", alpha=al, beta=be, base=la)(x, y)
    assert abs(float(got) - ref / n) < 1e-10


def test_proxy_anchor_matches_loop(batch):
    x, y = batch
    y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2])  # class 3 absent
    loss = build("proxy_anchor", margin=0.1, alpha=32.0)
    P = loss.proxies.detach()
    al, de = 32.0, 0.1
    with_pos = [c for c in range(4) if (y == c).any()]
    pos = sum(
        math.log1p(
            sum(math.exp(-al * (cos(x[i], P[c]) - de)) for i in range(12) if y[i] == c)
        )
        for c in with_pos
    ) / len(with_pos)
    neg = (
        sum(
            math.log1p(
                sum(
                    math.exp(al * (cos(x[i], P[c]) + de))
                    for i in range(12)
                    if y[i] != c
                )
            )
            for c in range(4)
        )
        / 4
    )
    assert abs(float(loss(x, y)) - (pos + neg)) < 1e-10


def test_proxy_nca_pp_is_cosine_softmax_at_temperature(batch):
    x, y = batch
    T = 0.1
    loss = build("proxy_nca_pp", temperature=T)
    P = loss.proxies.detach()
    ref = 0.0
    for i in range(12):
        logits = [cos(x[i], P[c]) / T for c in range(4)]
        ref += -(logits[int(y[i])] - math.log(sum(math.exp(v) for v in logits)))
    assert abs(float(loss(x, y)) - ref / 12) < 1e-10


def test_soft_triple_matches_loop_without_regulariser(batch):
    x, y = batch
    la, gamma, delta, K = 20.0, 0.1, 0.01, 3
    loss = build(
        "soft_triple",
        centers_per_class=K,
        la=la,
        gamma=gamma,
        margin=delta,
        weight_reg_weight=0.0,
    )
    W = loss.fc.detach()  # (D, C*K), PML stores centres column-wise
    ref = 0.0
    for i in range(12):
        scores = []
        for c in range(4):
            s = [cos(x[i], W[:, c * K + k]) for k in range(K)]
            w = [math.exp(v / gamma) for v in s]
            sc = sum(wi * si for wi, si in zip(w, s, strict=True)) / sum(w)
            scores.append(la * (sc - (delta if c == int(y[i]) else 0.0)))
        ref += -(scores[int(y[i])] - math.log(sum(math.exp(v) for v in scores)))
    assert abs(float(loss(x, y)) - ref / 12) < 1e-8
