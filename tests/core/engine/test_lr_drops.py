"""Reload-best lr drops (docs/methods/intra_batch.md, ``lr_drops``)."""

import torch

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.lr_drops import ReloadBestLrDrops
from dml_pipelines.core.engine.trainer import load_checkpoint
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.registry import build_method
from tests.conftest import minimal_block

from .conftest import make_trainer, same_weights, weights

BASE_LR = 0.01


def _cfg(selection):
    return parse_method_config(
        minimal_block(
            "intra_batch",
            sampler={"P": 4, "K": 2},
            optimizer={"name": "adam", "lr": BASE_LR},
            lr_drops=[],  # the callback is passed explicitly below
            training={"epochs": 4, "device": "cpu", "checkpoint_selection": selection},
        )
    )


class Probe(Callback):
    """Records the weights, the best checkpoint's weights and the lrs at each
    epoch start (placed before or after the drop callback)."""

    def __init__(self, best_path):
        self.best_path, self.seen = best_path, {}

    def on_train_epoch_start(self, trainer, epoch):
        best = (
            load_checkpoint(self.best_path)["model"]
            if self.best_path.exists()
            else None
        )
        self.seen[epoch + 1] = (
            weights(trainer.method),
            best,
            [g["lr"] for g in trainer.optimizer.param_groups],
        )


def test_drop_epochs_reload_the_best_weights_and_set_base_times_factor(tmp_path):
    cfg = _cfg("validation")
    torch.manual_seed(0)
    pre, post = Probe(tmp_path / "best.pt"), Probe(tmp_path / "best.pt")
    scores = iter([0.9, 0.5, 0.4, 0.3])  # best epoch = 1

    def validate(_):
        v = next(scores)
        return {"map@r": v, "recall@1": v}

    drops = ReloadBestLrDrops([(3, 0.1), (4, 0.1)])
    make_trainer(cfg, tmp_path, validate=validate, callbacks=[pre, drops, post]).fit()
    for epoch in (3, 4):
        current, best, lrs = post.seen[epoch]
        assert best is not None and same_weights(current, best)
        assert lrs == [BASE_LR * 0.1]  # relative to the base lr: not base/100
        assert not same_weights(pre.seen[epoch][0], best)  # training had moved on
    assert post.seen[2][2] == [BASE_LR]


def _bare_trainer(selection="last"):
    cfg = _cfg(selection)
    trainer = make_trainer(cfg)
    for g in trainer.optimizer.param_groups:
        g["initial_lr_base"] = g["lr"]
    return trainer


def test_factors_are_relative_to_the_base_lr_and_persist_between_drops():
    trainer = _bare_trainer()
    cb = ReloadBestLrDrops([(2, 0.1), (4, 0.01)])
    lrs = {}
    for epoch in range(5):
        cb.on_train_epoch_start(trainer, epoch)
        lrs[epoch + 1] = trainer.optimizer.param_groups[0]["lr"]
    assert lrs == {
        1: BASE_LR,
        2: BASE_LR * 0.1,
        3: BASE_LR * 0.1,
        4: BASE_LR * 0.01,
        5: BASE_LR * 0.01,
    }


def test_with_last_selection_a_drop_only_changes_the_lr():
    trainer = _bare_trainer()
    before = weights(trainer.method)
    ReloadBestLrDrops([(3, 0.1)]).on_train_epoch_start(trainer, 2)
    assert same_weights(weights(trainer.method), before)
    assert [g["lr"] for g in trainer.optimizer.param_groups] == [BASE_LR * 0.1]


def test_method_adds_the_callback_from_its_config():
    drops = [{"epoch": 31, "factor": 0.1}, {"epoch": 51, "factor": 0.1}]
    cfg = parse_method_config(
        {"method": "intra_batch", "lr_drops": drops, "training": {"epochs": 70}}
    )
    (cb,) = build_method(cfg, 3).callbacks()
    assert cb.drops == [(31, 0.1), (51, 0.1)]
    assert cb.factor_at(30) is None and cb.factor_at(31) == cb.factor_at(70) == 0.1
