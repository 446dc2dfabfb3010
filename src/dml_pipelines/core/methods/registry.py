"""Method registry: ``build_method(cfg, num_classes)`` gives the method module.

Method modules are discovered: every module of ``core/methods`` that is not a
config module (``*_config``), ``base``, ``configs`` or ``registry`` is imported
and registers its builder with ``@METHODS.register(<name>)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dml_pipelines.core.losses import load_all as load_losses
from dml_pipelines.core.methods.base import LossMethod, Method
from dml_pipelines.core.methods.configs import is_config_module, method_configs
from dml_pipelines.core.models.embedder import build_embedder
from dml_pipelines.core.registry import (
    Registry,
    call_with_args,
    check_args,
    import_modules,
)

if TYPE_CHECKING:
    from dml_pipelines.core.config import MethodConfig

METHODS: Registry = Registry("method")

#: modules of core/methods that hold no method
NOT_METHODS = ("base", "configs", "registry")


def build_loss(cfg: Any, num_classes: int) -> Any:
    """The loss named by ``cfg.loss`` for ``num_classes`` training classes."""
    builder = load_losses().get(cfg.loss.name, key="loss.name")
    args = {"embedding_size": cfg.embedding_dim, "num_classes": num_classes}
    return call_with_args(builder, {**args, **cfg.loss.args}, "loss.args")


def _build_baseline(cfg: Any, num_classes: int) -> Method:
    return LossMethod(build_embedder(cfg), build_loss(cfg, num_classes))


def is_method_module(stem: str) -> bool:
    """Modules of ``core/methods`` that hold a method."""
    return not is_config_module(stem) and stem not in NOT_METHODS


def load_all() -> Registry:
    """Import every method module (each registers itself) and register the
    baselines (every ``BaselineConfig`` entry of the config registry)."""
    from dml_pipelines.core.config import BaselineConfig

    import_modules(__package__, is_method_module)
    for name, model in method_configs().items():
        if issubclass(model, BaselineConfig) and name not in METHODS:
            METHODS.register(name)(_build_baseline)
    return METHODS


def build_method(cfg: MethodConfig, num_classes: int) -> Method:
    """Build the method named ``cfg.method`` for ``num_classes`` training classes."""
    return load_all().get(cfg.method, key="method")(cfg, num_classes)


def check_positives(builder: Any, name: str, sampler: Any) -> None:
    """A pair loss (its builder returns a ``PairLoss``) needs K >= 2 samples of
    a class per batch, or no anchor has a positive (one line naming the key)."""
    import inspect

    from dml_pipelines.core.losses.pair_loss import PairLoss

    returns = inspect.signature(builder).return_annotation
    pair = returns is PairLoss or returns == "PairLoss"
    if pair and sampler.random_factorisation is None and sampler.K < 2:
        raise ValueError(
            f"sampler.K: {sampler.K} gives no positive pairs; loss {name!r} is a "
            "pair loss and needs K >= 2"
        )


def check_components(cfg: MethodConfig) -> None:
    """Check every registered name and argument set in ``cfg`` without building
    anything (called by config validation, before any work)."""
    from dml_pipelines.core.data.transforms import PRESETS
    from dml_pipelines.core.engine.grad import GRAD_TRANSFORMS
    from dml_pipelines.core.engine.optim import OPTIMIZERS, SCHEDULERS
    from dml_pipelines.core.models.backbones import BACKBONES
    from dml_pipelines.core.models.heads import HEADS
    from dml_pipelines.core.models.pooling import POOLINGS

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
    check_args(
        HEADS.get(cfg.head.name, key="head.name"),
        cfg.head.args,
        "head.args",
        ("in_dim", "out_dim"),
    )
    check_args(
        OPTIMIZERS.get(cfg.optimizer.name, key="optimizer.name"),
        cfg.optimizer.args,
        "optimizer.args",
        ("params", "lr", "weight_decay"),
    )
    for i, t in enumerate(cfg.optimizer.grad_transforms):
        key = f"optimizer.grad_transforms.{i}"
        check_args(GRAD_TRANSFORMS.get(t.name, key=f"{key}.name"), t.args, key)
    PRESETS.get(cfg.transforms.preset, key="transforms.preset")
    if cfg.training.scheduler is not None:
        check_args(
            SCHEDULERS.get(cfg.training.scheduler.name, key="training.scheduler.name"),
            cfg.training.scheduler.args,
            "training.scheduler.args",
            ("optimizer", "total_epochs"),
            require=True,
        )
    loss = getattr(cfg, "loss", None)
    if loss is not None:
        builder = load_losses().get(loss.name, key="loss.name")
        check_args(builder, loss.args, "loss.args", ("embedding_size", "num_classes"))
        check_positives(builder, loss.name, cfg.sampler)
