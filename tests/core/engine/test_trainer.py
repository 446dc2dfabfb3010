import pytest
import torch

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.device import resolve_device
from dml_pipelines.core.engine.trainer import load_checkpoint

from .conftest import (
    Kill,
    make_cfg,
    make_trainer,
    same_weights,
    weights,
)


def _trainer(cfg, tmp_path=None, callbacks=None, validate=None):
    return make_trainer(cfg, tmp_path, callbacks=callbacks, validate=validate)


def test_resume_after_kill_gives_the_uninterrupted_result(tmp_path):
    cfg = make_cfg()
    full = _trainer(cfg)
    full.fit()
    reference = weights(full.method)

    with pytest.raises(KeyboardInterrupt):
        _trainer(cfg, tmp_path, callbacks=[Kill(at=1)]).fit()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1  # epoch 1 done

    resumed = _trainer(cfg, tmp_path)
    history = resumed.fit()
    assert list(history["epoch"]) == [1, 2, 3]
    assert same_weights(weights(resumed.method), reference)


def test_same_seed_same_weights_other_seed_differs():
    a, b = _trainer(make_cfg()), _trainer(make_cfg())
    a.fit(), b.fit()
    assert same_weights(weights(a.method), weights(b.method))
    c = _trainer(make_cfg(training={"seed": 1}))
    c.fit()
    assert not same_weights(weights(a.method), weights(c.method))


def test_checkpoint_of_other_config_is_not_resumed(tmp_path):
    _trainer(make_cfg(training={"epochs": 1}), tmp_path).fit()
    other = _trainer(make_cfg(optimizer={"lr": 0.01}), tmp_path)
    assert other.fit()["epoch"].tolist() == [1, 2, 3]


def test_other_epoch_budget_trains_afresh_and_says_so(tmp_path, caplog):
    _trainer(make_cfg(training={"epochs": 3}), tmp_path).fit()
    shorter = _trainer(make_cfg(training={"epochs": 2}), tmp_path)
    fresh = _trainer(make_cfg(training={"epochs": 2}))
    with caplog.at_level("WARNING"):
        shorter.fit()
    fresh.fit()
    assert not shorter.resumed and "training from scratch" in caplog.text
    assert shorter.global_step == 2 * len(shorter.loader)
    assert same_weights(weights(shorter.method), weights(fresh.method))


def test_other_training_data_is_not_resumed(tmp_path):
    _trainer(make_cfg(training={"epochs": 1}), tmp_path).fit()
    cfg = make_cfg(training={"epochs": 1})
    other = make_trainer(cfg, tmp_path, data_fingerprint="another dataset")
    other.fit()
    assert not other.resumed and other.epoch == 1


def test_non_finite_loss_stops_with_clear_error(tmp_path):
    trainer = _trainer(make_cfg(), tmp_path)
    trainer.normalize = lambda b, train: b.float() * float("nan")
    with pytest.raises(FloatingPointError, match="non-finite loss .* epoch 1, step 1"):
        trainer.fit()


def test_warmup_freezes_the_backbone_only():
    trainer = _trainer(make_cfg(training={"epochs": 1, "warmup_epochs": 1}))
    bb0 = weights(trainer.method.embedder.backbone)
    head0 = weights(trainer.method.embedder.head)
    trainer.fit()
    assert same_weights(weights(trainer.method.embedder.backbone), bb0)  # BN stats too
    assert not same_weights(weights(trainer.method.embedder.head), head0)
    assert all(p.requires_grad for p in trainer.method.backbone_parameters())


def test_proxy_parameters_get_their_own_group_and_lr():
    cfg = make_cfg(
        loss={"name": "proxy_anchor", "args": {}},
        method="proxy_anchor",
        optimizer={"lr": 0.002, "loss_lr_mult": 100.0},
    )
    trainer = _trainer(cfg)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    proxies = trainer.method.criterion.proxies
    assert any(p is proxies for p in groups["loss"]["params"])
    assert groups["loss"]["lr"] == pytest.approx(0.2)
    assert groups["backbone"]["lr"] == pytest.approx(0.002)


def test_validation_selection_keeps_best_epoch(tmp_path):
    scores = iter([0.5, 0.9, 0.7])
    cfg = make_cfg(training={"checkpoint_selection": "validation"})
    snapshots = []

    class Snap(Callback):
        def on_train_epoch_end(self, trainer, epoch, metrics):
            snapshots.append(weights(trainer.method))

    trainer = _trainer(
        cfg, tmp_path, callbacks=[Snap()], validate=lambda m: {"map@r": next(scores)}
    )
    trainer.fit()
    assert trainer.best_epoch == 2
    assert same_weights(weights(trainer.method), snapshots[1])


def test_selection_without_validation_split_is_an_error():
    with pytest.raises(ValueError, match="checkpoint_selection"):
        _trainer(make_cfg(training={"checkpoint_selection": "validation"}))


def test_amp_code_path_runs_on_cpu_with_bfloat16():
    trainer = _trainer(make_cfg(training={"epochs": 1}))
    trainer.use_amp, trainer.amp_dtype = True, torch.bfloat16
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=True)  # the fp16 path
    before = weights(trainer.method.embedder.head)
    trainer.fit()
    assert not same_weights(weights(trainer.method.embedder.head), before)
    assert all(torch.isfinite(v).all() for v in weights(trainer.method).values())


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(ValueError, match="training.device"):
            resolve_device("cuda")


def test_learning_effect_on_separable_data():
    cfg = make_cfg(training={"epochs": 8})
    trainer = _trainer(cfg)
    history = trainer.fit()
    assert history["loss"].iloc[-1] < 0.6 * history["loss"].iloc[0]


def _first_loss(**training):
    cfg = make_cfg(training={"epochs": 1, **training})
    trainer = _trainer(cfg)
    trainer.loader = [next(iter(trainer.loader))]  # one fixed batch
    return float(trainer.fit()["loss"].iloc[0]), trainer


def test_bf16_and_channels_last_give_the_float32_loss():
    ref, plain = _first_loss(amp=False, channels_last=False)
    bf16, t_bf16 = _first_loss(amp="bf16", channels_last=False)
    nhwc, t_nhwc = _first_loss(amp=False, channels_last=True)
    assert t_bf16.amp_dtype == torch.bfloat16 and not t_bf16.scaler.is_enabled()
    assert plain.amp_dtype is None and not plain.channels_last
    conv = t_nhwc.method.embedder.backbone.body[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert nhwc == pytest.approx(ref, rel=1e-5)
    assert bf16 == pytest.approx(ref, rel=2e-2) and bf16 != ref


def test_amp_settings_per_device():
    from dml_pipelines.core.engine.device import amp_dtype

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype(True, cpu) is None and amp_dtype("fp16", cpu) is None
    assert amp_dtype(True, cuda) == torch.float16 == amp_dtype("fp16", cuda)
    assert amp_dtype("bf16", cpu) == torch.bfloat16 == amp_dtype("bf16", cuda)
    assert amp_dtype(False, cuda) is None
    with pytest.raises(ValueError, match="training.amp"):
        make_cfg(training={"amp": "fp8"})
