"""Kills the surviving mutants of ``methods/xbn.py`` (docs/mutation.md,
``xbn_method``): XBN inside the method uses every configured option (eps,
unbiased std, re-normalisation, shrinkage, the Kalman filter's q, q_mode,
innovation EMA and noise source, the batch size as its observation count), the
logs name every term, a memory restart restarts the filter, and under several
ranks the gathered global batch is enqueued (docs/methods/xbn.md)."""

import pytest
import torch
import torch.nn.functional as F

from dml_pipelines.core.models.xbn_kalman import MomentKalman
from dml_pipelines.core.models.xbn_norm import (
    batch_moments,
    match_covariance_,
    match_moments_,
)
from tests.core.engine.conftest import two_rank_step
from tests.core.methods.test_xbn import drifting, fill, labels_of, make, unit
from tests.core.models.test_xbn_norm import loop_xbn


def test_diagonal_xbn_uses_the_configured_eps_unbiased_std_and_renormalize():
    method, _ = make(
        xbn={"enabled": True, "eps": 0.05, "unbiased_std": True, "renormalize": False}
    )
    fill(method, 1)
    old = method.memory.entries()[0].clone()
    z = unit(8, seed=9)
    _, logs = method.loss_on_embeddings(z, labels_of(9), 1)
    feats, _ = method.memory.entries()
    assert logs["xbn_applied"] == 1.0 and len(feats) == 16
    expected = loop_xbn(old.double(), z.double(), 0.05, True, False)
    torch.testing.assert_close(feats[:8].double(), expected, rtol=0, atol=1e-5)
    assert torch.equal(feats[8:], z)  # before_enqueue: the batch is stored as is


def test_full_covariance_xbn_uses_the_configured_options_and_reports_it_ran():
    """eps = 0.05 floors some of C_M's eigenvalues, so it changes the map."""
    opts = {"eps": 0.05, "unbiased_std": True, "renormalize": False, "shrinkage": 0.4}
    method, _ = make(
        xbm={"memory_size": 64}, xbn={"enabled": True, "covariance": "full", **opts}
    )
    fill(method, 2)
    old = method.memory.entries()[0].clone()
    z = unit(8, seed=9)
    _, logs = method.loss_on_embeddings(z, labels_of(9), 2)
    assert logs["xbn_applied"] == 1.0
    expected = match_covariance_(old.clone(), z, 0.05, True, False, 0.4)
    feats = method.memory.entries()[0]
    torch.testing.assert_close(feats[:16], expected, rtol=0, atol=1e-6)
    defaults = match_covariance_(old.clone(), z)
    assert (expected - defaults).abs().max() > 1e-3


@pytest.mark.parametrize(
    "kalman",
    [
        {"q": 2.5, "q_mode": "relative", "noise": "estimate"},
        {"q": 1e-3, "q_mode": "absolute"},
        {"q_mode": "innovation", "innovation_ema": 0.5},
    ],
)
def test_adaptive_filter_is_the_configured_kalman_fed_with_each_batch(kalman):
    """Batches of 6 rows in D = 8: the observation count is the batch size."""
    opts = {"eps": 0.05, "unbiased_std": True, "renormalize": False}
    method, _ = make(
        xbm={"memory_size": 64},
        xbn={"enabled": True, "adaptive": True, "kalman": kalman, **opts},
    )
    ref = MomentKalman(8, **kalman)
    for step in range(4):
        z = drifting(step, n=6)
        old = method.memory.entries()[0].clone()
        _, logs = method.loss_on_embeddings(z, labels_of(step, n=6), step)
        assert logs["xbn_applied"] == float(step > 0)
        if step == 0:
            continue
        mean, var = batch_moments(z, True)
        mean_f, _ = ref.update(mean, var, 6)
        expected = match_moments_(
            old.clone(), mean_f, ref.std_target(0.05), 0.05, True, False
        )
        feats = method.memory.entries()[0]
        torch.testing.assert_close(feats[: len(old)], expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(method.kalman.x, ref.x, rtol=1e-6, atol=1e-7)
    assert int(method.kalman.steps) == 3


def test_a_memory_restart_restarts_the_filter_from_the_next_batch():
    """ "XBM (re)starts: fresh filter with the memory": after the memory is
    emptied, the next XBN step initialises the filter from its batch."""
    method, _ = make(xbn={"enabled": True, "adaptive": True, "order": "after_enqueue"})
    for step in range(3):
        method.loss_on_embeddings(drifting(step), labels_of(step), step)
    assert int(method.kalman.steps) == 3
    method.memory.reset()
    z = drifting(7)
    _, logs = method.loss_on_embeddings(z, labels_of(7), 3)
    assert logs["xbn_applied"] == 1.0 and int(method.kalman.steps) == 1
    mean, var = batch_moments(z)
    torch.testing.assert_close(method.kalman.x, torch.stack([mean, var]))


def test_logs_name_every_term():
    method, _ = make(xbn={"enabled": True})
    fill(method, 2)
    z, y = unit(8, seed=5), labels_of(5)
    loss, logs = method.loss_on_embeddings(z, y, 2)
    assert set(logs) == {"batch_loss", "memory_loss", "memory_items", "xbn_applied"}
    assert logs["memory_items"] == 20.0 and logs["xbn_applied"] == 1.0
    assert logs["batch_loss"] == pytest.approx(float(method.criterion(z, y)))
    plain, _ = make()
    _, first = plain.loss_on_embeddings(F.normalize(z, dim=1), y, 0)
    assert first["memory_items"] == 8.0 and first["xbn_applied"] == 0.0


def test_every_rank_enqueues_the_gathered_global_batch():
    method, _ = make()
    x, y = torch.randn(8, 3, 8, 8), labels_of(0)
    _, logs = method.training_loss(x, y, two_rank_step(global_step=0))
    assert len(method.memory) == 16 and logs["memory_items"] == 16.0
    with torch.no_grad():
        z = method.embedder(x)
    feats, labels = method.memory.entries()
    torch.testing.assert_close(feats, torch.cat([z, z]))
    assert torch.equal(labels, torch.cat([y, y]))
