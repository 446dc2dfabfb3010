"""Optimiser and LR-scheduler registries (built from ``OptimizerConfig`` and
``training.scheduler``)."""

from __future__ import annotations

from typing import Any

import torch

from dml_pipelines.core.registry import Registry, call_with_args

OPTIMIZERS: Registry = Registry("optimizer")
OPTIMIZERS.register("adam")(torch.optim.Adam)
OPTIMIZERS.register("adamw")(torch.optim.AdamW)
OPTIMIZERS.register("radam")(torch.optim.RAdam)
OPTIMIZERS.register("sgd")(torch.optim.SGD)
OPTIMIZERS.register("rmsprop")(torch.optim.RMSprop)

SCHEDULERS: Registry = Registry("scheduler")
SCHEDULERS.register("step")(torch.optim.lr_scheduler.StepLR)
SCHEDULERS.register("multistep")(torch.optim.lr_scheduler.MultiStepLR)
SCHEDULERS.register("cosine")(torch.optim.lr_scheduler.CosineAnnealingLR)
SCHEDULERS.register("exponential")(torch.optim.lr_scheduler.ExponentialLR)


def build_optimizer(groups: list[dict[str, Any]], cfg: Any) -> torch.optim.Optimizer:
    """Optimiser over ``groups`` (each with its own ``lr``), with
    ``cfg.weight_decay`` and ``cfg.args`` (e.g. ``betas``, ``momentum``)."""
    ctor = OPTIMIZERS.get(cfg.name, key="optimizer.name")
    args = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, **cfg.args}
    return call_with_args(lambda **kw: ctor(groups, **kw), args, "optimizer.args")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Any):
    """Epoch-wise LR scheduler from ``training.scheduler`` (``None`` = constant)."""
    if cfg is None:
        return None
    ctor = SCHEDULERS.get(cfg.name, key="training.scheduler.name")
    return call_with_args(
        lambda **kw: ctor(optimizer, **kw), cfg.args, "training.scheduler.args"
    )
