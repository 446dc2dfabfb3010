"""The ``ccp`` method (docs/methods/ccp.md, "What was verified"): proxies
after a projection, the regulariser λ(θ − θ̄), scripted instance switching (and
the lagged monitor), network continuity, gradient order; training through the
real ``Trainer`` with resume; config defaults and the YAML recipes."""

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from dml_pipelines.core.data.samplers import PKSampler
from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.hooks import TrainerView
from dml_pipelines.core.engine.optim import build_optimizer
from dml_pipelines.core.methods.ccp import CCP
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.registry import build_method
from tests.conftest import minimal_block
from tests.core.engine.conftest import make_trainer

YAML = Path(__file__).resolve().parents[3] / "conf/base/parameters_ccp.yml"
C, PER_CLASS = 4, 5


def config(**over):
    raw = minimal_block(
        "ccp",
        proxies_per_class=2,
        pool_per_class=3,
        sampler={"P": 4, "K": 2},
        training={"device": "cpu", "epochs": 2, "amp": False},
    )
    for k, v in over.items():
        raw[k] = {**raw[k], **v} if isinstance(raw.get(k), dict) else v
    return parse_method_config(raw)


def make(**over):
    cfg = config(**over)
    torch.manual_seed(0)
    return build_method(cfg, C), cfg


def dataset():
    g = torch.Generator().manual_seed(7)
    labels = torch.arange(C).repeat_interleave(PER_CLASS)
    base = torch.randint(0, 256, (C, 3, 8, 8), generator=g)
    noise = torch.randint(-40, 40, (len(labels), 3, 8, 8), generator=g)
    return TensorDataset((base[labels] + noise).clamp(0, 255).to(torch.uint8), labels)


def normalize(batch, train):
    return batch.float() / 127.5 - 1.0


def loader(seed=0):
    ds = dataset()
    return DataLoader(
        ds, batch_sampler=PKSampler(ds.tensors[1].numpy(), 4, 2, seed=seed)
    )


def fake_trainer(method, cfg):
    """The ``TrainerView`` members CCP uses (and the loader, for the tests)."""
    opt = build_optimizer(method.param_groups(cfg.optimizer), cfg.optimizer)
    train = loader()
    return SimpleNamespace(
        loader=train,
        train_dataset=train.dataset,
        loader_workers=0,
        normalize=normalize,
        device=torch.device("cpu"),
        autocast=lambda: torch.autocast("cpu", enabled=False),
        optimizer=opt,
    )


def network(method):
    return [p.detach().clone() for p in method.network]


def perturb(method, scale=0.01):
    with torch.no_grad():
        for p in method.network:
            p.add_(scale * torch.randn_like(p))


def check_proxies_are_pool_embeddings(method):
    """§10.1: rows m·C + c are bit-equal pool embeddings of M distinct images of
    class c, and the pool rows are the eval-mode embeddings of those images."""
    sel = method.last_selection
    pool, indices, picks = sel["pool"], sel["indices"], sel["picks"]
    ds = dataset()
    m = method.proxies_per_class
    assert method.proxies.shape == (C * m, method.embedder.embedding_dim)
    assert method.proxy_labels.tolist() == torch.arange(C).repeat(m).tolist()
    method.eval()
    for c in range(C):
        assert (ds.tensors[1][indices[c]] == c).all()
        rows = [method.proxies[k * C + c].detach() for k in range(m)]
        chosen = indices[c][picks[c].numpy()]
        assert len(set(chosen.tolist())) == m
        for k in range(m):
            assert torch.equal(rows[k], pool[c, picks[c, k]])
        images = normalize(ds.tensors[0][chosen], True)
        with torch.no_grad():
            fresh = method.embedder.embedding(images)
        torch.testing.assert_close(torch.stack(rows), fresh, rtol=1e-5, atol=1e-6)


# --- proxies, regulariser, instance switching ---------------------------------


def test_first_selection_uses_zero_seeds_and_real_pool_embeddings():
    method, cfg = make()
    before = method.proxies.detach().clone()
    method.on_fit_start(fake_trainer(method, cfg))
    assert bool(method.initialised) and not torch.equal(before, method.proxies)
    check_proxies_are_pool_embeddings(method)
    pool = method.last_selection["pool"]
    first = method.last_selection["picks"][:, 0]
    assert torch.equal(first, pool.norm(dim=2).argmax(dim=1))
    again = method.proxies.detach().clone()
    method.on_fit_start(fake_trainer(method, cfg))  # a resume: no re-selection
    assert torch.equal(again, method.proxies)


def test_pool_of_b_times_m_images_when_b_is_smaller_than_m():
    method, cfg = make(proxies_per_class=3, pool_per_class=2)
    method.on_fit_start(fake_trainer(method, cfg))
    assert method.last_selection["pool"].shape[:2] == (C, 6)
    check_proxies_are_pool_embeddings(method)


def run_sequence(method, trainer, values, weights=None):
    """Feed scripted validation values; perturb the weights after each epoch.
    Returns the epochs (0-based) at which an instance switch happened."""
    switches = []
    for epoch, v in enumerate(values):
        if weights is not None:
            weights.append(network(method))
        k = int(method.instance)
        method.on_train_epoch_end(trainer, epoch, {"loss": 1.0, "val/map@r": v})
        if int(method.instance) > k:
            switches.append(epoch)
        perturb(method)
    return switches


SEQUENCE = [0.10, 0.20, 0.20 + 5e-6, 0.15, 0.20, 0.30, 0.31, 0.30, 0.29, 0.31, 0.2]


def test_switch_after_three_non_improving_epochs_and_counters_reset():
    method, cfg = make()
    trainer = fake_trainer(method, cfg)
    method.on_fit_start(trainer)
    weights = []
    switches = run_sequence(method, trainer, SEQUENCE, weights)
    # 0.2+5e-6 is not an improvement (margin 1e-5): epochs 2, 3, 4 -> switch at 4;
    # new instance: 0.30 (5), 0.31 (6), then 7, 8, 9 do not improve -> switch at 9
    assert switches == [4, 9]
    assert int(method.instance) == 2 and float(method.lam) == pytest.approx(2e-4)
    assert int(method.wait) == 0 and float(method.best_value) == 0.2
    assert int(method.epochs_in_instance) == 1
    # θ̄ = the best weights of the previous instance (epoch 6, MAP@R 0.31)
    for a, w in zip(method.anchor.tensors(), weights[6], strict=True):
        assert torch.equal(a, w)


def test_lagged_monitor_switches_one_epoch_later():
    method, cfg = make(monitor_lag_epochs=1)
    trainer = fake_trainer(method, cfg)
    method.on_fit_start(trainer)
    weights = []
    assert run_sequence(method, trainer, SEQUENCE, weights) == [5, 10]
    # the lagged check at epoch 7 saw MAP@R 0.31 (epoch 6) and stored epoch 7's
    # weights (the weights at the time of the check)
    for a, w in zip(method.anchor.tensors(), weights[7], strict=True):
        assert torch.equal(a, w)


def test_min_epochs_skips_the_first_checks_of_an_instance():
    method, cfg = make(instance_min_epochs=3, instance_patience=1)
    trainer = fake_trainer(method, cfg)
    method.on_fit_start(trainer)
    # checks start at the 3rd epoch of an instance: 0.1 (e2) best, 0.1 (e3) ->
    # switch; then e4, e5 unchecked, 0.9 (e6) best, 0.9 (e7) -> switch
    values = [0.5, 0.4, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9]
    assert run_sequence(method, trainer, values) == [3, 7]


def test_projection_keeps_the_network_and_reselects_around_the_best_proxies():
    method, cfg = make(instance_patience=1, reset_proxy_optimizer_state=True)
    trainer = fake_trainer(method, cfg)
    method.on_fit_start(trainer)
    method.on_train_epoch_end(trainer, 0, {"val/map@r": 0.5})
    best = method.best_proxies.clone()
    assert torch.equal(best, method.proxies.detach())
    perturb(method)
    x, y = next(iter(trainer.loader))
    loss, _ = method.training_loss(normalize(x, True), y)
    loss.backward()
    trainer.optimizer.step()
    assert method.proxies in trainer.optimizer.state
    current = network(method)
    seen = {}
    original = method.select_proxies

    def spy(tr, seeds):
        seen["seeds"] = seeds.clone()
        original(tr, seeds)

    method.select_proxies = spy
    method.on_train_epoch_end(trainer, 1, {"val/map@r": 0.4})
    assert int(method.instance) == 1
    for p, w in zip(method.network, current, strict=True):
        assert torch.equal(p, w)  # §10.7: not reset to θ_best
    assert torch.equal(seen["seeds"], best)
    assert method.proxies not in trainer.optimizer.state
    check_proxies_are_pool_embeddings(method)


def test_regulariser_is_exact_on_network_weights_and_zero_on_proxies():
    method, cfg = make(reg_lambda=0.3)
    x, y = next(iter(loader()))
    images = normalize(x, True)

    def grads():
        method.zero_grad(set_to_none=True)
        loss, _ = method.training_loss(images, y)
        loss.backward()
        return [p.grad.clone() for p in method.network], method.proxies.grad.clone()

    plain, plain_p = grads()
    method.regularise()  # λ = 0 in the first instance: nothing added
    assert all(
        torch.equal(p.grad, g) for p, g in zip(method.network, plain, strict=True)
    )
    method.anchor.copy_from(method.network)
    method.lam.fill_(0.3)
    grads()
    method.regularise()  # θ = θ̄: nothing added
    assert all(
        torch.equal(p.grad, g) for p, g in zip(method.network, plain, strict=True)
    )
    anchor = [torch.randn_like(p) for p in method.network]
    method.anchor.copy_from(anchor)
    grads()
    method.regularise()
    for p, g, a in zip(method.network, plain, anchor, strict=True):
        torch.testing.assert_close(p.grad, g + 0.3 * (p.detach() - a))
    assert torch.equal(method.proxies.grad, plain_p)
    ids = {id(p) for p in method.network}
    assert id(method.proxies) not in ids
    assert ids == {id(p) for p in method.embedder.parameters() if p.requires_grad}


def test_lambda_follows_the_decay_per_instance():
    method, cfg = make(instance_patience=1, reg_lambda=1e-3, reg_lambda_decay=0.5)
    trainer = fake_trainer(method, cfg)
    method.on_fit_start(trainer)
    assert float(method.lam) == 0.0
    run_sequence(method, trainer, [0.5, 0.4, 0.5, 0.4])
    assert int(method.instance) == 2 and float(method.lam) == pytest.approx(2.5e-4)


# --- through the real Trainer -------------------------------------------------


def validator(method):
    """Deterministic validation: leave-one-out Recall@1 of the training images
    (reported as map@r too)."""
    ds = dataset()
    with torch.no_grad():
        e = method.embed(normalize(ds.tensors[0], False))
    d = torch.cdist(e, e)
    d.fill_diagonal_(math.inf)
    hit = ds.tensors[1][d.argmin(dim=1)] == ds.tensors[1]
    return {"map@r": float(hit.double().mean()), "recall@1": float(hit.double().mean())}


def fit(cfg, epochs, ckpt=None, validate=validator):
    raw = cfg.model_dump(mode="json")
    raw["training"]["epochs"] = epochs
    cfg = type(cfg).model_validate(raw)
    torch.manual_seed(0)
    method = build_method(cfg, C)
    trainer = make_trainer(
        cfg,
        ckpt,
        method=method,
        loader=loader(),
        normalize=normalize,
        validate=validate,
    )
    return method, trainer, trainer.fit()


def test_two_epochs_through_the_trainer_switch_and_lower_the_loss():
    values = iter([0.5, 0.4, 0.3])
    cfg = config(instance_patience=1, optimizer={"lr": 0.01})
    method, trainer, history = fit(cfg, 2, validate=lambda m: {"map@r": next(values)})
    assert len(history) == 2 and history["loss"].notna().all()
    assert int(method.instance) == 1 and float(method.lam) == pytest.approx(2e-4)
    check_proxies_are_pool_embeddings(method)
    assert history["loss"].iloc[1] < history["loss"].iloc[0]


class Crash(Callback):
    """Kills the run before epoch ``at`` (its checkpoint holds ``at`` epochs)."""

    def __init__(self, at):
        self.at = at

    def on_train_epoch_start(self, trainer, epoch):
        if epoch == self.at:
            raise RuntimeError("killed")


def test_resume_equals_uninterrupted(tmp_path):
    cfg = config(instance_patience=1, optimizer={"lr": 0.01}, training={"epochs": 4})
    script = [0.5, 0.4, 0.6, 0.3]  # switches after epochs 2 and 4

    def trainer(ckpt, callbacks=()):
        torch.manual_seed(0)
        method = build_method(cfg, C)
        t = make_trainer(
            cfg,
            ckpt,
            method=method,
            loader=loader(),
            normalize=normalize,
            validate=lambda m: {**validator(m), "map@r": script[t.epoch]},
            callbacks=list(callbacks),
        )
        return t

    full = trainer(tmp_path / "full")
    h_full = full.fit()
    with pytest.raises(RuntimeError, match="killed"):
        trainer(tmp_path / "cut", [Crash(2)]).fit()
    resumed = trainer(tmp_path / "cut")
    h_resumed = resumed.fit()
    assert resumed.resumed
    # the best epoch (3rd, 0.6) lies in instance 1; the last (4th) started instance 2
    assert int(full.method.instance) == 1 == int(resumed.method.instance)
    # the history and the summary record the run, not the reloaded best epoch
    assert h_full["instance"].tolist() == [0, 0, 1, 1] == h_resumed["instance"].tolist()
    summary = {"instances": 3, "reselections": 2, "lambda": pytest.approx(2e-4)}
    assert full.method.summary() == summary == resumed.method.summary()
    for run in ("full", "cut"):
        last = torch.load(tmp_path / run / "last.pt", weights_only=True)
        assert int(last["model"]["instance"]) == 2
    assert h_full["loss"].tolist() == h_resumed["loss"].tolist()
    a, b = full.method.state_dict(), resumed.method.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, equal_nan=True)


class Keep(Callback):
    """Keeps the trainer's method (``train_model`` builds it inside)."""

    def on_fit_start(self, trainer):
        self.method = trainer.method


def test_train_model_records_the_instances_in_the_history_and_summary(tmp_path):
    """Through ``train_model``: the one held-out validation class gives MAP@R
    1.0 every epoch, so with patience 1 every second epoch ends an instance."""
    from dml_pipelines.core.data.prepare import prepare_caches
    from dml_pipelines.core.engine.run import train_model
    from tests.conftest import colour_classes

    table = colour_classes(tmp_path / "raw", (12, 12), per_class=4)
    table["split"] = "train"
    table["fold_block"] = table["label"].map({0: 0, 1: 1, 2: 2, 3: 0, 4: 1, 5: 3})
    _, caches, _ = prepare_caches(table, tmp_path / "raw", tmp_path / "cache", [None])
    cfg = config(
        instance_patience=1,
        sampler={"P": 4, "K": 2, "batches_per_epoch": 2},
        transforms={"preset": "small"},
        training={"epochs": 5},
    )
    keep = Keep()
    state, history = train_model(
        table, caches[None], cfg, checkpoint_dir=tmp_path, callbacks=[keep]
    )
    assert history["val/map@r"].tolist() == [1.0] * 5
    # e1 best; e2 not better -> switch; e3 best; e4 switch; e5 best
    assert history["instance"].tolist() == [0, 0, 1, 1, 2]
    assert state["selected_epoch"] == 1  # its weights and buffers are reloaded
    assert int(keep.method.instance) == 0
    assert keep.method.summary() == {
        "instances": 3,
        "reselections": 2,
        "lambda": pytest.approx(2e-4),
    }
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert [r["instance"] for r in last["history"]] == [0, 0, 1, 1, 2]


def test_gradient_order_regulariser_is_clipped_with_the_loss_gradient():
    clip = 1e-4
    cfg = config(
        optimizer={
            "name": "sgd",
            "lr": 1.0,
            "grad_transforms": [{"name": "clip_value", "args": {"clip_value": clip}}],
        },
        instance_patience=50,
        training={"epochs": 1},
    )
    torch.manual_seed(0)
    method = build_method(cfg, C)
    method.anchor.copy_from([p.detach() + 10.0 for p in method.network])
    method.lam.fill_(1.0)  # λ(θ − θ̄) = −10 everywhere: far above the clip
    before = network(method)
    trainer = make_trainer(
        cfg, method=method, loader=loader(), normalize=normalize, validate=validator
    )
    trainer.fit()
    steps = trainer.global_step
    for p, b in zip(method.network, before, strict=True):
        change = (p.detach() - b).abs().max()
        assert 0 < change <= steps * clip * 1.001 + 1e-6


def test_proxy_selection_through_the_trainer_view_without_run_py(monkeypatch):
    """The pool is drawn from ``TrainerView.train_dataset`` and embedded with the
    view's normalisation and autocast; ``core/engine/run.py`` is not imported."""
    monkeypatch.setitem(sys.modules, "dml_pipelines.core.engine.run", None)
    cfg = config(instance_patience=1, training={"epochs": 2})
    torch.manual_seed(0)
    method = build_method(cfg, C)
    trainer = make_trainer(
        cfg,
        method=method,
        loader=loader(),
        normalize=normalize,
        validate=lambda m: {"map@r": 0.5},
    )
    assert isinstance(trainer, TrainerView)
    modes = []  # the method's mode at each autocast: eval for the pool
    autocast = trainer.autocast
    trainer.autocast = lambda: modes.append(method.training) or autocast()
    trainer.fit()
    assert int(method.instance) == 1  # the first pick and one switch
    assert modes.count(False) == 2 and modes.count(True) == trainer.global_step
    check_proxies_are_pool_embeddings(method)


def test_export_holds_inference_weights_only():
    method, cfg = make()
    exported = method.export_state_dict()
    assert exported and all(k.startswith("embedder.") for k in exported)
    assert not any("proxies" in k or "anchor" in k for k in exported)
    fresh = build_method(cfg, C)
    fresh.load_export_state_dict(exported)
    x = normalize(dataset().tensors[0][:4], False)
    method.eval(), fresh.eval()
    assert torch.equal(method.embed(x), fresh.embed(x))


# --- config and recipes ---------------------------------------------------------


def test_defaults_follow_the_spec_default_decisions():
    cfg = parse_method_config({"method": "ccp"})
    assert cfg.monitor_lag_epochs == 0 and cfg.batch_loss_weight == 0.1
    assert cfg.proxy_loss_weight == 1.0 and cfg.reg_lambda == 2e-4
    assert (cfg.instance_patience, cfg.instance_min_delta) == (3, 1e-5)
    assert cfg.instance_min_epochs == 1 and cfg.reg_lambda_decay == 1.0
    assert cfg.pool_augmentation == "train" and not cfg.reset_proxy_optimizer_state
    assert cfg.normalization == "lipschitz" and cfg.base_loss == "contrastive_c2"
    assert cfg.training.checkpoint_selection == "validation"
    method = build_method(cfg, 3)
    assert isinstance(method, CCP) and method.normalization == "lipschitz"
    assert method.criterion.pair_loss.distance == "clip_to_ball"
    l2 = build_method(parse_method_config({"method": "ccp", "normalization": "l2"}), 3)
    assert l2.criterion.pair_loss.distance == "normalised"


def test_contract_block_trains_a_step():
    method = build_method(parse_method_config(minimal_block("ccp")), 4)
    loss, logs = method.training_loss(
        torch.randn(8, 3, 16, 16), torch.arange(4).repeat_interleave(2)
    )
    loss.backward()
    assert torch.isfinite(loss) and set(logs) == {"proxy_loss", "batch_loss"}
    assert method.proxies.grad.abs().sum() > 0
    assert method.embedder.head.weight.grad.abs().sum() > 0


SPEC = {  # (M, b, steps/epoch, C2 (m+, m-), MS (α, β, λ), triplet m)
    "cub200": (8, 12, 25, (0.0, 0.3841), (2.0, 40.0, 0.5), 0.0961),
    "cars196": (8, 12, 25, (0.2652, 0.5409), (14.35, 75.83, 0.66), 0.1190),
    "sop": (4, 7, 250, (0.2858, 0.5130), (2.0, 40.0, 0.5), 0.0451),
    "inshop": (4, 7, 250, (0.2858, 0.5130), (8.49, 57.38, 0.41), 0.0451),
}


#: the released code's loss defaults (its run script sets no margins)
RELEASED = {
    "contrastive_c1": {"margin": 0.5},
    "contrastive_c2": {"pos_margin": 0.0, "neg_margin": 0.5},
    "multi_similarity": {"alpha": 2.0, "beta": 50.0, "base": 0.5},
    "triplet": {"margin": 0.05},
}


@pytest.mark.parametrize(
    "recipe", ["default", "digits", *SPEC, *(f"{d}_released" for d in SPEC)]
)
def test_yaml_recipes_validate_with_the_spec_values(recipe):
    raw = yaml.safe_load(YAML.read_text())["ccp"]
    cfg = parse_method_config({**raw, "recipe": recipe})
    assert cfg.training.early_stopping.min_delta == 1e-5  # the official margin
    assert cfg.monitor_lag_epochs == 0 and cfg.batch_loss_weight == 0.1
    if recipe in ("default", "digits"):
        assert cfg.backbone.name == "small_cnn" and cfg.embedding_dim == 64
        assert cfg.training.epochs == 20 and cfg.training.checkpoint_selection == (
            "validation"
        )
        # the outer loop runs within the 20 epochs: patience 1 (3 never ended
        # an instance on glyphs), the current epoch's MAP@R (docs/methods/ccp.md)
        assert (cfg.instance_patience, cfg.instance_min_epochs) == (1, 1)
        assert (cfg.instance_min_delta, cfg.monitor_lag_epochs) == (1e-5, 0)
        pk = (3, 16) if recipe == "digits" else (16, 4)
        assert (cfg.sampler.P, cfg.sampler.K) == pk
        assert (cfg.proxies_per_class, cfg.pool_per_class) == (8, 12)
        return
    dataset = recipe.removesuffix("_released")
    m, b, steps, c2, ms, tri = SPEC[dataset]
    assert (cfg.proxies_per_class, cfg.pool_per_class) == (m, b)
    assert (cfg.instance_patience, cfg.instance_min_epochs) == (3, 1)
    assert cfg.sampler.batches_per_epoch == steps
    assert (cfg.sampler.P, cfg.sampler.K, cfg.sampler.order) == (8, 4, "interleaved")
    la = cfg.loss_args
    if recipe != dataset:
        assert la == RELEASED
        assert cfg.model_dump(exclude={"loss_args", "recipe", "recipes"}) == (
            parse_method_config({**raw, "recipe": dataset}).model_dump(
                exclude={"loss_args", "recipe", "recipes"}
            )
        )
        return
    assert la["contrastive_c1"] == {"margin": 0.5}
    assert (
        la["contrastive_c2"]["pos_margin"],
        la["contrastive_c2"]["neg_margin"],
    ) == c2
    assert tuple(la["multi_similarity"][k] for k in ("alpha", "beta", "base")) == ms
    assert la["triplet"] == {"margin": tri}
    o = cfg.optimizer
    assert (o.name, o.lr, o.weight_decay, o.args) == (
        "keras_adam",
        1e-5,
        0.0,
        {"betas": [0.9, 0.999]},
    )
    assert [(t.name, t.args) for t in o.grad_transforms] == [
        ("coupled_weight_decay", {"weight_decay": 1e-4}),
        ("clip_norm", {"max_norm": 10.0}),
        ("clip_value", {"clip_value": 10.0}),
    ]
    assert (o.backbone_lr_mult, o.head_lr_mult, o.loss_lr_mult) == (1.0, 1.0, 1.0)
    assert cfg.embedding_dim == 128 and cfg.normalization == "lipschitz"
    assert cfg.backbone.freeze_bn and cfg.head.args == {"bias": False}
    # the paper's BN-Inception with its Caffe (BGR 0-255) input, 227 px crops
    assert cfg.backbone.name == "bninception" and cfg.backbone.pretrained
    assert cfg.backbone.args == {}  # ImageNet weights through torch's hub cache
    assert cfg.transforms.preset == "mlrc"
    assert cfg.head_init == "glorot_uniform" and cfg.training.warmup_epochs == 0
    assert cfg.training.early_stopping.patience == 60
    assert cfg.training.checkpoint_selection == "validation"


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"base_loss": "proxy_anchor"}, "ccp.base_loss"),
        ({"loss_args": {"soft_triple": {}}}, "not CCP pair losses"),
        ({"loss_args": {"triplet": {"mragin": 1}}}, "loss_args.triplet: unknown"),
        ({"loss_args": {"triplet": {"distance": "x"}}}, "set by normalization"),
        ({"proxies_per_class": 0}, "ccp.proxies_per_class"),
        ({"monitor_lag_epochs": -1}, "ccp.monitor_lag_epochs"),
        ({"pool_augmentation": "none"}, "ccp.pool_augmentation"),
        ({"proxy_loss_weight": 0, "batch_loss_weight": 0}, "at least one"),
        ({"training": {"checkpoint_selection": "last"}}, "needs a validation split"),
        ({"normalization": "none"}, "ccp.normalization"),
        ({"reg_lamda": 1.0}, "ccp.reg_lamda: unknown key"),
    ],
)
def test_bad_keys_are_one_line_errors(over, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_method_config({"method": "ccp", **over})
    assert "\n" not in str(info.value)


def test_missing_monitor_is_a_key_error_naming_the_key():
    method, cfg = make()
    with pytest.raises(KeyError, match="ccp.monitor"):
        method.on_train_epoch_end(fake_trainer(method, cfg), 0, {"loss": 1.0})


def test_glorot_head_init_has_the_glorot_bound():
    method, _ = make(head_init="glorot_uniform", embedding_dim=8)
    w = method.embedder.head.weight
    bound = math.sqrt(6 / (w.shape[0] + w.shape[1]))
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert torch.count_nonzero(method.embedder.head.bias) == 0
