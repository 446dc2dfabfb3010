"""The ``pfml`` method (docs/methods/pfml.md): config validation (α ≥ 0 is the
force's decay exponent), YAML recipes, optimiser groups, inference export, the
collapse watch and training through the real ``Trainer`` (hooks, resume, α = 0)."""

import logging
import math
from pathlib import Path

import pytest
import torch
import yaml

from dml_pipelines.core.engine.hooks import StepOutput
from dml_pipelines.core.engine.trainer import load_checkpoint
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.pfml import PFML, EmbeddingCollapseError
from dml_pipelines.core.methods.pfml_config import PFMLConfig
from dml_pipelines.core.methods.registry import build_method
from tests.conftest import minimal_block
from tests.core.engine.conftest import Kill

from ..engine.conftest import (
    make_trainer,
    same_weights,
    two_rank_step,
    weights,
)

YAML = Path(__file__).resolve().parents[3] / "conf/base/parameters_pfml.yml"


def config(**over):
    raw = (
        minimal_block(
            "pfml",
            proxies_per_class=2,
            sampler={"P": 4, "K": 2},
            training={"device": "cpu", "epochs": 2, "amp": False},
        )
        | over
    )
    return parse_method_config(raw)


def make(num_classes=4, **over):
    cfg = config(**over)
    torch.manual_seed(0)
    return build_method(cfg, num_classes), cfg


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 16, 16, generator=g), torch.arange(4).repeat(2)


def test_minimal_block_trains_a_step_with_the_spec_defaults():
    cfg = parse_method_config(minimal_block("pfml"))
    assert (cfg.alpha, cfg.delta, cfg.proxies_per_class) == (4.0, 0.2, 15)
    assert (cfg.radius_att, cfg.radius_rep, cfg.min_distance) == (0.2, 0.2, 1e-4)
    assert (cfg.variant, cfg.proxy_proxy, cfg.reduction) == (
        "pfml",
        "batch_classes",
        "per_batch_sample",
    )
    assert cfg.normalize_proxies and cfg.proxy_init == "kaiming_normal"
    assert cfg.proxy_lr_multiplier == 100 and cfg.collapse_check
    method = build_method(cfg, 4)
    assert isinstance(method, PFML) and method.criterion.proxies.shape == (60, 8)
    loss, logs = method.training_loss(*batch())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert method.criterion.proxies.grad.abs().sum() > 0
    assert method.embedder.head.weight.grad.abs().sum() > 0
    terms = [logs[f"energy/{k}"] for k in ("sample_sample", "sample_proxy")]
    terms += [logs["energy/proxy_sample"], logs["energy/proxy_proxy"]]
    assert float(loss.detach()) == pytest.approx(sum(terms) / 8, rel=1e-5)
    assert 0 < logs["neg_distance"] <= 2


def test_proxies_have_their_own_group_at_lr_times_the_multiplier():
    method, cfg = make(optimizer={"name": "adamw", "lr": 0.002})
    groups = {g["name"]: g for g in method.param_groups(cfg.optimizer)}
    assert set(groups) == {"backbone", "head", "proxies"}
    assert groups["proxies"]["params"] == [method.criterion.proxies]
    assert groups["proxies"]["lr"] == pytest.approx(0.2)
    assert groups["backbone"]["lr"] == groups["head"]["lr"] == 0.002
    grouped = sorted(id(p) for g in groups.values() for p in g["params"])
    assert grouped == sorted(id(p) for p in method.parameters() if p.requires_grad)
    none, cfg0 = make(proxies_per_class=0)
    assert none.criterion.proxies is None
    assert [g["name"] for g in none.param_groups(cfg0.optimizer)] == [
        "backbone",
        "head",
    ]


def test_export_holds_inference_weights_only_and_reloads():
    method, cfg = make()
    state = method.export_state_dict()
    assert not any("prox" in k for k in state)
    assert "criterion.proxies" in method.state_dict()
    other = build_method(cfg, 4)
    other.load_export_state_dict(state)
    x, _ = batch(1)
    method.eval(), other.eval()
    torch.testing.assert_close(other.embed(x), method.embed(x))
    torch.testing.assert_close(method.embed(x), method.embedder.embedding(x))


def test_variant_options_reach_the_loss():
    method, _ = make(
        variant="cpml",
        cpml={"repulsion": "hinge"},
        delta=0.3,
        delta_att=0.25,
        proxy_proxy="none",
        reduction="sum",
        normalize_proxies=False,
        proxy_init="normal",
    )
    c = method.criterion
    assert (c.variant, c.rep_kind, c.delta_att, c.delta_rep) == (
        "cpml",
        "hinge",
        0.25,
        0.3,
    )
    assert (c.proxy_proxy, c.reduction, c.normalize_proxies) == ("none", "sum", False)
    assert c.proxies.std() > 0.5  # standard normal, not fan-out Kaiming


@pytest.mark.parametrize("alpha", [-1, -1e-3])
def test_11_negative_alpha_is_rejected_naming_the_key(alpha):
    with pytest.raises(ValueError, match=r"^pfml\.alpha: must be >= 0") as info:
        parse_method_config({"method": "pfml", "alpha": alpha})
    assert f"(got {alpha})" in str(info.value) and "force" in str(info.value)
    assert "\n" not in str(info.value)


def test_alpha_zero_the_papers_constant_force_trains():
    """The paper's ablation point α = 0 validates, its energy falls over two
    epochs through the real Trainer and the embedder moves."""
    cfg = config(alpha=0, training={"device": "cpu", "epochs": 2, "amp": False})
    assert cfg.alpha == 0
    t = trainer(cfg)
    before = weights(t.method.embedder)
    history = t.fit()
    assert history["loss"].iloc[1] < history["loss"].iloc[0]
    assert not same_weights(weights(t.method.embedder), before)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"delta": 0}, r"pfml\.delta: .*greater than 0"),
        ({"delta_rep": -0.1}, r"pfml\.delta_rep: "),
        ({"min_distance": 0.05}, r"pfml\.min_distance: must be in \(0, .* 0\.02\]"),
        ({"delta_att": 0.05, "min_distance": 0.01}, r"pfml\.min_distance: .*0\.005"),
        ({"min_distance": 0}, r"pfml\.min_distance: "),
        ({"proxies_per_class": -1}, r"pfml\.proxies_per_class: "),
        ({"proxies_per_class": 1.5}, r"pfml\.proxies_per_class: "),
        ({"variant": "pfml2"}, r"pfml\.variant: "),
        ({"proxy_proxy": "some"}, r"pfml\.proxy_proxy: "),
        ({"reduction": "mean"}, r"pfml\.reduction: "),
        ({"cpml": {"repulsion": "x"}}, r"pfml\.cpml\.repulsion: "),
        ({"optimizer": {"loss_lr_mult": 10}}, r"optimizer\.loss_lr_mult: .*proxy"),
        ({"normalization": "none"}, r"pfml\.normalization: "),
    ],
)
def test_bad_keys_are_one_line_errors(over, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_method_config({"method": "pfml", **over})
    assert "\n" not in str(info.value)


# --- YAML recipes (§6, §7) -----------------------------------------------------

EMBEDDED_ALPHA = 4.0
PAPER = {"cub200": (15, None), "cars196": (15, None), "sop": (2, None)}
PAPER |= {"cub200_noise20": (15, 0.2), "cars196_noise20": (15, 0.2)}


def _yaml():
    return yaml.safe_load(YAML.read_text())["pfml"]


@pytest.mark.parametrize("recipe", ["default", *_yaml()["recipes"]])
def test_every_yaml_recipe_validates_with_the_spec_values(recipe):
    cfg = PFMLConfig.model_validate({**_yaml(), "recipe": recipe})
    # the paper's α = 3 (force ∝ d^−3) on its datasets; the embedded default 4
    assert cfg.alpha == (3.0 if recipe in PAPER else EMBEDDED_ALPHA)
    assert (cfg.delta, cfg.min_distance) == (0.2, 1e-4)
    assert cfg.proxy_proxy == "batch_classes" and cfg.reduction == "per_batch_sample"
    assert cfg.proxy_lr_multiplier == 100.0 and cfg.training.scheduler is None
    if recipe not in PAPER:
        assert (cfg.backbone.name, cfg.embedding_dim, cfg.training.epochs) == (
            "small_cnn",
            64,
            20,
        )
        # M = 1 on embedded data: chosen on glyphs_tune (docs/benchmarks.md)
        assert cfg.proxies_per_class == 1 and cfg.optimizer.name == "adamw"
        noise = 0.2 if recipe == "glyphs_noise20" else 0.0
        assert cfg.training.label_noise == noise
        return
    m, noise = PAPER[recipe]
    b, o, t = cfg.backbone, cfg.optimizer, cfg.training
    assert (b.name, b.pretrained, b.freeze_bn) == ("resnet50", True, True)
    assert (cfg.pooling.name, cfg.embedding_dim) == ("gap+gmp", 512)
    assert (o.name, o.lr, o.weight_decay) == ("adamw", 5e-4, 1e-4)
    assert (cfg.sampler.P, cfg.sampler.K, cfg.transforms.preset) == (
        30,
        6,
        "proxy_anchor",
    )
    assert (t.epochs, t.warmup_epochs, t.checkpoint_selection) == (200, 1, "last")
    assert cfg.proxies_per_class == m and t.label_noise == (noise or 0.0)


def test_dataset_recipes_apply_automatically():
    cfg = PFMLConfig.model_validate(_yaml())
    assert cfg.for_dataset("sop").proxies_per_class == 2
    assert cfg.for_dataset("glyphs").proxies_per_class == 1
    assert cfg.for_dataset("digits").sampler.P == 5


# --- training through the real Trainer -------------------------------------------


def trainer(cfg, checkpoint_dir=None, callbacks=None):
    return make_trainer(cfg, checkpoint_dir, callbacks=callbacks)


def test_two_epochs_lower_the_energy_move_the_proxies_and_log_the_distance():
    cfg = config(training={"device": "cpu", "epochs": 2, "amp": False})
    t = trainer(cfg)
    before = t.method.criterion.proxies.detach().clone()
    history = t.fit()
    assert list(history["epoch"]) == [1, 2]
    assert history["loss"].iloc[1] < history["loss"].iloc[0]
    assert not torch.equal(t.method.criterion.proxies.detach(), before)
    assert len(t.method.neg_distances) == len(t.loader)  # hooks saw every step
    assert 0 < t.method.epoch_neg_distance <= 2


def test_resume_gives_the_uninterrupted_weights_and_proxies(tmp_path):
    cfg = config()
    full = trainer(cfg)
    full.fit()
    with pytest.raises(KeyboardInterrupt):
        trainer(cfg, tmp_path, callbacks=[Kill(at=1)]).fit()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    resumed = trainer(cfg, tmp_path)
    resumed.fit()
    assert resumed.resumed
    assert same_weights(weights(resumed.method), weights(full.method))
    assert "criterion.proxies" in weights(resumed.method)


def test_collapse_watch_stops_with_a_clear_error(tmp_path):
    # δ/10 = 1.99: no mean different-class distance on the sphere reaches it
    cfg = config(delta=19.9, training={"device": "cpu", "epochs": 2, "amp": False})
    with pytest.raises(EmbeddingCollapseError, match=r"pfml\.collapse_check: .*1\.99"):
        trainer(cfg, tmp_path).fit()
    assert not (tmp_path / "last.pt").exists()  # the failing epoch is not saved
    off = config(
        delta=19.9,
        collapse_check=False,
        training={"device": "cpu", "epochs": 1, "amp": False},
    )
    assert len(trainer(off).fit()) == 1


@pytest.mark.parametrize(("att", "rep"), [(19.9, 0.3), (0.3, 19.9)])
def test_collapse_threshold_is_a_tenth_of_the_smaller_radius(att, rep):
    """Unequal radii: the watch stops below min(δ_att, δ_rep) / 10 = 0.03, so a
    run whose mean different-class distance is about 1 trains on (either larger
    radius / 10 = 1.99 would stop it)."""
    cfg = config(
        delta_att=att,
        delta_rep=rep,
        min_distance=1e-4,
        training={"device": "cpu", "epochs": 1, "amp": False},
    )
    t = trainer(cfg)
    assert t.method.collapse_threshold == pytest.approx(0.03)
    assert len(t.fit()) == 1
    assert 0.03 < t.method.epoch_neg_distance < 1.99


# --- the collapse watch's hooks, called directly -----------------------------------


def step_output(logs, step):
    """The end-of-step hook's argument for step ``step`` with ``logs``."""
    return StepOutput(torch.tensor(1.0), logs, {}, step, step)


def test_step_hook_keeps_only_finite_distances():
    method, _ = make()
    method.on_train_epoch_start(None, 0)
    method.on_train_batch_end(None, step_output({"loss": 1.0}, 0))  # no distance
    method.on_train_batch_end(None, step_output({"neg_distance": math.nan}, 1))
    method.on_train_batch_end(None, step_output({"neg_distance": 0.5}, 2))
    assert method.neg_distances == [0.5]
    method.on_train_epoch_start(None, 1)
    assert method.neg_distances == []


def test_epoch_hook_averages_logs_and_raises_below_the_threshold(caplog):
    method, _ = make()
    method.collapse_threshold = 0.3
    method.on_train_epoch_end(None, 0, {})  # no step seen: nothing to judge
    assert math.isnan(method.epoch_neg_distance)
    method.neg_distances = [0.5, 0.7]
    with caplog.at_level(logging.INFO, logger="dml_pipelines.core.methods.pfml"):
        method.on_train_epoch_end(None, 2, {})
    assert method.epoch_neg_distance == pytest.approx(0.6)
    messages = [r.getMessage() for r in caplog.records if r.name.endswith(".pfml")]
    assert messages == ["pfml epoch 3: mean different-class distance 0.6000"]
    method.neg_distances = [0.2, 0.3]
    with pytest.raises(EmbeddingCollapseError) as info:
        method.on_train_epoch_end(None, 4, {})
    assert str(info.value) == (
        "pfml.collapse_check: mean different-class distance 0.25 < δ/10 = 0.3 in "
        "epoch 5: the embeddings collapsed (check pfml.delta and the repulsion)"
    )
    method.neg_distances = [0.3]  # at the threshold: no collapse
    method.on_train_epoch_end(None, 5, {})
    method.collapse_threshold = None  # the check off: only logged
    method.neg_distances = [1e-6]
    method.on_train_epoch_end(None, 6, {})
    assert method.epoch_neg_distance == pytest.approx(1e-6)


def test_the_loss_is_taken_over_the_gathered_global_batch():
    method, _ = make()
    images, labels = batch()
    loss, logs = method.training_loss(images, labels, two_rank_step())
    with torch.no_grad():
        z = method.embedder(images).float()
    expected = method.criterion(torch.cat([z, z]), torch.cat([labels, labels]))
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    alone, _ = method.training_loss(images, labels)
    assert float(alone) != pytest.approx(float(expected), rel=1e-3)


def test_method_defaults_without_the_builder():
    method, _ = make()
    plain = PFML(method.embedder, method.criterion)
    assert plain.proxy_lr_multiplier == 100.0 and plain.collapse_threshold is None
    assert plain.neg_distances == [] and math.isnan(plain.epoch_neg_distance)
    # before any epoch start
    plain.on_train_batch_end(None, step_output({"neg_distance": 0.4}, 0))
    assert plain.neg_distances == [0.4]


def test_two_threads_train_bit_identical_weights_run_to_run():
    """Two runs of the same config with ``training.num_threads: 2`` end with the
    same weights and proxies (the loss's pair gradients add in a fixed order;
    docs/methods/pfml.md "Key parameters")."""
    cfg = config(
        proxies_per_class=150,
        training={"device": "cpu", "epochs": 1, "amp": False, "num_threads": 2},
    )
    runs = []
    for _ in range(3):
        t = trainer(cfg)
        t.fit()
        runs.append(weights(t.method))
    assert same_weights(runs[1], runs[0]) and same_weights(runs[2], runs[0])
