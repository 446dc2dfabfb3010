"""Tests for the mutants that survived the mutation run of ``losses/gsp_zsr.py``
(docs/mutation.md): defaults, one-line messages, the ``alternate`` split, the
class-embedding initialisation, ε and the float32 promotion
(docs/methods/gsp.md#zero-shot-regression-zsr-loss)."""

import math

import pytest
import torch
import torch.nn.functional as F

from dml_pipelines.core.losses.gsp_zsr import (
    ZeroShotRegressionLoss,
    class_halves,
    ridge_predict,
)
from dml_pipelines.core.losses.gsp_zsr_options import ZsrConfig


def test_module_defaults_are_the_config_defaults():
    loss, cfg = ZeroShotRegressionLoss(num_classes=3, dim=2), ZsrConfig()
    assert (loss.ridge, loss.scale, loss.epsilon, loss.split) == (
        cfg.ridge,
        cfg.scale,
        cfg.epsilon,
        cfg.split,
    )
    labels = torch.tensor([7, 3, 7, 9, 1, 3, 9, 1, 5])
    for got, want in zip(
        class_halves(labels), class_halves(labels, cfg.split), strict=True
    ):
        assert torch.equal(got, want)


def test_alternate_split_sends_classes_in_order_of_appearance_to_a_b_a():
    labels = torch.tensor([7, 3, 7, 9, 1, 3, 9, 1, 5])  # order 7, 3, 9, 1, 5
    a, b = class_halves(labels, "alternate")
    assert a.tolist() == [c in (7, 9, 5) for c in labels.tolist()]
    assert torch.equal(b, ~a)
    a, _ = class_halves(labels, "halves")
    assert a.tolist() == [c in (7, 3, 9) for c in labels.tolist()]


def test_messages_are_exact_one_liners():
    cases = [
        (lambda: class_halves(torch.tensor([0, 1]), "odd"), "zsr.split: 'odd'"),
        (
            lambda: ZeroShotRegressionLoss(3, 2, split="odd"),
            "zsr.split: 'odd'",
        ),
        (
            lambda: class_halves(torch.zeros(4, dtype=torch.long)),
            "zsr.enabled: the ZSR loss splits the batch by class and needs at "
            "least 2 classes per batch (got 1)",
        ),
        (
            lambda: ZeroShotRegressionLoss(3, 2, epsilon=-1.0),
            "zsr.epsilon: must be >= 0 (got -1.0)",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as err:
            call()
        if message.endswith("'odd'"):
            message += "; valid: alternate, halves"
        assert str(err.value) == message


def test_class_embeddings_are_keras_truncated_he_normal():
    # fan_in = C: variance 2 / C after truncation at two (pre-truncation) σ
    torch.manual_seed(0)
    c = 50
    e = ZeroShotRegressionLoss(num_classes=c, dim=4000).class_embeddings.detach()
    sigma = math.sqrt(2.0 / c) / 0.87962566103423978
    assert float(e.abs().max()) <= 2 * sigma
    assert float(e.abs().max()) > 1.95 * sigma  # the bound is reached, not lower
    assert float(e.std()) == pytest.approx(math.sqrt(2.0 / c), rel=0.01)
    assert abs(float(e.mean())) < 0.01 * math.sqrt(2.0 / c)


def test_epsilon_caps_a_hopeless_sample_and_zero_is_the_cross_entropy():
    labels = torch.tensor([0, 0, 1, 1])
    z = torch.tensor([[1.0, 0.0]]).expand(4, 2)  # one attribute vector for all
    exact = ZeroShotRegressionLoss(2, 3, epsilon=0.0, scale=9.5)
    capped = ZeroShotRegressionLoss(2, 3)  # ε = 1e-16
    with torch.no_grad():  # each half predicts the other class's embedding
        exact.class_embeddings.copy_(torch.tensor([[40.0, 0, 0], [-40.0, 0, 0]]))
        capped.load_state_dict(exact.state_dict())
        pred = exact.predictions(z, labels)
        ce = F.cross_entropy(9.5 * pred @ exact.class_embeddings.T, labels)
        assert float(ce) > 1000
        assert float(exact(z, labels)) == pytest.approx(float(ce), rel=1e-6)
        # p ≪ ε for every sample: each scores −log(p + ε) ≈ −log ε
        assert float(capped(z, labels)) == pytest.approx(-math.log(1e-16), rel=1e-6)


def test_half_precision_attributes_are_scored_in_float32():
    torch.manual_seed(2)
    loss = ZeroShotRegressionLoss(num_classes=4, dim=3)
    g = torch.Generator().manual_seed(3)
    z = torch.softmax(torch.randn(8, 5, generator=g), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    half = z.to(torch.bfloat16)
    value = loss(half, labels)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, loss(half.float(), labels), rtol=0, atol=0)


def test_float64_attributes_with_a_float32_module_are_scored_in_float64():
    torch.manual_seed(4)
    loss = ZeroShotRegressionLoss(num_classes=4, dim=3)
    g = torch.Generator().manual_seed(5)
    z = torch.softmax(torch.randn(8, 5, generator=g, dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    value = loss(z, labels)
    assert value.dtype == torch.float64
    torch.testing.assert_close(value, loss.double()(z, labels))


def test_the_split_option_reaches_the_predictions():
    torch.manual_seed(6)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    z = torch.rand(8, 5, generator=torch.Generator().manual_seed(7))
    preds = {}
    for split in ("alternate", "halves"):
        loss = ZeroShotRegressionLoss(num_classes=4, dim=3, split=split)
        loss.class_embeddings.data.copy_(torch.arange(12.0).reshape(4, 3) / 12)
        a, b = class_halves(labels, split)
        y = loss.class_embeddings[labels]
        pred = loss.predictions(z, labels)
        torch.testing.assert_close(pred[b], ridge_predict(z[a], y[a], z[b], 0.05))
        torch.testing.assert_close(pred[a], ridge_predict(z[b], y[b], z[a], 0.05))
        preds[split] = pred
    assert not torch.allclose(preds["alternate"], preds["halves"])
