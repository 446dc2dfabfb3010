"""Kills the surviving mutants of ``methods/intra_batch.py`` (docs/mutation.md,
``intra_batch_method``): the constructor's defaults are the documented ones
(docs/methods/intra_batch.md, "Key parameters"), the label smoothing and the
lr drops reach the loss and the callbacks, the single optimiser group is the
``all`` group of the gradient transforms, and under several ranks both CE terms
and the ZSR term are taken over the gathered global batch."""

import pytest
import torch
import torch.nn.functional as F

from dml_pipelines.core.engine.grad import coupled_weight_decay
from dml_pipelines.core.engine.lr_drops import ReloadBestLrDrops
from dml_pipelines.core.engine.optim import build_optimizer
from dml_pipelines.core.losses.label_smoothed_ce import label_smoothed_ce
from dml_pipelines.core.methods.intra_batch import IntraBatch
from dml_pipelines.core.models.mpn import MessagePassingNetwork
from tests.core.engine.conftest import two_rank_step
from tests.core.methods.test_intra_batch import batch, make
from tests.core.methods.test_intra_batch_gsp import make_gsp


def ce_terms(method, x, y, temperature, smoothing):
    """Both CE terms by hand (eval mode): backbone logits a = W u + b, MPN
    logits g on e = u / ‖u‖."""
    with torch.no_grad():
        u = method.embedder.embedding(x)
        e = F.normalize(u, dim=1)
        a = label_smoothed_ce(method.classifier(u), y, temperature, smoothing)
        g = method.mpn_classifier(method.mpn(e))
        return float(a), float(label_smoothed_ce(g, y, temperature, smoothing))


def test_constructor_defaults_are_the_documented_ones():
    built, _ = make()
    torch.manual_seed(0)
    method = IntraBatch(built.embedder, 4, MessagePassingNetwork(16))
    assert (method.temperature, method.smoothing) == (0.2, 0.1)
    assert method.losses == ("backbone_ce", "mpn_ce") and method.lr_drops == ()
    assert method.zsr is None and (method.zsr_weight, method.zsr_mix) == (
        0.1,
        "additive",
    )
    method.eval()  # no dropout: the terms are reproducible
    x, y = batch(2)
    loss, logs = method.training_loss(x, y)
    a, g = ce_terms(method, x, y, 0.2, 0.1)
    assert logs == pytest.approx({"backbone_ce": a, "mpn_ce": g})
    assert float(loss.detach()) == pytest.approx(a + g)
    half = IntraBatch(built.embedder, 4, method.mpn, loss_weights={"mpn_ce": 0.5})
    half.classifier, half.mpn_classifier = method.classifier, method.mpn_classifier
    half.eval()
    loss, _ = half.training_loss(x, y)
    assert float(loss.detach()) == pytest.approx(a + 0.5 * g)  # backbone_ce: 1


def test_label_smoothing_reaches_both_terms():
    method, _ = make(label_smoothing=0.25)
    method.eval()
    x, y = batch(3)
    _, logs = method.training_loss(x, y)
    a, g = ce_terms(method, x, y, 0.3, 0.25)
    assert logs == pytest.approx({"backbone_ce": a, "mpn_ce": g})
    assert a != pytest.approx(ce_terms(method, x, y, 0.3, 0.1)[0], rel=1e-5)


def test_lr_drops_give_one_reload_best_callback_with_the_drops():
    drops = [{"epoch": 3, "factor": 0.1}, {"epoch": 5, "factor": 0.01}]
    method, _ = make(lr_drops=drops)
    (callback,) = method.callbacks()
    assert isinstance(callback, ReloadBestLrDrops)
    assert callback.drops == [(3, 0.1), (5, 0.01)]


def test_without_the_gsp_pooling_nothing_is_initialised():
    method, _ = make()
    method.train()
    assert method.initialize_prototypes() is False


def test_the_single_group_is_the_all_group_of_the_gradient_transforms():
    """``optimizer.grad_transforms`` select groups by name: ``coupled_weight_decay``
    with ``groups: [all]`` reaches every trainable parameter."""
    method, cfg = make()
    opt = build_optimizer(method.param_groups(cfg.optimizer), cfg.optimizer)
    params = [p for p in method.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p)
    coupled_weight_decay(0.5, groups=["all"])(opt)
    for p in params:
        torch.testing.assert_close(p.grad, 0.5 * p.detach())


def test_the_ce_terms_are_taken_over_the_gathered_global_batch():
    """Two ranks holding the same shard: the MPN graph has 16 nodes, which
    changes the MPN term (the backbone term, a mean over rows, does not)."""
    method, _ = make()
    with torch.no_grad():
        method.mpn_classifier.fc.weight.mul_(1000.0)  # as a trained classifier
    method.eval()
    x, y = batch(4)
    _, logs = method.training_loss(x, y, two_rank_step())
    a, g = ce_terms(method, torch.cat([x, x]), torch.cat([y, y]), 0.3, 0.1)
    assert logs == pytest.approx({"backbone_ce": a, "mpn_ce": g}, rel=1e-5)
    _, alone = method.training_loss(x, y)
    assert alone["mpn_ce"] != pytest.approx(g, rel=1e-3)


def test_the_zsr_term_is_taken_over_the_gathered_global_batch():
    method, _ = make_gsp()
    method.train()
    x, y = batch(5)
    method.training_loss(x, y)  # initialises the prototypes
    method.eval()
    _, logs = method.training_loss(x, y, two_rank_step())
    with torch.no_grad():
        aux = method.embedder.features(torch.cat([x, x]))["aux"]
        expected = float(method.zsr(aux, torch.cat([y, y])))
    assert logs["zsr"] == pytest.approx(expected, rel=1e-5)
