"""CCP's instance losses, proxy selection, projection regulariser and λ
schedule against the official TensorFlow code (float64 golden fixtures written
by tools/official/make_fixtures.py; docs/methods/gsp.md, "Golden fixtures"),
through the project's public functions."""

import numpy as np
import pytest
import torch

from dml_pipelines.core.losses import contrastive_c2, multi_similarity, triplet
from dml_pipelines.core.losses.ccp import ProxyPairLoss, proxy_labels
from dml_pipelines.core.methods.ccp import WeightCopy
from dml_pipelines.core.models.ccp_proxies import (
    to_class_major,
    to_m_major,
)
from dml_pipelines.core.models.kcenter import greedy_k_center
from tests.core.methods.test_ccp import make as make_ccp

from .fixtures import assert_matches, case, load

BUILDERS = {
    "contrastive_c2": lambda m: contrastive_c2.build(
        0, 0, pos_margin=m[0], neg_margin=m[1], distance="clip_to_ball"
    ),
    "multi_similarity": lambda m: multi_similarity.build(
        0, 0, alpha=m[0], beta=m[1], base=m[2], distance="clip_to_ball"
    ),
    "triplet": lambda m: triplet.build(0, 0, margin=m[0], distance="clip_to_ball"),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_ccp_instance_loss_matches_official(name):
    """w_proxy·ℓ(e; N(P)) + w_batch·ℓ(e; e), Lipschitz normalisation (the
    official ``--loss=ccp/<base>``)."""
    meta, arrays = load("ccp_losses.npz")
    c = case(arrays, name)
    m = meta["proxies_per_class"]
    n_cls = len(c["proxies"]) // m
    loss_fn = ProxyPairLoss(BUILDERS[name](c["margins"].tolist()), 1.0, 0.1)
    emb = c["emb"].clone().requires_grad_(True)
    proxies = c["proxies"].clone().requires_grad_(True)
    loss, _ = loss_fn(emb, c["labels"], proxies, proxy_labels(n_cls, m))
    loss.backward()
    assert_matches(loss, c["loss"], f"{name} loss")
    assert_matches(emb.grad, c["grad_emb"], f"{name} d/de")
    assert_matches(proxies.grad, c["grad_proxies"], f"{name} d/dP")


@pytest.mark.parametrize("name", ["first", "second"])
def test_proxy_selection_matches_official(name):
    """Greedy k-center per class over the pool, seeded by the previous (best)
    proxies (zeros at the first selection), m-major layout."""
    meta, arrays = load("ccp_proxies.npz")
    c = case(arrays, name)
    n_cls, m = meta["num_classes"], meta["proxies_per_class"]
    # the callback stacks the pool passes as (C, b, D) in drawing order
    assert torch.equal(c["pool_seen"], c["pool"])
    picks, _ = greedy_k_center(c["pool"], to_class_major(c["seeds"], n_cls), m)
    assert torch.equal(to_m_major(picks), c["proxies"])


def _ccp(**over):
    """A small ``ccp`` method (the config of tests/core/methods/test_ccp.py)."""
    return make_ccp(**over)[0]


def test_regulariser_matches_official():
    """g ← g + λ(θ − θ̄) on the network weights only (``CCP.regularise``)."""
    _, a = load("ccp_regularizer.npz")
    t = {k: torch.from_numpy(np.array(v)) for k, v in a.items()}
    method = _ccp()
    net = [torch.nn.Parameter(t["net0"].clone()), torch.nn.Parameter(t["net1"].clone())]
    method.network = net
    method.anchor = WeightCopy(net)
    method.anchor.copy_from([t["anchor0"], t["anchor1"]])
    with torch.no_grad():
        method.proxies.data = t["proxies"].clone()
    net[0].grad, net[1].grad = t["grad0"].clone(), t["grad1"].clone()
    method.proxies.grad = t["grad_proxies"].clone()
    method.lam.fill_(float(t["lambda"]))
    method.regularise()
    assert_matches(net[0].grad, t["out0"], "d/dθ₀")
    assert_matches(net[1].grad, t["out1"], "d/dθ₁")
    assert torch.equal(method.proxies.grad, t["out_proxies"])


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_lambda_schedule_matches_official(decay):
    """λ = 0 in instance 0, λ·decay^k in instance k ≥ 1 (``CCP.project``; the
    proxy re-selection, which needs a data loader, is left out here)."""
    _, a = load("ccp_regularizer.npz")
    expected = a[f"lambda_schedule/decay_{decay}"]
    method = _ccp(reg_lambda=2e-4, reg_lambda_decay=decay)
    method.select_proxies = lambda trainer, seeds: None
    seen = [float(method.lam)]
    for _ in range(len(expected) - 1):
        method.project(trainer=None)
        seen.append(float(method.lam))
    np.testing.assert_allclose(seen, expected, rtol=1e-12, atol=0)
