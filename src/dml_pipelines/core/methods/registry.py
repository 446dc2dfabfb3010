"""Method registry: ``build_method(cfg, num_classes)`` gives the method module."""

from __future__ import annotations

from typing import Any

from dml_pipelines.core.config import BASELINES, MethodConfig
from dml_pipelines.core.losses import load_all as load_losses
from dml_pipelines.core.methods.base import LossMethod, Method
from dml_pipelines.core.models.backbones import BACKBONES
from dml_pipelines.core.models.embedder import build_embedder
from dml_pipelines.core.models.pooling import POOLINGS
from dml_pipelines.core.registry import Registry, call_with_args, check_args

METHODS: Registry = Registry("method")


def _build_baseline(cfg: Any, num_classes: int) -> Method:
    embedder = build_embedder(cfg)
    loss_builder = load_losses().get(cfg.loss.name, key="loss.name")
    criterion = call_with_args(
        loss_builder,
        {
            "embedding_size": cfg.embedding_dim,
            "num_classes": num_classes,
            **cfg.loss.args,
        },
        "loss.args",
    )
    return LossMethod(embedder, criterion)


for _name in BASELINES:
    METHODS.register(_name)(_build_baseline)

#: modules of the published methods; each registers its builder on import
METHOD_MODULES: tuple[str, ...] = ("intra_batch",)


def load_all() -> Registry:
    """Import every method module (each registers itself); return the registry."""
    import importlib

    for mod in METHOD_MODULES:
        importlib.import_module(f"dml_pipelines.core.methods.{mod}")
    return METHODS


def build_method(cfg: MethodConfig, num_classes: int) -> Method:
    """Build the method named ``cfg.method`` for ``num_classes`` training classes."""
    return load_all().get(cfg.method, key="method")(cfg, num_classes)


def check_components(cfg: MethodConfig) -> None:
    """Check every registered name and argument set in ``cfg`` without building
    anything (called by config validation, before any work)."""
    from dml_pipelines.core.data.transforms import PRESETS
    from dml_pipelines.core.engine.optim import OPTIMIZERS, SCHEDULERS

    load_all().get(cfg.method, key="method")
    check_args(
        BACKBONES.get(cfg.backbone.name, key="backbone.name"),
        cfg.backbone.args,
        "backbone.args",
        ("pretrained",),
    )
    check_args(
        POOLINGS.get(cfg.pooling.name, key="pooling.name"),
        cfg.pooling.args,
        "pooling.args",
    )
    OPTIMIZERS.get(cfg.optimizer.name, key="optimizer.name")
    PRESETS.get(cfg.transforms.preset, key="transforms.preset")
    if cfg.training.scheduler is not None:
        SCHEDULERS.get(cfg.training.scheduler.name, key="training.scheduler.name")
    loss = getattr(cfg, "loss", None)
    if loss is not None:
        builder = load_losses().get(loss.name, key="loss.name")
        check_args(builder, loss.args, "loss.args", ("embedding_size", "num_classes"))
