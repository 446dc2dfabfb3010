"""The ``xbn`` method (docs/methods/xbn.md): XBM properties 2–6, XBN's order
(13) and its use of the memory, Adaptive XBN's Q → ∞ limit inside the method,
training through the real ``Trainer`` (state, resume), config and recipes."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from pytorch_metric_learning import distances, losses, reducers

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.hooks import StepContext
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.registry import build_method
from dml_pipelines.core.methods.xbn import CrossBatchNorm
from dml_pipelines.core.methods.xbn_config import XbnConfig
from dml_pipelines.core.models.xbn_norm import batch_moments
from tests.conftest import minimal_block
from tests.core.engine.conftest import (
    Kill,
    make_loader,
    make_trainer,
    same_weights,
    weights,
)
from tests.core.models.test_xbn_norm import loop_xbn

YAML = Path(__file__).resolve().parents[3] / "conf/base/parameters_xbn.yml"


def deep(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = deep(out[k], v) if isinstance(v, dict) and k in out else v
    return out


def make(num_classes=6, **over):
    raw = minimal_block(
        "xbn",
        sampler={"P": 4, "K": 2},
        xbm={"memory_size": 20, "start_iteration": 0},
        xbn={"enabled": False},
        training={"device": "cpu", "epochs": 2, "seed": 0},
    )
    cfg = parse_method_config(deep(raw, over))
    torch.manual_seed(0)
    return build_method(cfg, num_classes), cfg


def unit(n, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1)


def labels_of(seed, n=8, classes=4):
    g = torch.Generator().manual_seed(seed + 100)
    return torch.randint(0, classes, (n,), generator=g)


def cos(a, b):
    return float(
        torch.dot(a.double(), b.double()) / (a.double().norm() * b.double().norm())
    )


def loop_c1(z, y, refs, ref_labels, own, margin=0.5):
    """C1 of anchors against references, own slot excluded (A.3), floats."""
    total = 0.0
    for i in range(len(y)):
        for j in range(len(ref_labels)):
            if j == int(own[i]):
                continue
            s = cos(z[i], refs[j])
            total += (1 - s) if y[i] == ref_labels[j] else max(s - margin, 0.0)
    return total / len(y)


# --- XBM ------------------------------------------------------------------------


def test_memory_term_is_c1_against_the_memory_and_matches_pml_cross_batch_memory():
    method, _ = make()  # property 3
    pml = losses.CrossBatchMemory(
        losses.ContrastiveLoss(
            pos_margin=1.0,
            neg_margin=0.5,
            distance=distances.CosineSimilarity(),
            reducer=reducers.SumReducer(),
        ),
        embedding_size=8,
        memory_size=20,
    )
    for step in range(6):  # 48 items through a memory of 20: it wraps
        z, y = unit(8, seed=step), labels_of(step)
        loss, logs = method.loss_on_embeddings(z, y, step)
        refs, ref_labels = method.memory.entries()
        own = torch.full((8,), -1)
        for i in range(8):  # own slot: the stored copy of anchor i
            own[i] = int(torch.nonzero((refs == z[i]).all(dim=1))[-1])
        assert logs["memory_loss"] == pytest.approx(
            loop_c1(z, y, refs, ref_labels, own), abs=1e-5
        )
        assert logs["memory_loss"] == pytest.approx(float(pml(z, y)) / 8, abs=1e-5)
        assert float(loss) == pytest.approx(
            logs["batch_loss"] + logs["memory_loss"], abs=1e-6
        )


def test_own_copy_is_never_a_positive_but_an_identical_other_copy_is():
    method, _ = make(loss={"name": "multi_similarity"})  # property 4
    al, be, la = 2.0, 40.0, 0.5
    z = unit(4, seed=3)
    y = torch.tensor([0, 1, 2, 3])  # no positives inside the batch
    _, first = method.loss_on_embeddings(z, y, 0)
    assert first["memory_loss"] == pytest.approx(float(method.criterion(z, y)))
    _, second = method.loss_on_embeddings(z, y, 1)  # the memory holds z twice
    expected = 0.0
    for a in range(4):
        # positive: the copy stored at the first step (s = 1); negatives: the
        # other 3 rows of both copies
        sp = math.exp(-al * (1.0 - la))
        sn = 2 * sum(math.exp(be * (cos(z[a], z[k]) - la)) for k in range(4) if k != a)
        expected += math.log1p(sp) / al + math.log1p(sn) / be
    assert second["memory_loss"] == pytest.approx(expected / 4, rel=1e-5)


def test_no_memory_term_and_nothing_enqueued_before_the_start_iteration():
    method, _ = make(xbm={"start_iteration": 3})  # property 5
    for step in range(5):
        z, y = unit(8, seed=step), labels_of(step)
        loss, logs = method.loss_on_embeddings(z, y, step)
        if step < 3:
            assert len(method.memory) == 0 and "memory_loss" not in logs
            assert torch.equal(loss, method.criterion(z, y))
        else:
            assert len(method.memory) == 8 * (step - 2) and "memory_loss" in logs


def test_disabled_memory_is_the_plain_pair_loss():
    method, _ = make(xbm={"enabled": False})
    z, y = unit(8, seed=1), labels_of(1)
    loss, logs = method.loss_on_embeddings(z, y, 10)
    assert torch.equal(loss, method.criterion(z, y)) and len(method.memory) == 0
    assert set(logs) == {"batch_loss"}


def test_loss_is_non_negative_and_zero_for_identical_embeddings_of_one_class():
    method, _ = make(xbn={"enabled": True})  # property 6
    same = F.normalize(torch.ones(8, 8), dim=1)
    one_class = torch.zeros(8, dtype=torch.long)
    for step in range(4):
        loss, logs = method.loss_on_embeddings(same, one_class, step)
        assert float(loss) == pytest.approx(0.0, abs=1e-6)
        assert torch.isfinite(method.memory.entries()[0]).all()
    other, _ = make(xbn={"enabled": True})
    for step in range(4):
        loss, _ = other.loss_on_embeddings(unit(8, seed=step), labels_of(step), step)
        assert float(loss) >= 0


def test_memory_holds_no_graph_and_memory_gradient_flows_through_anchors_only():
    method, _ = make(xbm={"weight": 1.0})  # property 2
    method.loss_on_embeddings(unit(8, seed=0), labels_of(0), 0)
    z = unit(8, seed=1).requires_grad_(True)
    y = labels_of(1)
    loss, logs = method.loss_on_embeddings(z, y, 1)
    feats, _ = method.memory.entries()
    assert not feats.requires_grad and feats.grad_fn is None
    mem_only = loss - method.criterion(z, y)
    (grad,) = torch.autograd.grad(mem_only, z)
    assert grad.abs().sum() > 0
    detached = method.criterion(z.detach(), y, feats, method.memory.entries()[1])
    assert not detached.requires_grad  # no other path into the graph


def test_step_context_and_own_call_count_drive_the_start():
    method, _ = make(xbm={"start_iteration": 2})
    x = torch.randn(8, 3, 8, 8)
    y = labels_of(0)
    method.training_loss(x, y, StepContext(global_step=1))
    assert len(method.memory) == 0
    method.training_loss(x, y, StepContext(global_step=2))
    assert len(method.memory) == 8
    fresh, _ = make(xbm={"start_iteration": 2})
    for _ in range(3):  # no ctx: steps 0, 1, 2
        fresh.training_loss(x, y)
    assert len(fresh.memory) == 8


# --- XBN inside the method --------------------------------------------------------


def fill(method, steps=3):
    for step in range(steps):
        method.loss_on_embeddings(unit(8, seed=step), labels_of(step), step)


def test_xbn_before_enqueue_maps_the_old_memory_and_stores_the_batch_unchanged():
    method, _ = make(xbn={"enabled": True, "eps": 0.0})  # properties 7, 13
    fill(method)
    old, old_labels = (t.clone() for t in method.memory.entries())
    z, y = unit(8, seed=9), labels_of(9)
    _, logs = method.loss_on_embeddings(z, y, 3)
    feats, mem_labels = method.memory.entries()
    slots = torch.tensor([(int(method.memory.ptr) - 8 + i) % 20 for i in range(8)])
    assert logs["xbn_applied"] == 1.0
    assert torch.equal(feats[slots], z)  # property 13
    keep = torch.ones(20, dtype=torch.bool)
    keep[slots] = False
    expected = loop_xbn(old.double(), z.double(), 0.0, False, True).float()
    torch.testing.assert_close(feats[keep], expected[keep], rtol=0, atol=1e-5)
    assert torch.equal(mem_labels[keep], old_labels[keep])  # property 11


def test_xbn_after_enqueue_also_maps_the_batch_rows():
    method, _ = make(xbn={"enabled": True, "order": "after_enqueue"})
    fill(method)
    z, y = unit(8, seed=9), labels_of(9)
    method.loss_on_embeddings(z, y, 3)
    feats, _ = method.memory.entries()
    slots = [(int(method.memory.ptr) - 8 + i) % 20 for i in range(8)]
    assert not torch.allclose(feats[slots], z)
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(20))


def test_xbn_waits_for_min_items():
    method, _ = make(xbn={"enabled": True, "min_items": 16})
    _, logs0 = method.loss_on_embeddings(unit(8, seed=0), labels_of(0), 0)
    _, logs1 = method.loss_on_embeddings(unit(8, seed=1), labels_of(1), 1)
    _, logs2 = method.loss_on_embeddings(unit(8, seed=2), labels_of(2), 2)
    assert [logs0["xbn_applied"], logs1["xbn_applied"], logs2["xbn_applied"]] == [
        0.0,
        0.0,
        1.0,
    ]


def test_adaptive_xbn_with_infinite_process_noise_is_plain_xbn():  # property 15
    plain, _ = make(xbn={"enabled": True})
    adaptive, _ = make(
        xbn={
            "enabled": True,
            "adaptive": True,
            "kalman": {"q": 1e30, "q_mode": "absolute"},
        }
    )
    filtered, _ = make(xbn={"enabled": True, "adaptive": True})
    for step in range(5):
        z, y = unit(8, seed=step), labels_of(step)
        a, _ = plain.loss_on_embeddings(z, y, step)
        b, _ = adaptive.loss_on_embeddings(z, y, step)
        filtered.loss_on_embeddings(z, y, step)
        assert float(a) == pytest.approx(float(b), abs=1e-6)
    torch.testing.assert_close(plain.memory.feats, adaptive.memory.feats)
    assert int(filtered.kalman.steps) == 4  # XBN-active from the second step
    assert not torch.allclose(plain.memory.feats, filtered.memory.feats)


def test_full_covariance_variant_runs_inside_the_method():
    method, _ = make(xbn={"enabled": True, "covariance": "full"})
    fill(method, 4)
    feats, _ = method.memory.entries()
    assert torch.isfinite(feats).all()
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(20))


def test_export_holds_inference_weights_only_and_state_dict_holds_the_memory():
    method, _ = make(xbn={"enabled": True, "adaptive": True})
    fill(method)
    export = method.export_state_dict()
    assert export and all(k.startswith("embedder.") for k in export)
    state = method.state_dict()
    assert {"memory.feats", "memory.labels", "kalman.x", "kalman.p"} <= set(state)
    other, _ = make(xbn={"enabled": True, "adaptive": True})
    other.load_export_state_dict(export)
    x = torch.randn(3, 3, 8, 8)
    method.eval(), other.eval()
    torch.testing.assert_close(other.embed(x), method.embed(x))


def test_kaiming_head_init_follows_the_official_code():
    method, _ = make(embedding_dim=64, head_init="kaiming_fan_out")
    head = method.embedder.head
    assert torch.count_nonzero(head.bias) == 0
    assert float(head.weight.detach().std()) == pytest.approx(
        math.sqrt(2 / 64), rel=0.15
    )


# --- through the real Trainer -----------------------------------------------------


class Logs(Callback):
    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, outputs):
        self.rows.append(dict(outputs.logs))


def trainer(cfg, tmp_path=None, callbacks=None):
    torch.manual_seed(cfg.training.seed)
    method = build_method(cfg, 6)
    return make_trainer(
        cfg, tmp_path, method=method, loader=make_loader(0), callbacks=callbacks
    )


VARIANTS = {
    "no_memory": {"xbm": {"enabled": False}},
    "xbm": {},
    "xbn": {"xbn": {"enabled": True}},
    "adaptive": {"xbn": {"enabled": True, "adaptive": True}},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_trains_two_epochs_and_updates_its_state(variant):
    _, cfg = make(**deep({"xbm": {"start_iteration": 2}}, VARIANTS[variant]))
    logs = Logs()
    t = trainer(cfg, callbacks=[logs])
    before = weights(t.method.embedder)
    history = t.fit()
    assert len(history) == 2 and history["loss"].notna().all()
    assert not same_weights(weights(t.method.embedder), before)
    steps = len(logs.rows)  # 4 batches per epoch
    assert steps == 8
    if variant == "no_memory":
        assert len(t.method.memory) == 0 and "memory_loss" not in logs.rows[-1]
        return
    assert "memory_loss" not in logs.rows[1] and "memory_loss" in logs.rows[2]
    assert len(t.method.memory) == 20  # 6 active steps x 8 > 20: full
    applied = [r["xbn_applied"] for r in logs.rows[2:]]
    assert applied == ([0.0] + [1.0] * 5 if variant != "xbm" else [0.0] * 6)
    if variant == "adaptive":
        assert int(t.method.kalman.steps) == 5


def test_resume_after_kill_equals_the_uninterrupted_run(tmp_path):
    _, cfg = make(xbm={"start_iteration": 2}, xbn={"enabled": True, "adaptive": True})
    full = trainer(cfg)
    full.fit()
    with pytest.raises(KeyboardInterrupt):
        trainer(cfg, tmp_path, callbacks=[Kill(at=1)]).fit()
    resumed = trainer(cfg, tmp_path)
    resumed.fit()
    assert resumed.resumed
    a, b = weights(full.method), weights(resumed.method)
    assert {"memory.feats", "kalman.x"} <= set(a)
    assert same_weights(a, b)


# --- config and YAML recipes ------------------------------------------------------


def yaml_block():
    return yaml.safe_load(YAML.read_text())["xbn"]


@pytest.mark.parametrize("recipe", ["default", *yaml_block()["recipes"]])
def test_every_yaml_recipe_validates(recipe):
    cfg = XbnConfig.model_validate({**yaml_block(), "recipe": recipe})
    assert cfg.normalization == "l2" and cfg.loss.name == "contrastive_c1"
    assert cfg.loss.args == {"margin": 0.5} and cfg.xbm.weight == 1.0
    if recipe in ("sop", "inshop"):  # A.4, D.2
        assert cfg.xbm.memory_size == {"sop": 55000, "inshop": 8192}[recipe]
        assert cfg.xbm.start_iteration == 1000
        assert (cfg.backbone.name, cfg.backbone.pretrained) == ("resnet50", True)
        assert not cfg.backbone.freeze_bn
        assert (cfg.pooling.name, cfg.embedding_dim) == ("gmp", 128)
        assert cfg.head_init == "kaiming_fan_out"
        o = cfg.optimizer
        assert (o.name, o.lr, o.weight_decay) == ("adam", 1e-4, 5e-4)
        assert (cfg.sampler.P, cfg.sampler.K, cfg.sampler.batches_per_epoch) == (
            16,
            4,
            1000,
        )
        assert cfg.training.epochs * cfg.sampler.batches_per_epoch == 35000
        assert cfg.transforms.preset == "xbm"
        assert cfg.training.checkpoint_selection == "test_recall_at_1"
        s = cfg.training.scheduler
        assert s.name == "plateau" and s.args == {
            "patience": 4,
            "threshold": 0.001,
            "cooldown": 2,
            "min_lr": 5e-6,
        }


def test_default_block_is_xbm_plus_xbn_with_the_spec_defaults():
    cfg = XbnConfig.model_validate(yaml_block())
    x = cfg.xbn
    assert cfg.xbm.enabled and x.enabled and not x.adaptive
    assert (x.renormalize, x.order, x.unbiased_std, x.eps) == (
        True,
        "before_enqueue",
        False,
        1e-5,
    )
    assert x.min_items is None and x.covariance == "diagonal"
    assert (x.kalman.q, x.kalman.q_mode, x.kalman.innovation_ema) == (
        1.0,
        "relative",
        0.9,
    )
    code = parse_method_config({"method": "xbn"})  # code defaults: A.4 / D.2
    assert (code.xbm.memory_size, code.xbm.start_iteration) == (8192, 1000)


def test_minimal_block_builds_and_trains_a_step():
    cfg = parse_method_config(minimal_block("xbn"))
    torch.manual_seed(0)
    method = build_method(cfg, 4)
    assert isinstance(method, CrossBatchNorm)
    loss, _ = method.training_loss(
        torch.randn(8, 3, 16, 16), torch.arange(4).repeat_interleave(2)
    )
    loss.backward()
    assert torch.isfinite(loss) and method.embedder.head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"xbm": {"enabled": False}}, "xbn: xbn.enabled: .*set xbm.enabled"),
        ({"loss": {"name": "proxy_anchor"}}, "xbn: loss.name: 'proxy_anchor'"),
        (
            {"xbn": {"adaptive": True, "covariance": "full"}},
            "xbn: xbn.adaptive: .*diagonal",
        ),
        ({"xbm": {"memory_size": 32}}, "xbn: xbm.memory_size: 32 is below the 64"),
        ({"xbn": {"order": "never"}}, "xbn.xbn.order"),
        ({"xbn": {"kalman": {"q_mode": "ema"}}}, "xbn.xbn.kalman.q_mode"),
        ({"xbn": {"momentum": 0.9}}, "xbn.xbn.momentum: unknown key"),
        (
            {"head": {"name": "mlp"}, "head_init": "kaiming_fan_out"},
            "xbn: head_init: 'kaiming_fan_out' needs head.name 'linear'",
        ),
        ({"normalization": "lipschitz"}, "xbn.normalization"),
    ],
)
def test_bad_keys_are_one_line_errors(over, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_method_config({"method": "xbn", **over})
    assert "\n" not in str(info.value)


# --- Adaptive XBN: the memory follows the filtered targets -------------------------


def drifting(step, n=8):
    """A batch whose moments drift from step to step (the filter lags them)."""
    g = torch.Generator().manual_seed(step + 50)
    spread = 0.2 + 0.3 * step
    return F.normalize(torch.randn(n, 8, generator=g) * spread + 0.4 * step, dim=1)


@pytest.mark.parametrize("q_mode", ["relative", "absolute"])
def test_adaptive_xbn_maps_the_memory_to_the_filtered_mean_and_std(q_mode):
    """Each dimension of the memory ends with the Kalman mean and std, which
    differ from the batch's (the raw batch mean or std would pass otherwise)."""
    method, _ = make(
        xbn={
            "enabled": True,
            "adaptive": True,
            "renormalize": False,
            "order": "after_enqueue",  # the whole memory is mapped
            "eps": 0.0,
            "kalman": {"q": 0.05 if q_mode == "relative" else 1e-4, "q_mode": q_mode},
        }
    )
    for step in range(4):
        z = drifting(step)
        method.loss_on_embeddings(z, labels_of(step), step)
    feats, _ = method.memory.entries()
    var_m, mu_m = torch.var_mean(feats.double(), dim=0, correction=0)
    mean_f, var_f = method.kalman.x.double()
    mean_b, var_b = (m.double() for m in batch_moments(z))
    torch.testing.assert_close(mu_m, mean_f, rtol=0, atol=1e-5)
    torch.testing.assert_close(var_m.sqrt(), var_f.sqrt(), rtol=1e-4, atol=1e-6)
    assert (mean_f - mean_b).abs().max() > 1e-2  # the filter lags the batch
    assert ((var_f.sqrt() - var_b.sqrt()).abs() / var_b.sqrt()).max() > 0.05


@pytest.mark.parametrize("weight", [0.0, 0.25, 3.0])
def test_memory_term_enters_with_the_xbm_weight(weight):
    method, _ = make(xbm={"weight": weight})
    fill(method, 2)
    loss, logs = method.loss_on_embeddings(unit(8, seed=7), labels_of(7), 2)
    assert logs["memory_loss"] > 0
    expected = logs["batch_loss"] + weight * logs["memory_loss"]
    assert float(loss) == pytest.approx(expected, rel=1e-6)
