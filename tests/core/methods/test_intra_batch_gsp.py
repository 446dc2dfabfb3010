"""``intra_batch`` with the GSP pooling and the ZSR loss (docs/methods/gsp.md,
"Prototype initialisation" and "Intra-Batch + GSP"): the classifier k-center prototype
initialisation, the ZSR term, a training step through the real ``Trainer``, the default
block left unchanged, warm starts and the ``gsp_intra_batch_<dataset>`` recipes."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.optim import build_optimizer
from dml_pipelines.core.losses.gsp_zsr import ZeroShotRegressionLoss
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.intra_batch import IntraBatch
from dml_pipelines.core.methods.intra_batch_config import IntraBatchConfig
from dml_pipelines.core.methods.registry import build_method
from dml_pipelines.core.models.gsp_pooling import GeneralizedSumPooling, greedy_kcenter
from tests.conftest import minimal_block

from ..engine.conftest import make_loader, make_trainer

YAML = Path(__file__).resolve().parents[3] / "conf/base/parameters_intra_batch.yml"

GSP = {
    "name": "gsp",
    "args": {
        "num_prototypes": 4,
        "entropy_weight": 0.1,
        "init": "classifier_kcenter",
        "operator": "weighted_max",
    },
}
ZSR = {"enabled": True, "weight": 0.1, "mix": "additive"}


def raw(**over):
    return (
        minimal_block(
            "intra_batch",
            mpn={"layers": 1, "heads": 2},
            temperature=0.3,
            sampler={"P": 4, "K": 2},
            lr_drops=[],
            training={"device": "cpu", "epochs": 1, "amp": False},
        )
        | over
    )


def make(num_classes=6, **over):
    cfg = parse_method_config(raw(**over))
    torch.manual_seed(0)
    return build_method(cfg, num_classes), cfg


def make_gsp(num_classes=6, **over):
    return make(num_classes, **{"pooling": GSP, "zsr": ZSR, **over})


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 16, 16, generator=g), torch.arange(4).repeat(2)


def expected_prototypes(weight, k):
    """Row 0, then the farthest-point order seeded with it."""
    idx = greedy_kcenter(weight[1:], weight[:1], k - 1)
    return torch.cat([weight[:1], weight[1:][idx]])


def test_first_training_forward_sets_the_prototypes_from_classifier_rows():
    method, _ = make_gsp()
    pool = method.embedder.pooling
    assert isinstance(pool, GeneralizedSumPooling) and pool.init == "classifier_kcenter"
    assert isinstance(method.zsr, ZeroShotRegressionLoss)
    x, y = batch()
    method.eval()
    method.embed(x)  # evaluation does not initialise
    assert not bool(pool.initialized)
    weight = method.classifier.weight.detach().clone()  # (C, D) = (6, 8)
    method.train()
    loss, logs = method.training_loss(x, y)
    assert bool(pool.initialized) and torch.isfinite(loss)
    protos = pool.prototypes.detach()
    assert torch.equal(protos, expected_prototypes(weight, 4))
    # every prototype is a classifier row, row 0 first, no row twice
    rows = [int((weight == p).all(dim=1).nonzero()) for p in protos]
    assert rows[0] == 0 and len(set(rows)) == 4
    assert set(logs) == {"backbone_ce", "mpn_ce", "zsr"}
    assert logs["zsr"] != pytest.approx(math.log(6), abs=1e-4)  # real attributes


def test_initialised_once_and_the_optimiser_keeps_the_same_parameter():
    method, cfg = make_gsp()
    pool = method.embedder.pooling
    param = pool.prototypes
    opt = build_optimizer(method.param_groups(cfg.optimizer), cfg.optimizer)
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    assert {id(param), id(method.zsr.class_embeddings)} <= held
    method.train()
    loss, _ = method.training_loss(*batch(1))  # initialises, then the forward
    after_init = param.detach().clone()
    class_emb = method.zsr.class_embeddings.detach().clone()
    loss.backward()
    assert param.grad is not None and param.grad.abs().sum() > 0
    opt.step()
    assert pool.prototypes is param
    assert not torch.equal(param.detach(), after_init)
    assert not torch.equal(method.zsr.class_embeddings.detach(), class_emb)
    stepped = param.detach().clone()
    assert method.initialize_prototypes() is False  # once only
    method.training_loss(*batch(2))
    assert torch.equal(param.detach(), stepped)


def test_the_flag_survives_a_checkpoint_so_a_resume_does_not_reinitialise():
    method, _ = make_gsp()
    method.train()
    method.training_loss(*batch())
    with torch.no_grad():
        method.embedder.pooling.prototypes.add_(1.0)  # as after some steps
    state = {k: v.clone() for k, v in method.state_dict().items()}
    assert bool(state["embedder.pooling.initialized"])
    resumed, _ = make_gsp()
    resumed.load_state_dict(state)
    resumed.train()
    resumed.training_loss(*batch(1))
    torch.testing.assert_close(
        resumed.embedder.pooling.prototypes, state["embedder.pooling.prototypes"]
    )


@pytest.mark.parametrize("mix", ["additive", "convex"])
def test_zsr_is_mixed_with_the_intra_batch_losses(mix):
    method, _ = make_gsp(zsr={**ZSR, "weight": 0.25, "mix": mix})
    method.train()
    method.training_loss(*batch())  # initialise
    method.eval()  # no dropout: the terms are reproducible
    loss, logs = method.training_loss(*batch(3))
    base = logs["backbone_ce"] + logs["mpn_ce"]
    expected = (
        base + 0.25 * logs["zsr"]
        if mix == "additive"
        else 0.75 * base + 0.25 * logs["zsr"]
    )
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)


def test_zsr_off_and_default_pooling_give_the_plain_loss_exactly():
    gmp = {"name": "gmp"}  # the block's pooling
    plain, _ = make(pooling=gmp)
    off, cfg = make(pooling=gmp, zsr={"enabled": False}, head_init="default")
    assert off.zsr is None and cfg.pooling.name == "gmp"
    a, b = plain.state_dict(), off.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    x, y = batch(4)
    torch.manual_seed(1)
    loss_a, logs_a = plain.training_loss(x, y)
    torch.manual_seed(1)
    loss_b, logs_b = off.training_loss(x, y)
    assert torch.equal(loss_a, loss_b) and logs_a == logs_b
    assert set(logs_b) == {"backbone_ce", "mpn_ce"}
    assert plain.export_state_dict().keys() == off.export_state_dict().keys()


class Snapshot(Callback):
    """The prototypes after the first step's initialisation, before its update."""

    def __init__(self):
        self.protos, self.logs = None, []

    def on_before_optimizer_step(self, trainer):
        if self.protos is None:
            pool = trainer.method.embedder.pooling
            self.protos = pool.prototypes.detach().clone()
            self.weight = trainer.method.classifier.weight.detach().clone()

    def on_train_batch_end(self, trainer, outputs):
        self.logs.append(dict(outputs.logs))


def test_one_epoch_through_the_trainer_trains_prototypes_and_class_embeddings():
    _, cfg = make_gsp()
    torch.manual_seed(0)
    method = build_method(cfg, 6)
    snap = Snapshot()
    trainer = make_trainer(cfg, method=method, loader=make_loader(0), callbacks=[snap])
    pool = method.embedder.pooling
    class_emb = method.zsr.class_embeddings.detach().clone()
    held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert {id(pool.prototypes), id(method.zsr.class_embeddings)} <= held
    history = trainer.fit()
    assert history["loss"].notna().all() and len(snap.logs) == len(trainer.loader)
    assert all(
        math.isfinite(v) and {"zsr", "mpn_ce"} <= set(r)
        for r in snap.logs
        for v in r.values()
    )
    torch.testing.assert_close(snap.protos, expected_prototypes(snap.weight, 4))
    assert not torch.equal(pool.prototypes.detach(), snap.protos)
    assert not torch.equal(method.zsr.class_embeddings.detach(), class_emb)


def test_warm_start_from_a_plain_intra_batch_state_then_kcenter_on_its_rows():
    plain, _ = make()
    with torch.no_grad():
        plain.classifier.weight.mul_(3.0)  # as a trained classifier
    method, _ = make_gsp()
    method.load_export_state_dict(plain.state_dict())  # last.pt / best.pt
    weight = plain.classifier.weight.detach()
    assert torch.equal(method.classifier.weight.detach(), weight)
    assert torch.equal(method.embedder.head.weight, plain.embedder.head.weight)
    method.train()
    method.training_loss(*batch())
    torch.testing.assert_close(
        method.embedder.pooling.prototypes.detach(), expected_prototypes(weight, 4)
    )
    # the inference weights of a GSP model must hold its pooling
    with pytest.raises(ValueError, match="missing"):
        make_gsp()[0].load_export_state_dict(plain.export_state_dict())


def test_export_holds_the_prototypes_not_the_training_buffers_or_heads():
    method, _ = make_gsp()
    method.train()
    method.training_loss(*batch())
    state = method.export_state_dict()
    assert {"embedder.pooling.prototypes", "embedder.pooling.initialized"} <= set(state)
    assert not any(k.endswith(("memory", "memory_count", "steps_seen")) for k in state)
    assert all(k.startswith("embedder.") for k in state)
    other, _ = make_gsp()
    other.load_export_state_dict(state)
    method.eval(), other.eval()
    x, _ = batch(5)
    torch.testing.assert_close(other.embed(x), method.embed(x))


def test_head_init_kaiming_fan_out_for_the_head_and_the_classifier():
    method, _ = make_gsp(num_classes=400, embedding_dim=64, head_init="kaiming_fan_out")
    for layer in (method.embedder.head, method.classifier):
        fan_out = layer.weight.shape[0]
        assert torch.count_nonzero(layer.bias) == 0
        std = float(layer.weight.detach().std())
        assert std == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.1)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"pooling": {"name": "gsp", "args": {}}},
            "intra_batch: pooling.args.init: intra_batch initialises",
        ),
        (
            {"pooling": {"name": "gsp", "args": {"init": "none", "dim": 5}}},
            "pooling.args.dim: 5 must equal embedding_dim 8",
        ),
        (
            {"pooling": {"name": "gsp", "args": {"init": "none", "mu": 1}}},
            "pooling.args: unknown",
        ),
        (
            {"pooling": {**GSP, "args": {**GSP["args"], "entropy_weight": -1}}},
            "pooling.args.entropy_weight: must be >= 0",
        ),
        ({"zsr": {"enabled": True}}, "intra_batch: zsr.enabled: the ZSR loss needs"),
        ({"zsr": {"mix": "product"}}, "intra_batch.zsr.mix"),
        (
            {"head": {"name": "mlp"}, "head_init": "kaiming_fan_out"},
            "head_init: 'kaiming_fan_out' needs head.name 'linear'",
        ),
    ],
)
def test_bad_keys_are_one_line_errors(over, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_method_config(raw(**over))
    assert "\n" not in str(info.value)


def test_more_prototypes_than_classifier_rows_is_a_clear_error():
    with pytest.raises(ValueError, match="num_prototypes: 4 prototypes cannot"):
        make_gsp(num_classes=3)


def test_zsr_defaults_are_off_and_additive():
    cfg = parse_method_config({"method": "intra_batch"})
    assert not cfg.zsr.enabled and cfg.zsr.mix == "additive"
    assert (cfg.zsr.weight, cfg.zsr.ridge, cfg.zsr.scale) == (0.1, 0.05, 9.5)
    assert cfg.head_init == "default"


# --- the gsp_intra_batch_<dataset> recipes ---------------------------------------

# the Intra-Batch + GSP configuration as printed (lr to 5, weight decay to 3 significant
# digits, epochs) and the number of training classes deciding K (64 below 1,000 classes,
# else 128)
SPEC = {
    "cub200": (1.5637e-5, 6.06e-6, 70, 100),
    "cars196": (3.6683e-5, 2.55e-9, 30, 98),
    "sop": (2.4725e-4, 2.77e-13, 70, 11318),
    "inshop": (1.1266e-4, 1.06e-7, 70, 3997),
}


def _recipe(dataset):
    block = yaml.safe_load(YAML.read_text())["intra_batch"]
    return IntraBatchConfig.model_validate(
        {**block, "recipe": f"gsp_intra_batch_{dataset}"}
    )


def significant(x, digits):
    return float(f"{x:.{digits - 1}e}")


@pytest.mark.parametrize("dataset", sorted(SPEC))
def test_yaml_recipes_validate_with_the_spec_values(dataset):
    cfg = _recipe(dataset)
    lr, wd, epochs, classes = SPEC[dataset]
    o = cfg.optimizer
    assert o.name == "radam" and o.args == {"decoupled_weight_decay": True}
    assert significant(o.lr, 5) == lr and significant(o.weight_decay, 3) == wd
    assert cfg.training.epochs == epochs
    assert o.backbone_lr_mult == (0.0 if dataset == "cars196" else 1.0)
    assert (o.head_lr_mult, o.loss_lr_mult) == (1.0, 1.0)
    assert [(d.epoch, d.factor) for d in cfg.lr_drops] == [(6, 0.1), (11, 0.1)]
    assert cfg.backbone.name == "resnet50" and cfg.backbone.pretrained
    assert not cfg.backbone.freeze_bn and cfg.embedding_dim == 512
    assert (cfg.sampler.P, cfg.sampler.K) == (32, 4)
    assert cfg.sampler.random_factorisation is None
    assert cfg.training.init_from and cfg.training.amp is False
    assert cfg.training.checkpoint_selection == "test_recall_at_1"
    assert cfg.pooling.name == "gsp"
    assert cfg.pooling.args == {
        "num_prototypes": 64 if classes < 1000 else 128,
        "transport_ratio": 0.3,
        "entropy_weight": 0.1,
        "solver_iterations": 100,
        "init": "classifier_kcenter",
        "operator": "weighted_max",
        "augment_max_pool": False,
    }
    assert cfg.head.model_dump() == {"name": "linear", "args": {"bias": True}}
    assert cfg.head_init == "kaiming_fan_out"
    assert cfg.losses == ["backbone_ce", "mpn_ce"]
    assert cfg.loss_weights.model_dump() == {"backbone_ce": 1.0, "mpn_ce": 1.0}
    assert cfg.zsr.model_dump() == {
        "enabled": True,
        "weight": 0.1,
        "mix": "additive",
        "ridge": 0.05,
        "scale": 9.5,
        # the PyTorch ZSR module: −log(p + 1e-16), first/second half of the batch
        "epsilon": 1e-16,
        "split": "halves",
    }
    assert cfg.label_smoothing == 0.1 and cfg.transforms.preset == "intra_batch"


def test_cub_recipe_builds_with_a_small_backbone():
    cfg = _recipe("cub200")
    cfg = cfg.model_copy(
        update={"backbone": cfg.backbone.model_copy(update={"pretrained": False})}
    )
    cfg = cfg.model_copy(
        update={"backbone": cfg.backbone.model_copy(update={"name": "small_cnn"})}
    )
    torch.manual_seed(0)
    method = build_method(cfg, 100)
    assert isinstance(method, IntraBatch) and method.zsr is not None
    pool = method.embedder.pooling
    assert pool.prototypes.shape == (64, 512) and pool.operator == "weighted_max"
    assert (pool.mu, pool.gamma, pool.iterations) == (0.3, 0.1, 100)
    assert method.zsr.class_embeddings.shape == (100, 512)
    assert method.classifier.weight.shape == (100, 512)
