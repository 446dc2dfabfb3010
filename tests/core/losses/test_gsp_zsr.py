"""The zero-shot regression loss of GSP
(docs/methods/gsp.md#zero-shot-regression-zsr-loss): class split, dual ridge vs
scikit-learn's primal ridge, the loss vs a naive float64 loop, gradients into every
input, edge cases."""

import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

from dml_pipelines.core.losses.gsp_zsr import (
    ZeroShotRegressionLoss,
    class_halves,
    ridge_predict,
)


def test_class_split_is_disjoint_covering_and_in_order_of_appearance():
    labels = torch.tensor([7, 3, 7, 9, 1, 3, 9, 1, 5])
    a, b = class_halves(labels)
    assert torch.equal(a, ~b)
    assert set(labels[a].tolist()) == {7, 3, 9}  # first ⌈5/2⌉ = 3 classes seen
    assert set(labels[b].tolist()) == {1, 5}
    assert not set(labels[a].tolist()) & set(labels[b].tolist())
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # fresh random batches: halves never share a class
        y = torch.randint(0, 6, (12,), generator=g)
        if len(y.unique()) < 2:
            continue
        a, b = class_halves(y)
        assert a.sum() + b.sum() == 12 and not (a & b).any()
        assert not set(y[a].tolist()) & set(y[b].tolist())
        assert len(y[a].unique()) == math.ceil(len(y.unique()) / 2)


def test_one_class_is_a_clear_error():
    with pytest.raises(ValueError, match="zsr.enabled: .*at least 2 classes"):
        class_halves(torch.zeros(6, dtype=torch.long))


def test_dual_ridge_equals_sklearn_primal_ridge():
    g = torch.Generator().manual_seed(1)
    z = torch.rand(7, 5, generator=g, dtype=torch.float64)
    y = torch.randn(7, 3, generator=g, dtype=torch.float64)
    zt = torch.rand(4, 5, generator=g, dtype=torch.float64)
    ours = ridge_predict(z, y, zt, 0.05)
    ref = Ridge(alpha=0.05, fit_intercept=False).fit(z.numpy(), y.numpy())
    np.testing.assert_allclose(ours.numpy(), ref.predict(zt.numpy()), atol=1e-10)


def naive_loss(z, labels, e, ridge, scale):
    """Loop form of the ZSR loss in float64 (primal ridge W = (ZᵀZ + λI)⁻¹ZᵀY)."""
    z, e = np.asarray(z, dtype=np.float64), np.asarray(e, dtype=np.float64)
    labels = labels.tolist()
    order = list(dict.fromkeys(labels))
    first = set(order[: math.ceil(len(order) / 2)])
    a = [i for i, c in enumerate(labels) if c in first]
    b = [i for i, c in enumerate(labels) if c not in first]
    total = 0.0
    for fit, test in ((a, b), (b, a)):
        za, ya = z[fit], e[[labels[i] for i in fit]]
        w = np.linalg.solve(za.T @ za + ridge * np.eye(z.shape[1]), za.T @ ya)
        for i in test:
            pred = z[i] @ w
            logits = [scale * float(e[c] @ pred) for c in range(len(e))]
            m = max(logits)
            lse = m + math.log(sum(math.exp(v - m) for v in logits))
            total += lse - logits[labels[i]]
    return total / len(labels)


def test_loss_matches_the_naive_loop():
    torch.manual_seed(2)
    loss = ZeroShotRegressionLoss(num_classes=6, dim=4).double()
    g = torch.Generator().manual_seed(3)
    z = torch.softmax(torch.randn(10, 5, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([4, 4, 0, 0, 2, 2, 5, 5, 1, 1])
    value = loss(z, labels).detach()
    e = loss.class_embeddings.detach()
    assert float(value) == pytest.approx(naive_loss(z, labels, e, 0.05, 9.5), abs=1e-10)


def test_predictions_of_a_half_depend_only_on_the_other_half():
    torch.manual_seed(4)
    loss = ZeroShotRegressionLoss(num_classes=4, dim=3).double()
    g = torch.Generator().manual_seed(5)
    z = torch.rand(8, 5, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    a, b = class_halves(labels)
    e = loss.class_embeddings
    pred = loss.predictions(z, labels)
    torch.testing.assert_close(pred[b], ridge_predict(z[a], e[labels[a]], z[b], 0.05))
    torch.testing.assert_close(pred[a], ridge_predict(z[b], e[labels[b]], z[a], 0.05))
    (grad_e,) = torch.autograd.grad(pred[b].sum(), e)
    assert grad_e[labels[a]].abs().sum() > 0 and grad_e[labels[b]].abs().sum() == 0
    z2 = z.clone()
    z2[b] = torch.rand(4, 5, generator=g, dtype=torch.float64)  # new half-B inputs
    pred2 = loss.predictions(z2, labels)
    assert not torch.allclose(pred2[a], pred[a])  # A is predicted from B
    fit_a = ridge_predict(z[a], e[labels[a]], z2[b], 0.05)
    torch.testing.assert_close(pred2[b], fit_a)  # B's regressor still from A only


def test_gradients_reach_attributes_and_class_embeddings():
    torch.manual_seed(6)
    loss = ZeroShotRegressionLoss(num_classes=5, dim=4)
    z = torch.softmax(torch.randn(8, 6), dim=1).requires_grad_(True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss(z, labels).backward()
    assert z.grad.abs().sum() > 0
    assert loss.class_embeddings.grad.abs().sum() > 0
    assert loss.class_embeddings.grad[4].abs().sum() > 0  # softmax over all classes


def test_zero_and_duplicate_attributes_stay_finite():
    loss = ZeroShotRegressionLoss(num_classes=4, dim=3)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    zero = loss(torch.zeros(6, 5), labels).detach()  # before the prototypes exist
    assert float(zero) == pytest.approx(math.log(4), abs=1e-6)
    dup = torch.ones(6, 5).requires_grad_(True)
    value = loss(dup, labels)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(dup.grad).all()
