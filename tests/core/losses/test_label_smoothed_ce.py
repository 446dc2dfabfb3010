"""Label-smoothed CE with temperature (docs/baselines.md#label-smoothed-softmax)."""

import math

import pytest
import torch

from dml_pipelines.core.losses.label_smoothed_ce import label_smoothed_ce


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_uniform_logits_give_log_c(temperature):
    logits = torch.full((4, 7), 3.0)
    loss = label_smoothed_ce(logits, torch.tensor([0, 3, 6, 2]), temperature, 0.1)
    assert float(loss) == pytest.approx(math.log(7), rel=1e-6)


def test_matches_the_smoothed_target_formula():
    torch.manual_seed(0)
    z = torch.randn(5, 6, dtype=torch.float64)
    y = torch.randint(0, 6, (5,))
    t, eps, c = 0.37, 0.1, 6
    expected = 0.0
    for i in range(5):
        logp = torch.log_softmax(z[i] / t, 0)
        q = torch.full((c,), eps / c, dtype=torch.float64)
        q[y[i]] += 1 - eps
        expected += float(-(q * logp).sum()) / 5
    loss = label_smoothed_ce(z, y, t, eps)
    assert float(loss) == pytest.approx(expected, rel=1e-5)
