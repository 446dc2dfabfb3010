"""The trainer's extension points, each through a real ``Trainer.fit``."""

import inspect
import math
import re
from pathlib import Path

import pytest
import torch

from dml_pipelines.core.engine import hooks
from dml_pipelines.core.engine.callbacks import Callback, EarlyStopping
from dml_pipelines.core.engine.hooks import HOOK_ORDER, TrainerView
from dml_pipelines.core.engine.trainer import load_checkpoint

from .conftest import (
    make_cfg,
    make_trainer,
    same_weights,
    weights,
)


def _trainer(cfg, tmp_path=None, callbacks=None, validate=None):
    return make_trainer(cfg, tmp_path, callbacks=callbacks, validate=validate)


class Recorder(Callback):
    """Records every hook call in order (and a counter kept in its state)."""

    def __init__(self, label="rec"):
        self.label, self.calls, self.count = label, [], 0

    @property
    def name(self):
        return f"Recorder[{self.label}]"

    def on_fit_start(self, trainer):
        self.calls.append("fit_start")

    def on_train_epoch_start(self, trainer, epoch):
        self.calls.append(f"epoch_start{epoch}")

    def on_before_optimizer_step(self, trainer):
        grads = [p.grad for p in trainer.method.parameters() if p.grad is not None]
        assert grads  # gradients exist before the step
        self.calls.append("before_optimizer_step")

    def on_train_batch_end(self, trainer, outputs):
        self.count += 1
        self.calls.append(("batch_end", outputs.global_step, sorted(outputs.logs)))

    def on_train_epoch_end(self, trainer, epoch, metrics):
        self.calls.append(f"epoch_end{epoch}")

    def on_fit_end(self, trainer):
        self.calls.append("fit_end")

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_hook_order_step_logs_and_global_step():
    rec = Recorder()
    trainer = _trainer(make_cfg(training={"epochs": 2}), callbacks=[rec])
    trainer.fit()
    steps = len(trainer.loader)
    assert rec.calls[0] == "fit_start" and rec.calls[-1] == "fit_end"
    assert rec.calls[1] == "epoch_start0"
    assert rec.calls[2] == "before_optimizer_step"
    assert rec.calls[3] == ("batch_end", 0, ["loss"])
    ends = [c for c in rec.calls if isinstance(c, tuple)]
    assert [c[1] for c in ends] == list(range(2 * steps))
    assert rec.calls.index("epoch_end0") < rec.calls.index("epoch_start1")


class LoggingMethodCheck(Callback):
    def __init__(self):
        self.contexts = []

    def on_train_batch_end(self, trainer, outputs):
        self.contexts.append(outputs.logs)


def test_training_loss_receives_the_step_context():
    seen = []
    trainer = _trainer(make_cfg(training={"epochs": 2}))
    original = trainer.method.training_loss

    def spy(images, labels, ctx=None):
        seen.append((ctx.epoch, ctx.global_step, ctx.step, ctx.trainer is trainer))
        loss, logs = original(images, labels, ctx)
        return loss, {**logs, "spy": 1.0}

    trainer.method.training_loss = spy
    check = LoggingMethodCheck()
    trainer.callbacks.append(check)
    trainer.callback_keys.append("check")
    trainer.fit()
    steps = len(trainer.loader)
    assert seen[0] == (0, 0, 0, True)
    assert seen[steps] == (1, steps, 0, True)
    assert all(logs["spy"] == 1.0 and "loss" in logs for logs in check.contexts)


def documented_order(text):
    """The hooks a table lists, in its order (``on_x(`` entries)."""
    return tuple(dict.fromkeys(re.findall(r"\b(on_[a-z_]+)\(", text)))


def test_the_calls_of_one_fit_follow_the_documented_table():
    """The module docstring's table and docs/architecture.md's "Hooks" list the
    hooks in ``HOOK_ORDER``; a fit calls them in that order, each time the
    method's hook before the callbacks'."""
    assert documented_order(inspect.getdoc(hooks)) == HOOK_ORDER
    doc = (Path(__file__).parents[3] / "docs/architecture.md").read_text()
    section = doc.split("\n### Hooks", 1)[1].split("\n#", 1)[0]
    assert documented_order(section) == HOOK_ORDER
    calls = []

    class Log(Callback):
        pass

    trainer = _trainer(make_cfg(training={"epochs": 1}), callbacks=[Log()])
    for name in HOOK_ORDER:
        for who, obj in (
            ("method", trainer.method),
            ("callback", trainer.callbacks[0]),
        ):
            setattr(obj, name, lambda *a, n=name, w=who: calls.append((n, w)))
    trainer.fit()
    assert [w for _, w in calls] == ["method", "callback"] * (len(calls) // 2)
    names = [n for n, w in calls if w == "method"]
    steps = len(trainer.loader)
    assert names == [*HOOK_ORDER[:2], *HOOK_ORDER[2:4] * steps, *HOOK_ORDER[4:]]


def test_the_trainer_is_the_typed_view_hooks_see():
    seen = []

    class Look(Callback):
        def on_fit_start(self, trainer):
            seen.append(trainer)

    trainer = _trainer(make_cfg(training={"epochs": 1}), callbacks=[Look()])
    trainer.fit()
    assert seen == [trainer] and isinstance(trainer, TrainerView)
    assert trainer.train_dataset is trainer.loader.dataset
    assert trainer.loader_workers == 0


def test_before_optimizer_step_sees_the_final_gradients_before_the_step():
    """Gradients dropped in the hook leave every weight as it was: the hook runs
    after backward and before the optimiser step."""
    grads = []

    class Drop(Callback):
        def on_before_optimizer_step(self, trainer):
            params = [p for p in trainer.method.parameters() if p.grad is not None]
            grads.append(len(params))
            for p in params:
                p.grad = None

    trainer = _trainer(make_cfg(training={"epochs": 1}), callbacks=[Drop()])
    before = dict(trainer.method.named_parameters())
    before = {k: v.detach().clone() for k, v in before.items()}
    trainer.fit()
    assert len(grads) == trainer.global_step and min(grads) > 0
    for k, v in trainer.method.named_parameters():
        assert torch.equal(v, before[k]), k


def test_gradient_transforms_run_in_order_before_the_step():
    cfg = make_cfg(
        training={"epochs": 1},
        optimizer={
            "grad_transforms": [
                {"name": "coupled_weight_decay", "args": {"weight_decay": 0.5}},
                {"name": "clip_norm", "args": {"max_norm": 1.0}},
                {"name": "clip_value", "args": {"clip_value": 0.01}},
            ]
        },
    )
    seen = []

    class After(Callback):  # user callbacks run after the config's transforms
        def on_before_optimizer_step(self, trainer):
            g = [p.grad for p in trainer.method.parameters() if p.grad is not None]
            seen.append(max(float(x.abs().max()) for x in g))

    _trainer(cfg, callbacks=[After()]).fit()
    assert seen and max(seen) <= 0.01 + 1e-9


def test_gradient_transform_formulas():
    from dml_pipelines.core.engine.grad import GradTransforms

    p = torch.nn.Parameter(torch.tensor([3.0, -4.0]))
    opt = torch.optim.SGD([{"params": [p], "name": "head"}], lr=0.1)
    p.grad = torch.tensor([1.0, 1.0])
    GradTransforms(
        [
            ("coupled_weight_decay", {"weight_decay": 1.0}),  # -> [4, -3]
            ("clip_norm", {"max_norm": 2.5}),  # norm 5 -> [2, -1.5]
            ("clip_value", {"clip_value": 1.8}),  # -> [1.8, -1.5]
        ]
    ).on_before_optimizer_step(type("T", (), {"optimizer": opt})())
    torch.testing.assert_close(p.grad, torch.tensor([1.8, -1.5]), atol=1e-5, rtol=0)


def test_unknown_gradient_transform_names_the_key():
    with pytest.raises(ValueError, match=r"optimizer.grad_transforms.0.name"):
        make_cfg(optimizer={"grad_transforms": [{"name": "clip_nrom"}]})


def test_freeze_bn_keeps_every_bn_parameter_and_statistic_through_training():
    cfg = make_cfg(
        backbone={"freeze_bn": True},
        training={"epochs": 2, "warmup_epochs": 1},
    )
    modes = []

    class BNMode(Callback):
        def on_before_optimizer_step(self, trainer):
            bns = [
                m
                for m in trainer.method.modules()
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
            ]
            modes.extend(m.training for m in bns)

    trainer = _trainer(cfg, callbacks=[BNMode()])
    bn_keys = [
        k
        for k in trainer.method.state_dict()
        if any(s in k for s in ("running_", "num_batches"))
        or (k.startswith("embedder.backbone") and ".1." in k)
    ]
    assert bn_keys
    before = weights(trainer.method)
    trainer.fit()
    after = weights(trainer.method)
    assert all(torch.equal(before[k], after[k]) for k in bn_keys)
    assert modes and not any(modes)  # BN in eval mode at every step
    conv = "embedder.backbone.body.0.weight"
    assert not torch.equal(before[conv], after[conv])  # the rest did train
    optimised = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    bn_params = [
        p
        for m in trainer.method.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        for p in m.parameters()
    ]
    assert bn_params and not any(id(p) in optimised for p in bn_params)


def _scores(values):
    it = iter(values)
    return lambda method: {"map@r": next(it), "recall@1": 0.0}


def test_early_stopping_stops_and_restores_the_best_weights(tmp_path):
    cfg = make_cfg(
        training={
            "epochs": 10,
            "checkpoint_selection": "validation",
            "early_stopping": {"patience": 2},
        }
    )
    snaps = []

    class Snap(Callback):
        def on_train_epoch_end(self, trainer, epoch, metrics):
            snaps.append(weights(trainer.method))

    trainer = _trainer(
        cfg, tmp_path, callbacks=[Snap()], validate=_scores([0.3, 0.6, 0.5, 0.55, 0.9])
    )
    history = trainer.fit()
    assert history["epoch"].tolist() == [1, 2, 3, 4]  # 2 epochs without improvement
    assert same_weights(weights(trainer.method), snaps[1])
    stopper = next(c for c in trainer.callbacks if isinstance(c, EarlyStopping))
    assert stopper.stopped_epoch == 4 and stopper.best_epoch == 2


def test_early_stopping_on_another_metric_keeps_its_own_best_copy():
    cfg = make_cfg(training={"epochs": 6})
    snaps, losses = [], iter([5.0, 1.0, 2.0, 3.0, 4.0, 5.0])

    class Snap(Callback):
        def on_train_epoch_end(self, trainer, epoch, metrics):
            metrics["fake_loss"] = next(losses)
            snaps.append(weights(trainer.method))

    stopper = EarlyStopping("fake_loss", mode="min", patience=2)
    trainer = _trainer(cfg, callbacks=[Snap(), stopper])
    trainer.fit()
    assert len(trainer.history) == 4
    assert same_weights(weights(trainer.method), snaps[1])


def test_plateau_scheduler_reduces_lr_on_the_selection_metric():
    cfg = make_cfg(
        optimizer={"lr": 0.01},
        training={
            "epochs": 4,
            "checkpoint_selection": "validation",
            "scheduler": {"name": "plateau", "args": {"patience": 0, "factor": 0.5}},
        },
    )
    trainer = _trainer(cfg, validate=_scores([0.5, 0.5, 0.7, 0.6]))
    trainer.fit()
    lrs = [g["lr"] for g in trainer.optimizer.param_groups]
    # epoch 2 no gain -> 0.005; epoch 3 improves; epoch 4 no gain -> 0.0025
    assert lrs == pytest.approx([0.0025] * len(lrs))
    assert [round(r["lr"], 6) for r in trainer.history] == [0.01, 0.01, 0.005, 0.005]


def test_plateau_without_a_selection_metric_is_an_error():
    cfg = make_cfg(training={"scheduler": {"name": "plateau"}})
    with pytest.raises(ValueError, match="plateau"):
        _trainer(cfg)


def test_cosine_warmup_factors():
    from dml_pipelines.core.engine.optim import WarmupCosine

    f = WarmupCosine(warmup=2, total=6, min_factor=0.0)
    assert [f(e) for e in range(2)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0) and f(6) == pytest.approx(0.0)
    assert f(4) == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


class Kill(Callback):
    def __init__(self, at):
        self.at = at

    def on_train_epoch_end(self, trainer, epoch, metrics):
        if epoch == self.at:
            trainer._save(False)  # the trainer checkpoints after the hooks
            raise KeyboardInterrupt


def test_callback_state_resumes_by_name_when_the_list_changes(tmp_path):
    cfg = make_cfg(
        training={
            "epochs": 4,
            "checkpoint_selection": "validation",
            "early_stopping": {"patience": 3},
        }
    )
    vals = [0.2, 0.4, 0.3, 0.5]
    full = _trainer(cfg, callbacks=[Recorder("a")], validate=_scores(vals))
    full.fit()

    first = Recorder("a")
    with pytest.raises(KeyboardInterrupt):
        _trainer(
            cfg, tmp_path, callbacks=[first, Kill(at=1)], validate=_scores(vals)
        ).fit()
    saved = load_checkpoint(tmp_path / "last.pt")["callbacks"]
    assert saved["Recorder[a]"]["count"] == first.count

    again = Recorder("a")  # now after another callback: position changed
    resumed = _trainer(
        cfg, tmp_path, callbacks=[Recorder("b"), again], validate=_scores(vals[2:])
    )
    resumed.fit()
    assert resumed.resumed and again.count == full.callbacks[1].count
    stop_full = next(c for c in full.callbacks if isinstance(c, EarlyStopping))
    stop_res = next(c for c in resumed.callbacks if isinstance(c, EarlyStopping))
    assert stop_res.best == stop_full.best and stop_res.wait == stop_full.wait
    assert same_weights(weights(resumed.method), weights(full.method))
    key = ("epoch", "loss", "val/map@r")
    assert [[r[k] for k in key] for r in resumed.history] == [
        [r[k] for k in key] for r in full.history
    ]


def test_a_hook_under_a_name_the_trainer_never_calls_is_an_error():
    """After the renames to Lightning's names an old ``on_epoch_start`` in a
    callback was silently never called (a test's interrupting callback stopped
    interrupting); such a method is now an error where the class is made."""
    with pytest.raises(TypeError) as err:

        class Old(Callback):
            def on_epoch_start(self, trainer, epoch):
                raise KeyboardInterrupt

    assert str(err.value).startswith("Old: on_epoch_start is not a hook (hooks: ")
    assert "on_train_epoch_start" in str(err.value)

    class Fine(Callback):  # hooks and other methods are allowed
        def on_train_epoch_start(self, trainer, epoch):
            pass

        def once(self):
            pass
