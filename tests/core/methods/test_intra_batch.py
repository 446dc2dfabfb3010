"""The ``intra_batch`` method (docs/methods/intra_batch.md) and its
config / YAML recipes (docs/methods/intra_batch.md, "Recipes")."""

from pathlib import Path

import pytest
import torch
import yaml

from dml_pipelines.core.data.samplers import PKSampler
from dml_pipelines.core.engine.optim import build_optimizer
from dml_pipelines.core.losses.label_smoothed_ce import label_smoothed_ce
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.intra_batch import IntraBatch
from dml_pipelines.core.methods.intra_batch_config import IntraBatchConfig
from dml_pipelines.core.methods.registry import build_method
from tests.conftest import minimal_block

YAML = Path(__file__).resolve().parents[3] / "conf/base/parameters_intra_batch.yml"


def make(num_classes=4, **over):
    raw = (
        minimal_block(
            "intra_batch",
            embedding_dim=16,
            mpn={"layers": 1, "heads": 2},
            temperature=0.3,
        )
        | over
    )
    cfg = parse_method_config(raw)
    torch.manual_seed(0)
    return build_method(cfg, num_classes), cfg


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 16, 16, generator=g), torch.arange(4).repeat(2)


def mpn_params(method):
    return [*method.mpn.parameters(), *method.mpn_classifier.parameters()]


def test_backbone_embedding_is_unit_norm_and_eval_ignores_the_mpn():
    method, _ = make()
    method.eval()
    x, _ = batch()
    assert isinstance(method, IntraBatch)
    torch.testing.assert_close(method.embedder(x).norm(dim=1), torch.ones(8))
    before = method.embed(x).clone()
    torch.testing.assert_close(before, method.embedder.embedding(x))
    with torch.no_grad():
        for p in mpn_params(method):
            p.add_(torch.randn_like(p))
    assert torch.equal(method.embed(x), before)


@pytest.mark.parametrize(
    "over", [{"losses": ["backbone_ce"]}, {"loss_weights": {"mpn_ce": 0.0}}]
)
def test_backbone_only_is_plain_smoothed_ce_and_mpn_gets_no_gradient(over):
    method, _ = make(**over)
    x, y = batch(1)
    loss, logs = method.training_loss(x, y)
    u = method.embedder.embedding(x)
    expected = label_smoothed_ce(method.classifier(u), y, 0.3, 0.1)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for p in mpn_params(method):
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert method.classifier.bias.grad.abs().sum() > 0


def test_backbone_only_skips_the_mpn_forward(monkeypatch):
    method, _ = make(losses=["backbone_ce"])

    def boom(*args):
        raise AssertionError("MPN forward ran")

    monkeypatch.setattr(method.mpn, "forward", boom)
    method.training_loss(*batch())


def test_loss_is_the_weighted_sum_of_both_terms():
    method, _ = make(loss_weights={"backbone_ce": 0.5, "mpn_ce": 2.0})
    method.eval()  # no dropout: the terms are reproducible
    x, y = batch(2)
    loss, logs = method.training_loss(x, y)
    e = torch.nn.functional.normalize(method.embedder.embedding(x), dim=1)
    g = method.mpn_classifier(method.mpn(e))
    assert logs["mpn_ce"] == pytest.approx(float(label_smoothed_ce(g, y, 0.3).detach()))
    assert float(loss.detach()) == pytest.approx(
        0.5 * logs["backbone_ce"] + 2 * logs["mpn_ce"]
    )


def test_mpn_term_alone_trains_the_backbone():
    method, _ = make(losses=["mpn_ce"])
    loss, logs = method.training_loss(*batch(3))
    assert set(logs) == {"mpn_ce"}
    loss.backward()
    for p in method.embedder.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert method.classifier.weight.grad is None


def test_mpn_classifier_input_is_1024_with_cat_and_two_layers():
    method, _ = make(embedding_dim=512, mpn={"layers": 2, "heads": 8, "cat": True})
    assert method.mpn_classifier.bn.num_features == 1024
    assert method.mpn_classifier.fc.in_features == 1024
    assert method.mpn_classifier.fc.bias is None
    assert method.classifier.in_features == 512 and method.classifier.bias is not None


def test_one_param_group_and_frozen_bn_bias_stays_zero_after_a_step():
    method, cfg = make(optimizer={"name": "radam", "lr": 0.01, "weight_decay": 0.1})
    groups = method.param_groups(cfg.optimizer)
    assert len(groups) == 1 and groups[0]["lr"] == 0.01
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    assert {id(p) for p in groups[0]["params"]} == trainable
    bias = method.mpn_classifier.bn.bias
    assert bias.requires_grad is False and id(bias) not in trainable
    opt = build_optimizer(groups, cfg.optimizer)
    loss, _ = method.training_loss(*batch(4))
    loss.backward()
    opt.step()
    assert torch.count_nonzero(bias) == 0
    other, cfg2 = make(optimizer={"loss_lr_mult": 10.0})
    assert len(other.param_groups(cfg2.optimizer)) == 3


def test_decoupled_weight_decay_scales_parameters_by_one_minus_lr_wd():
    lr, wd = 0.05, 0.2
    for decoupled in (True, False):
        method, cfg = make(
            optimizer={
                "name": "radam",
                "lr": lr,
                "weight_decay": wd,
                "args": {"decoupled_weight_decay": decoupled},
            }
        )
        opt = build_optimizer(method.param_groups(cfg.optimizer), cfg.optimizer)
        params = opt.param_groups[0]["params"]
        same = []
        for _ in range(2):  # each zero-gradient step: p <- p (1 - lr wd)
            before = [p.detach().clone() for p in params]
            for p in params:
                p.grad = torch.zeros_like(p)
            opt.step()
            same.append(
                all(
                    torch.allclose(p, b * (1 - lr * wd))
                    for p, b in zip(params, before, strict=True)
                )
            )
        # the coupled (L2-in-gradient) rule coincides at step 1 only
        assert same == ([True, True] if decoupled else [True, False])


def test_cub_recipe_sampler_draws_54_with_allowed_p():
    raw = yaml.safe_load(YAML.read_text())["intra_batch"]
    cfg = IntraBatchConfig.model_validate({**raw, "recipe": "cub200"})
    rf = cfg.sampler.random_factorisation
    assert cfg.sampler.allow_repeated_classes
    labels = torch.arange(10).repeat_interleave(7).numpy()
    sampler = PKSampler(
        labels,
        cfg.sampler.P,
        cfg.sampler.K,
        allow_repeated_classes=True,
        random_factorisation=(rf.batch_size, rf.P_choices),
    )
    seen = set()
    for epoch in range(12):
        sampler.set_epoch(epoch)
        p, k = sampler.factorisation()
        assert p * k == 54 and p in {2, 3, 6, 9, 18, 27}
        seen.add(p)
        for idx in sampler:
            assert len(idx) == 54
            chunks = labels[idx].reshape(p, k)
            assert (chunks == chunks[:, :1]).all()
    assert len(seen) > 1


# --- config and YAML recipes ---------------------------------------------------


def _recipes():
    raw = yaml.safe_load(YAML.read_text())["intra_batch"]
    return raw, ["default", *raw["recipes"]]


@pytest.mark.parametrize("recipe", _recipes()[1])
def test_every_yaml_recipe_validates(recipe):
    raw, _ = _recipes()
    cfg = IntraBatchConfig.model_validate({**raw, "recipe": recipe})
    assert cfg.normalization == "l2" and cfg.ddp_graph == "local"
    if recipe in RELEASED:
        assert cfg.sampler.allow_repeated_classes and cfg.backbone.pretrained
        assert (cfg.pooling.name, cfg.transforms.preset) == ("gmp", "intra_batch")
        assert cfg.training.checkpoint_selection == "test_recall_at_1"
    if recipe == "sop":
        assert cfg.losses == ["backbone_ce"]


def test_config_defaults_follow_the_spec():
    cfg = parse_method_config({"method": "intra_batch"})
    assert cfg.attention_zero_logit and cfg.label_smoothing == 0.1
    assert cfg.losses == ["backbone_ce", "mpn_ce"]
    # no drops unless asked: the paper's (31 and 51 of 70 epochs) are the recipes'
    assert cfg.lr_drops == []
    assert (cfg.mpn.dropout, cfg.mpn.ffn_mult) == (0.1, 4)
    assert build_method(cfg, 3).callbacks() == []


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"ddp_graph": "global"}, "intra_batch.ddp_graph: .*not implemented"),
        ({"losses": ["triplet"]}, "intra_batch.losses.0"),
        ({"losses": ["mpn_ce", "mpn_ce"]}, "intra_batch.losses: .*twice"),
        ({"normalization": "none"}, "intra_batch.normalization"),
        ({"mpn": {"heads": 3}}, "mpn.heads: 3 does not divide embedding_dim 64"),
        ({"mpn": {"depth": 3}}, "intra_batch.mpn.depth: unknown key"),
        ({"lr_drops": [{"epoch": 0, "factor": 0.1}]}, "intra_batch.lr_drops.0.epoch"),
        (
            {"lr_drops": [{"epoch": 21, "factor": 0.1}]},
            "intra_batch: lr_drops: epoch 21 is beyond training.epochs 20, so the "
            "drop would never fire",
        ),
        (
            {
                "lr_drops": [{"epoch": 3, "factor": 0.1}, {"epoch": 6, "factor": 0.1}],
                "training": {"epochs": 5},
            },
            "lr_drops: epoch 6 is beyond training.epochs 5",
        ),
        (
            {
                "lr_drops": [{"epoch": 3, "factor": 0.1}],
                "training": {"scheduler": {"name": "cosine", "args": {"T_max": 5}}},
            },
            "lr_drops: set lr_drops: \\[\\]",
        ),
    ],
)
def test_bad_keys_are_one_line_errors(over, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_method_config({"method": "intra_batch", **over})
    assert "\n" not in str(info.value)


# The released training configs of the official code, unrounded (one row per
# dataset: layers, heads, cat, P, K, lr, weight decay, T, losses).
RELEASED = {
    "cub200": (1, 2, False, 6, 9, 0.0001563663718906821, 6.059722614369727e-06,
               0.2, ["backbone_ce", "mpn_ce"]),
    "cars196": (2, 8, True, 10, 7, 0.00036683239911604993, 2.551918610962277e-09,
                0.1111111111111, ["backbone_ce", "mpn_ce"]),
    "sop": (1, 8, False, 15, 6, 0.0002472471515853406, 2.7650277063275255e-13,
            0.6046908988578005, ["backbone_ce"]),
    "inshop": (1, 4, False, 14, 4, 0.00011265974954242144, 1.0554824926510768e-07,
               0.18591347176280537, ["backbone_ce", "mpn_ce"]),
}  # fmt: skip


@pytest.mark.parametrize("dataset", sorted(RELEASED))
def test_recipe_values_are_the_released_ones_exactly(dataset):
    raw, _ = _recipes()
    cfg = IntraBatchConfig.model_validate({**raw, "recipe": dataset})
    layers, heads, cat, p, k, lr, wd, t, losses = RELEASED[dataset]
    assert (cfg.mpn.layers, cfg.mpn.heads, cfg.mpn.cat) == (layers, heads, cat)
    assert (cfg.sampler.P, cfg.sampler.K) == (p, k)
    # the released floats to 1e-13: three are written with 14-15 significant
    # digits, which survive DVC rewriting dvc.lock (tests/test_dvc_params.py)
    assert cfg.optimizer.name == "radam"
    assert cfg.optimizer.lr == pytest.approx(lr, rel=1e-13)
    assert cfg.optimizer.weight_decay == pytest.approx(wd, rel=1e-13)
    assert cfg.optimizer.args == {"decoupled_weight_decay": True}
    assert cfg.temperature == t and cfg.losses == losses
    assert cfg.label_smoothing == 0.1 and cfg.mpn.dropout == 0.1
    assert cfg.training.epochs == 70 and cfg.training.amp is False
    assert cfg.embedding_dim == 512 and cfg.backbone.name == "resnet50"
    assert [(d.epoch, d.factor) for d in cfg.lr_drops] == [(31, 0.1), (51, 0.1)]
