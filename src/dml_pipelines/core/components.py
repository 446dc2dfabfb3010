"""The checks of a method block that need the component registries: every
registered name and argument set (backbone, pooling, head, optimizer, gradient
transforms, transforms preset and its arguments, scheduler, loss), without
building anything.

``MethodConfig`` and ``TransformsConfig`` run them when they validate, before
any work. This module
imports neither ``core/config.py`` nor ``core/methods`` (no cycle): the
registries live in torch modules, imported here when a check runs.
"""

from __future__ import annotations

import inspect
from typing import Any

from dml_pipelines.core.registry import check_args, import_modules, value_problem


def check_components(cfg: Any) -> None:
    """One-line ``ValueError`` naming the key (``backbone.name``, ``loss.args``,
    ...) of the first registered name or argument in the method block ``cfg``
    that no component accepts."""
    try:
        _check_registered(cfg)
    except KeyError as exc:  # an unknown registry name: a bad value of the block
        raise ValueError(exc.args[0]) from None


def _check_registered(cfg: Any) -> None:
    from dml_pipelines.core.data.transforms import PRESETS
    from dml_pipelines.core.engine.grad import GRAD_TRANSFORMS
    from dml_pipelines.core.engine.optim import OPTIMIZERS, SCHEDULERS
    from dml_pipelines.core.losses import load_all as load_losses
    from dml_pipelines.core.models.backbones import BACKBONES
    from dml_pipelines.core.models.heads import HEADS
    from dml_pipelines.core.models.pooling import POOLINGS

    # a method's own parts (GSP's pooling) register when their module loads
    import_modules("dml_pipelines.core.models")
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


def check_transforms(transforms: Any) -> None:
    """The preset and its field overrides (``args``) of a ``transforms`` block:
    an unknown name or a bad value fails here, in one line naming the key
    relative to the block (``args.degrees``), not in training."""
    from dml_pipelines.core.data.transforms import build_transforms

    try:
        base = build_transforms(transforms.preset)
        build_transforms(
            transforms.preset,
            image_size=transforms.image_size,
            normalize_std=transforms.normalize_std,
            **transforms.args,
        )
    except KeyError as exc:
        raise ValueError(f"preset: {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"args: {exc}") from None
    for key, value in transforms.args.items():
        why = value_problem(getattr(base, key), value)
        if why:
            raise ValueError(f"args.{key}: {why} (got {value!r})")


def check_positives(builder: Any, name: str, sampler: Any) -> None:
    """A pair loss (its builder returns a ``PairLoss``) needs K >= 2 samples of
    a class per batch, or no anchor has a positive (one line naming the key)."""
    from dml_pipelines.core.losses.pair_loss import PairLoss

    returns = inspect.signature(builder).return_annotation
    pair = returns is PairLoss or returns == "PairLoss"
    if pair and sampler.random_factorisation is None and sampler.K < 2:
        raise ValueError(
            f"sampler.K: {sampler.K} gives no positive pairs; loss {name!r} is a "
            "pair loss and needs K >= 2"
        )
