"""Kills surviving mutants of the ``ccp`` method (docs/mutation.md, unit
``ccp_method``): the constructor's defaults are the config's (docs/methods/ccp.md),
the checkpointed loop state, the summary and λ before and after a switch, the
lagged monitor's exact values, an instance without a finite monitored value,
the switch with an optimizer that keeps no proxy state, the switch's log line,
the missing-monitor message and the loss over the gathered global batch."""

import logging
import math

import pytest
import torch

from dml_pipelines.core.methods.ccp import CCP
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.registry import build_method
from tests.core.methods.test_ccp import (
    fake_trainer,
    loader,
    make,
    network,
    normalize,
    perturb,
)

ATTRS = (  # CCP attribute <- config key
    "reg_lambda",
    "reg_lambda_decay",
    "patience",
    "min_delta",
    "min_epochs",
    "monitor",
    "lag",
    "augment",
    "pool_batch_size",
    "reset_proxy_state",
    "seed",
)


def test_constructor_defaults_are_the_config_defaults():
    built = build_method(parse_method_config({"method": "ccp"}), 3)
    plain = CCP(
        built.embedder,
        3,
        built.criterion,
        built.proxies_per_class,
        built.pool_per_class,
    )
    got = {a: getattr(plain, a) for a in ATTRS}
    assert got == {a: getattr(built, a) for a in ATTRS}
    assert got["augment"] and got["monitor"] == "val/map@r"


def test_checkpoint_holds_the_loop_state_and_not_the_derived_proxy_labels():
    """Every piece of loop state is a buffer; the proxy labels follow from C and
    M (module docstring) and stay out of checkpoints."""
    method, _ = make()
    keys = {k for k in method.state_dict() if not k.startswith("embedder.")}
    n = len(method.network)
    loop = {"best_proxies", "instance", "lam", "best_value", "wait"}
    loop |= {"epochs_in_instance", "has_best", "initialised", "recent", "proxies"}
    assert keys == loop | {f"{w}.w{i}" for w in ("anchor", "best") for i in range(n)}
    assert method.proxy_labels.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]


def test_summary_before_and_during_fit_and_lambda_in_double_precision():
    method, cfg = make(instance_patience=1)
    assert method.last_selection is None  # no selection yet
    fresh = {"instances": 1, "reselections": 0, "lambda": 0.0}
    assert method.summary() == fresh
    trainer = fake_trainer(method, cfg)
    method.on_fit_start(trainer)
    assert method.summary() == fresh
    method.on_train_epoch_end(trainer, 0, {"val/map@r": 0.5})
    method.on_train_epoch_end(trainer, 1, {"val/map@r": 0.4})
    # the protocol card reports the configured λ = 2e-4, not its float32 value
    assert method.summary() == {"instances": 2, "reselections": 1, "lambda": 2e-4}


def test_a_two_epoch_lag_checks_the_exact_value_of_two_epochs_earlier():
    """The first two epochs have no lagged value: they are not checks (no
    switch with patience 2); then each check sees the value of two epochs
    earlier, bit for bit."""
    method, cfg = make(monitor_lag_epochs=2, instance_patience=2)
    trainer = fake_trainer(method, cfg)
    values = [0.1 + 1e-9, 0.2 + 1e-9, 0.15, 0.05]
    seen = []
    for epoch, v in enumerate(values):
        method.on_train_epoch_end(trainer, epoch, {"val/map@r": v})
        seen.append(float(method.best_value))
    assert seen == [-math.inf, -math.inf, values[0], values[1]]
    assert (int(method.instance), int(method.epochs_in_instance)) == (0, 2)


def test_an_instance_without_a_finite_value_keeps_the_current_weights():
    """NaN never improves (``improved``): after ``patience`` such epochs θ̄ is
    the network as it is and the seeds are the current proxies, in the first
    instance and in later ones."""
    method, cfg = make(instance_patience=2)
    trainer = fake_trainer(method, cfg)
    method.on_fit_start(trainer)
    seen = []
    original = method.select_proxies
    method.select_proxies = lambda tr, s: seen.append(s.clone()) or original(tr, s)
    for instance in (1, 2):
        perturb(method)
        current, proxies = network(method), method.proxies.detach().clone()
        for epoch in range(2):  # the switch comes after the second such epoch
            method.on_train_epoch_end(trainer, epoch, {"val/map@r": math.nan})
            assert int(method.instance) == instance - 1 + epoch
        for a, w in zip(method.anchor.tensors(), current, strict=True):
            assert torch.equal(a, w)
        assert torch.equal(seen[-1], proxies)


def test_resetting_the_proxy_state_of_a_stateless_optimizer():
    """Plain SGD keeps no state for the proxies: dropping it is a no-op."""
    method, cfg = make(
        instance_patience=1,
        reset_proxy_optimizer_state=True,
        optimizer={"name": "sgd", "lr": 0.01},
    )
    trainer = fake_trainer(method, cfg)
    method.on_fit_start(trainer)
    x, y = next(iter(loader()))
    method.training_loss(normalize(x, True), y)[0].backward()
    trainer.optimizer.step()
    assert method.proxies not in trainer.optimizer.state
    method.on_train_epoch_end(trainer, 0, {"val/map@r": 0.5})
    method.on_train_epoch_end(trainer, 1, {"val/map@r": 0.5})
    assert int(method.instance) == 1


def test_the_switch_is_logged_in_one_line(caplog):
    method, cfg = make(instance_patience=1, reg_lambda=3e-4, reg_lambda_decay=0.5)
    trainer = fake_trainer(method, cfg)
    method.on_fit_start(trainer)
    caplog.set_level(logging.INFO, logger="dml_pipelines.core.methods.ccp")
    method.on_train_epoch_end(trainer, 0, {"val/map@r": 0.5})
    method.on_train_epoch_end(trainer, 1, {"val/map@r": 0.25})
    lines = [r.getMessage() for r in caplog.records if r.name.endswith("ccp")]
    assert lines == [
        "ccp: instance 0 ended (best val/map@r 0.50000); instance 1, lambda 0.00015"
    ]


def test_missing_monitor_message_lists_the_epoch_metrics():
    method, cfg = make()
    with pytest.raises(KeyError) as err:
        method.on_train_epoch_end(
            fake_trainer(method, cfg), 0, {"loss": 1.0, "val/recall@1": 0.5}
        )
    assert err.value.args[0] == (
        "ccp.monitor: 'val/map@r' is not among the epoch metrics; "
        "valid: loss, val/recall@1"
    )


class OtherRank:
    """A step context of two ranks: the second holds ``u`` and ``y``."""

    def __init__(self, u, y):
        self.u, self.y = u, y

    def all_gather(self, t):
        return torch.cat([t, self.y if t.dtype == torch.long else self.u])


def test_the_loss_is_taken_over_the_gathered_global_batch():
    method, _ = make()
    x, y = next(iter(loader()))
    images = normalize(x, True)
    g = torch.Generator().manual_seed(0)
    other_u = torch.randn(len(y), method.embedder.embedding_dim, generator=g)
    other_y = y.roll(1)
    loss, _ = method.training_loss(images, y, OtherRank(other_u, other_y))
    with torch.no_grad():
        u = method.embedder.embedding(images).float()
        want, _ = method.criterion(
            torch.cat([u, other_u]),
            torch.cat([y, other_y]),
            method.proxies,
            method.proxy_labels,
        )
        alone, _ = method.training_loss(images, y)
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-6)
    assert abs(float(alone) - float(want)) > 1e-4


@pytest.mark.parametrize(("augmentation", "train"), [("train", True), ("test", False)])
def test_the_pool_pass_uses_the_configured_transform(augmentation, train):
    """``pool_augmentation`` (docs/methods/ccp.md) picks the view's training or
    test normalisation (and the cache loader's augmentation) for the pool."""
    method, cfg = make(pool_augmentation=augmentation)
    trainer = fake_trainer(method, cfg)
    flags = []
    trainer.normalize = lambda images, t: flags.append(t) or normalize(images, t)
    method.on_fit_start(trainer)
    assert flags and set(flags) == {train}
