"""The ``gsp`` method (docs/methods/gsp.md), its config and YAML recipes
(docs/methods/gsp.md, "Recipes"), and training through the real ``Trainer``
(hooks fill the GAP memory and the cross-batch memory; resume equals the
uninterrupted run).
"""

import math
from pathlib import Path

import pytest
import torch
import yaml

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.hooks import StepContext, StepOutput
from dml_pipelines.core.engine.optim import build_optimizer
from dml_pipelines.core.engine.trainer import load_checkpoint
from dml_pipelines.core.losses.gsp_zsr import ZeroShotRegressionLoss
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.gsp import GSP
from dml_pipelines.core.methods.gsp_config import GspConfig
from dml_pipelines.core.methods.registry import build_method
from tests.conftest import minimal_block
from tests.core.engine.conftest import Kill

from ..engine.conftest import make_trainer

YAML = Path(__file__).resolve().parents[3] / "conf/base/parameters_gsp.yml"


def make(num_classes=4, **over):
    raw = (
        minimal_block(
            "gsp",
            pooling={
                "name": "gsp",
                "args": {"num_prototypes": 4, "init_memory_size": 16},
            },
            xbm={"memory_batches": 2, "start_step": 2},
            sampler={"P": 4, "K": 2},
            training={"device": "cpu", "epochs": 2},
        )
        | over
    )
    cfg = parse_method_config(raw)
    torch.manual_seed(0)
    return build_method(cfg, num_classes), cfg


def batch(seed=0, size=16):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, size, size, generator=g), torch.arange(4).repeat(2)


def initialise(method, seed=1):
    """Fill the GAP memory through the step hook (as the trainer does)."""
    method.train()
    for s in range(2):
        ctx = StepContext(global_step=s, step=s)
        loss, logs = method.training_loss(*batch(seed + s), ctx)
        out = StepOutput(loss.detach(), logs, ctx.outputs, s, s)
        method.on_train_batch_end(None, out)
    assert bool(method.embedder.pooling.initialized)


def test_minimal_block_trains_a_step_and_groups_hold_every_parameter():
    cfg = parse_method_config(minimal_block("gsp"))
    method = build_method(cfg, 4)
    assert isinstance(method, GSP) and isinstance(method.zsr, ZeroShotRegressionLoss)
    loss, logs = method.training_loss(*batch())
    assert torch.isfinite(loss) and set(logs) == {"dml", "zsr"}
    groups = {
        g["name"]: {id(p) for p in g["params"]}
        for g in method.param_groups(cfg.optimizer)
    }
    assert id(method.zsr.class_embeddings) in groups["loss"]
    assert id(method.embedder.pooling.prototypes) in groups["head"]
    trainable = {id(p) for p in method.parameters() if p.requires_grad}
    assert set().union(*groups.values()) == trainable
    assert method.embedder.head.bias is None  # the 1×1 projection has no bias


def test_before_initialisation_the_embedding_is_gap_and_zsr_is_log_c():
    method, _ = make()
    method.eval()
    x, y = batch()
    fmap = method.embedder.backbone(x)
    expected = method.embedder.head(fmap.mean(dim=(2, 3)))
    torch.testing.assert_close(method.embed(x), expected)
    _, logs = method.training_loss(x, y)
    assert logs["zsr"] == pytest.approx(math.log(4), abs=1e-5)


@pytest.mark.parametrize("mix", ["convex", "additive"])
def test_loss_mixes_the_terms(mix):
    method, _ = make(zsr={"weight": 0.25, "mix": mix}, xbm={"enabled": False})
    initialise(method)
    loss, logs = method.training_loss(*batch(5))
    expected = (
        0.75 * logs["dml"] + 0.25 * logs["zsr"]
        if mix == "convex"
        else logs["dml"] + 0.25 * logs["zsr"]
    )
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)


def test_prototypes_and_class_embeddings_change_after_one_step():
    method, cfg = make()
    initialise(method)
    opt = build_optimizer(method.param_groups(cfg.optimizer), cfg.optimizer)
    protos = method.embedder.pooling.prototypes
    before = protos.detach().clone(), method.zsr.class_embeddings.detach().clone()
    loss, _ = method.training_loss(*batch(7))
    loss.backward()
    opt.step()
    assert not torch.equal(protos, before[0])
    assert not torch.equal(method.zsr.class_embeddings, before[1])


def test_export_keeps_prototypes_but_not_the_memories():
    method, cfg = make()
    initialise(method)
    state = method.export_state_dict()
    assert "embedder.pooling.prototypes" in state
    assert "embedder.pooling.initialized" in state
    assert not any(
        k.endswith(("pooling.memory", "memory_count", "steps_seen")) for k in state
    )
    assert not any(k.startswith(("zsr.", "memory.", "criterion.")) for k in state)
    other, _ = make()
    other.load_export_state_dict(state)
    x, _ = batch(3)
    method.eval(), other.eval()
    torch.testing.assert_close(other.embed(x), method.embed(x))


def test_plain_baseline_is_the_base_loss_on_gap():
    method, _ = make(pooling={"name": "gap"}, zsr={"enabled": False})
    x, y = batch(2)
    loss, logs = method.training_loss(x, y)
    emb = torch.nn.functional.normalize(method.embedder.embedding(x), dim=1)
    torch.testing.assert_close(loss, method.criterion(emb, y))
    assert set(logs) == {"dml"}


class Recorder(Callback):
    def __init__(self):
        self.logs = []

    def on_train_batch_end(self, trainer, outputs):
        self.logs.append(dict(outputs.logs))


def trainer_for(cfg, tmp_path=None, callbacks=None):
    return make_trainer(cfg, tmp_path, callbacks=callbacks)


def test_trains_two_epochs_hooks_initialise_prototypes_and_fill_the_memory():
    _, cfg = make(training={"device": "cpu", "epochs": 2})
    rec = Recorder()
    trainer = trainer_for(cfg, callbacks=[rec])
    pool = trainer.method.embedder.pooling
    init = pool.prototypes.detach().clone()
    history = trainer.fit()
    steps = len(rec.logs)
    assert steps == 2 * len(trainer.loader) and history["loss"].notna().all()
    assert bool(pool.initialized) and int(pool.memory_count) == 16
    assert not torch.equal(pool.prototypes.detach(), init)
    assert int(trainer.method.memory.enqueued) == steps
    assert "xbm" not in rec.logs[2] and "xbm" in rec.logs[3]  # 2 + 2 batches
    zsr = [r["zsr"] for r in rec.logs]
    assert zsr[0] == pytest.approx(math.log(6), abs=1e-5)  # before the prototypes
    assert zsr[-1] != pytest.approx(math.log(6), abs=1e-3)  # GSP attributes now


class Outputs(Callback):
    """Each step's outputs and the memory after the method's hook (which runs
    before the callbacks')."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, outputs):
        memory = trainer.method.memory
        self.steps.append((outputs, memory.feats.clone(), int(memory.ptr)))


def test_the_end_of_step_hook_gets_the_steps_tensors_and_enqueues_them():
    _, cfg = make(training={"device": "cpu", "epochs": 2})
    rec = Outputs()
    trainer = trainer_for(cfg, callbacks=[rec])
    trainer.fit()
    size = trainer.method.memory.feats.shape[0]
    assert [o.global_step for o, _, _ in rec.steps] == list(range(len(rec.steps)))
    for out, memory, pointer in rec.steps:
        t = out.tensors
        assert set(t) == {"embeddings", "labels", "gap"}
        assert t["embeddings"].shape == (8, 8) and t["labels"].shape == (8,)
        assert not any(v.requires_grad for v in t.values())
        assert out.logs["loss"] == float(out.loss)
        rows = (pointer - 8 + torch.arange(8)) % size  # the rows just written
        assert torch.equal(memory[rows], t["embeddings"])
    assert not hasattr(trainer.method, "_pending")  # nothing kept between calls


def test_resume_after_a_kill_equals_the_uninterrupted_run(tmp_path):
    _, cfg = make(training={"device": "cpu", "epochs": 2})
    full = trainer_for(cfg)
    full.fit()
    with pytest.raises(KeyboardInterrupt):
        trainer_for(cfg, tmp_path, callbacks=[Kill(at=1)]).fit()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    resumed = trainer_for(cfg, tmp_path)
    resumed.fit()
    a, b = full.method.state_dict(), resumed.method.state_dict()
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


# --- config and YAML recipes ---------------------------------------------------

MLRC = {  # MLRC recipes: (K, memory batches, steps per epoch, patience)
    "cub200": (64, 25, 100, 15),
    "cars196": (64, 25, 100, 15),
    "sop": (128, 1400, 1000, 10),
    "inshop": (128, 400, 1000, 10),
}
# conventional recipes: (K, lr, steps per epoch, plateau patience, ES patience)
CONVENTIONAL = {
    "conventional_small": (64, 1e-5, 25, 4, 15),
    "conventional_large": (128, 1e-4, 250, 3, 10),
    "conventional_large_inshop": (128, 1e-4, 250, 3, 10),
}
#: TF conventional_resnet50_default + resnet50_{small,large}: (K, operator,
#: GMP branch, memory batches, memory start, lr, steps, plateau, ES patience)
RESNET50 = {
    "conventional_resnet50_small": (
        64,
        "weighted_gem",
        False,
        25,
        100,
        1e-5,
        25,
        4,
        15,
    ),
    "conventional_resnet50_large": (
        *(128, "weighted_avg", True, 1400, 1000, 1e-4, 250, 3, 10),
    ),
    "conventional_resnet50_large_inshop": (
        *(128, "weighted_avg", True, 400, 1000, 1e-4, 250, 3, 10),
    ),
}


def _recipes():
    raw = yaml.safe_load(YAML.read_text())["gsp"]
    return raw, ["default", *raw["recipes"]]


def test_yaml_default_block_is_the_embedded_setting():
    raw, _ = _recipes()
    cfg = GspConfig.model_validate({**raw, "recipe": "default"})
    assert (cfg.backbone.name, cfg.embedding_dim, cfg.training.epochs) == (
        "small_cnn",
        64,
        20,
    )
    assert cfg.sampler.P * cfg.sampler.K == 64 and cfg.pooling.name == "gsp"
    assert (cfg.zsr.weight, cfg.zsr.ridge, cfg.zsr.scale, cfg.zsr.mix) == (
        0.1,
        0.05,
        9.5,
        "convex",
    )
    method = build_method(cfg, 5)
    pool = method.embedder.pooling
    assert (pool.mu, pool.gamma, pool.iterations, pool.backward) == (
        0.3,
        5.0,
        100,
        "implicit",
    )
    assert pool.prototypes.shape == (64, 64) and len(pool.memory) == 1024


@pytest.mark.parametrize("recipe", _recipes()[1])
def test_every_yaml_recipe_validates_with_the_spec_values(recipe):
    raw, _ = _recipes()
    cfg = GspConfig.model_validate({**raw, "recipe": recipe})
    if recipe in MLRC or recipe in CONVENTIONAL:
        assert cfg.backbone.model_dump() == {
            "name": "bninception",
            "pretrained": True,
            "freeze_bn": True,
            "args": {},  # ImageNet weights through torch's hub cache
        }
        a = cfg.pooling.args
        assert (a["transport_ratio"], a["entropy_weight"], a["solver_iterations"]) == (
            0.3,
            5.0,
            100,
        )
        assert a["init_memory_size"] == 1024 and cfg.transforms.preset == "mlrc"
        assert cfg.loss.model_dump() == {
            "name": "contrastive_c1",
            "args": {"margin": 0.5, "eps": 1e-5},
        }
        assert (cfg.xbm.start_step, cfg.xbm.weight) == (1000, 1.0)
        assert (cfg.zsr.weight, cfg.zsr.ridge, cfg.zsr.scale) == (0.1, 0.05, 9.5)
        assert [(t.name, t.args) for t in cfg.optimizer.grad_transforms] == [
            ("coupled_weight_decay", {"weight_decay": 1e-4}),
            ("clip_norm", {"max_norm": 10.0}),
            ("clip_value", {"clip_value": 10.0}),
        ]
        assert cfg.optimizer.name == "keras_adam" and cfg.optimizer.weight_decay == 0
        assert cfg.sampler.order == "interleaved" and cfg.training.epochs == 10000
    if recipe in MLRC:
        k, mem, steps, patience = MLRC[recipe]
        assert (a["num_prototypes"], cfg.xbm.memory_batches) == (k, mem)
        assert (cfg.sampler.P, cfg.sampler.K, cfg.sampler.batches_per_epoch) == (
            8,
            4,
            steps,
        )
        assert cfg.embedding_dim == 128 and cfg.optimizer.lr == 1e-5
        assert cfg.training.checkpoint_selection == "validation"
        assert cfg.training.validation_metric == "map@r"
        assert cfg.training.early_stopping.patience == patience
        assert not a["augment_max_pool"]
    if recipe in CONVENTIONAL:
        k, lr, steps, plateau, patience = CONVENTIONAL[recipe]
        assert a["num_prototypes"] == k and a["augment_max_pool"]
        assert cfg.embedding_dim == 512 and cfg.optimizer.lr == lr
        assert (cfg.sampler.P, cfg.sampler.K, cfg.sampler.batches_per_epoch) == (
            32,
            4,
            steps,
        )
        assert cfg.training.checkpoint_selection == "test_recall_at_1"
        s = cfg.training.scheduler
        assert s.name == "plateau" and s.args["patience"] == plateau
        assert (s.args["factor"], s.args["min_lr"], s.args["cooldown"]) == (
            0.5,
            1e-6,
            2,
        )
        assert s.args["threshold"] == 1e-3
        assert cfg.training.early_stopping.patience == patience
    if recipe in CONVENTIONAL and recipe.endswith("_inshop"):
        assert cfg.xbm.memory_batches == 400  # trainModel.py sets it for In-Shop
    if recipe in RESNET50:
        k, op, gmp, mem, start, lr, steps, plateau, patience = RESNET50[recipe]
        assert cfg.backbone.name == "resnet50" and cfg.backbone.freeze_bn
        a = cfg.pooling.args
        assert (a["num_prototypes"], a["operator"], a["augment_max_pool"]) == (
            k,
            op,
            gmp,
        )
        assert (a["transport_ratio"], a["entropy_weight"]) == (0.3, 5.0)
        assert (cfg.xbm.memory_batches, cfg.xbm.start_step) == (mem, start)
        assert cfg.embedding_dim == 512 and cfg.optimizer.lr == lr
        assert cfg.optimizer.name == "keras_adam"
        assert cfg.optimizer.grad_transforms[0].args == {"weight_decay": 4e-4}
        assert (cfg.sampler.P, cfg.sampler.K, cfg.sampler.batches_per_epoch) == (
            28,
            4,
            steps,
        )
        s = cfg.training.scheduler
        assert s.name == "plateau" and s.args["patience"] == plateau
        assert cfg.training.early_stopping.patience == patience
        assert cfg.loss.args == {"margin": 0.5, "eps": 1e-5}
    if recipe == "plain":
        assert cfg.pooling.name == "gap" and not cfg.zsr.enabled and cfg.xbm.enabled


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"pooling": {"name": "gsp", "args": {"transport_ratio": 0}}},
            "gsp: pooling.args.transport_ratio: must be in",
        ),
        (
            {"pooling": {"name": "gsp", "args": {"backward": "auto"}}},
            "pooling.args.backward: valid",
        ),
        (
            {"pooling": {"name": "gsp", "args": {"dim": 7}}},
            "pooling.args.dim: 7 must equal",
        ),
        (
            {"pooling": {"name": "gsp", "args": {"supports": 3}}},
            "pooling.args: unknown",
        ),
        (
            {"pooling": {"name": "gsp", "args": {"init": "classifier_kcenter"}}},
            "gsp: pooling.args.init: classifier_kcenter needs a classifier",
        ),
        ({"pooling": {"name": "gsp", "args": {"init": "k"}}}, "pooling.args.init: "),
        ({"pooling": {"name": "gap"}}, "gsp: zsr.enabled: the ZSR loss needs"),
        ({"loss": {"name": "proxy_anchor"}}, "gsp: xbm.enabled: the memory takes"),
        ({"zsr": {"mix": "product"}}, "gsp.zsr.mix"),
        ({"zsr": {"weight": 1.5}}, "gsp.zsr.weight"),
        ({"xbm": {"memory_batches": 0}}, "gsp.xbm.memory_batches"),
    ],
)
def test_bad_keys_are_one_line_errors(over, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_method_config({"method": "gsp", **over})
    assert "\n" not in str(info.value)


def test_one_class_batch_is_a_clear_error():
    method, _ = make()
    with pytest.raises(ValueError, match="zsr.enabled: .*at least 2 classes"):
        method.training_loss(
            torch.randn(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)
        )


def test_no_positives_and_duplicate_images_give_finite_losses_and_gradients():
    method, _ = make(num_classes=8)
    initialise(method)
    x, _ = batch(9)
    for images, labels in (
        (x, torch.arange(8)),  # every sample its own class: no positive pair
        (x[:1].expand(8, -1, -1, -1).contiguous(), torch.arange(4).repeat(2)),
    ):
        method.zero_grad()
        loss, logs = method.training_loss(images, labels)
        loss.backward()
        assert torch.isfinite(loss) and all(math.isfinite(v) for v in logs.values())
        grads = [p.grad for p in method.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def test_defaults_follow_the_official_code():
    """The ``gsp`` defaults are the official code's (docs/methods/gsp.md,
    "Official defaults"): ZSR −log(p + 1e-16) with the alternate class split,
    C1 with ε 1e-5, the 1×1 head in Keras glorot uniform."""
    method, cfg = make()
    assert (method.zsr.epsilon, method.zsr.split) == (1e-16, "alternate")
    assert cfg.loss.args == {"margin": 0.5, "eps": 1e-5}
    assert method.criterion.loss.pos_margin == 1.0 - 1e-5
    w = method.embedder.head.weight.detach()  # Linear(C, D)
    d, c = w.shape
    glorot, torch_default = math.sqrt(6 / (c + d)), 1 / math.sqrt(c)
    assert float(w.abs().max()) <= glorot
    # beyond PyTorch's default bound: the head was re-initialised
    assert float(w.abs().max()) > torch_default
    # the PyTorch initialisation stays available by name
    method, _ = make(head_init="default")
    assert float(method.embedder.head.weight.detach().abs().max()) <= torch_default
