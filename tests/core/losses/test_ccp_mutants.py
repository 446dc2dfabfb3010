"""Kills surviving mutants of CCP's instance loss (docs/mutation.md, unit
``ccp_loss``): the documented default weights (docs/methods/ccp.md: 1.0 and
0.1), the one-line weight error, and the triplet proxy term's triplets built
from the masks, never PML's dense (B, R, R) all-triplets mask."""

import pytest
import torch
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from dml_pipelines.core.losses.ccp import ProxyPairLoss
from tests.core.losses.test_ccp import data, oracle, pair_loss


def test_default_weights_are_one_and_a_tenth():
    x, y, p, py = data(9)
    got, logs = ProxyPairLoss(pair_loss("contrastive_c2"))(x, y, p, py)
    assert set(logs) == {"proxy_loss", "batch_loss"}
    want = logs["proxy_loss"] + 0.1 * logs["batch_loss"]
    assert float(got) == pytest.approx(want, abs=1e-12)
    assert logs["proxy_loss"] == pytest.approx(
        oracle("contrastive_c2", x, y, p, py, same=False), abs=1e-10
    )


@pytest.mark.parametrize("weights", [(-1.0, 0.1), (1.0, -0.1)])
def test_a_negative_weight_is_a_one_line_error_naming_both_keys(weights):
    with pytest.raises(ValueError) as err:
        ProxyPairLoss(pair_loss("triplet"), *weights)
    assert str(err.value) == "proxy_loss_weight and batch_loss_weight must be >= 0"


def test_triplet_proxy_term_never_builds_the_dense_triplet_mask(monkeypatch):
    """At SOP scale PML's all-triplets mask (B, C·M, C·M) would need 65 GB
    (docs/methods/ccp.md): the proxy term hands PML its own triplets."""
    x, y, p, py = data(10, m=3)
    want = oracle("triplet", x, y, p, py, same=False)

    def dense(*args, **kwargs):
        raise AssertionError("the dense all-triplets mask was built")

    monkeypatch.setattr(lmu, "get_all_triplets_indices", dense)
    got, logs = ProxyPairLoss(pair_loss("triplet"), 1.0, 0.0)(x, y, p, py)
    assert float(got) == pytest.approx(want, abs=1e-10) and set(logs) == {"proxy_loss"}
    assert torch.isfinite(got)
