"""Gradient transforms applied in list order between backward (after the AMP
unscale) and the optimiser step (``optimizer.grad_transforms``).

GSP's recipe, for example, is coupled L2 weight decay added to the gradients,
then clip-by-norm, then clip-by-value::

    grad_transforms:
      - {name: coupled_weight_decay, args: {weight_decay: 4.0e-4}}
      - {name: clip_norm, args: {max_norm: 10.0}}
      - {name: clip_value, args: {clip_value: 5.0}}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.hooks import TrainerView
from dml_pipelines.core.registry import Registry, call_with_args

GRAD_TRANSFORMS: Registry = Registry("gradient transform")

#: a transform: (optimizer) -> None, editing ``p.grad`` in place
GradFn = Callable[[torch.optim.Optimizer], None]


def _params(optimizer: torch.optim.Optimizer, groups: Sequence[str] | None):
    return [
        p
        for g in optimizer.param_groups
        if groups is None or g.get("name") in groups
        for p in g["params"]
        if p.grad is not None
    ]


@GRAD_TRANSFORMS.register("coupled_weight_decay")
def coupled_weight_decay(
    weight_decay: float, groups: list[str] | None = None
) -> GradFn:
    """g ← g + wd·θ for the parameters of ``groups`` (names; ``None``: all)."""
    if weight_decay < 0:
        raise ValueError("coupled_weight_decay: weight_decay must be >= 0")

    def apply(optimizer: torch.optim.Optimizer) -> None:
        for p in _params(optimizer, groups):
            p.grad.add_(p.detach(), alpha=weight_decay)

    return apply


@GRAD_TRANSFORMS.register("clip_norm")
def clip_norm(max_norm: float, norm_type: float = 2.0) -> GradFn:
    """Scale all gradients so their global ``norm_type`` norm is ≤ ``max_norm``."""
    if max_norm <= 0:
        raise ValueError("clip_norm: max_norm must be > 0")

    def apply(optimizer: torch.optim.Optimizer) -> None:
        torch.nn.utils.clip_grad_norm_(_params(optimizer, None), max_norm, norm_type)

    return apply


@GRAD_TRANSFORMS.register("clip_value")
def clip_value(clip_value: float) -> GradFn:
    """Clamp every gradient entry to [−clip_value, clip_value]."""
    if clip_value <= 0:
        raise ValueError("clip_value: clip_value must be > 0")

    def apply(optimizer: torch.optim.Optimizer) -> None:
        torch.nn.utils.clip_grad_value_(_params(optimizer, None), clip_value)

    return apply


class GradTransforms(Callback):
    """Engine callback running the configured transforms in order in
    ``on_before_optimizer_step``.

    Args:
        specs: ``[(name, args), ...]`` (``optimizer.grad_transforms``).
    """

    def __init__(self, specs: Sequence[tuple[str, dict[str, Any]]]) -> None:
        self.names = [name for name, _ in specs]
        self.fns = [
            call_with_args(
                GRAD_TRANSFORMS.get(name, key=f"optimizer.grad_transforms.{i}.name"),
                args,
                f"optimizer.grad_transforms.{i}",
            )
            for i, (name, args) in enumerate(specs)
        ]

    def on_before_optimizer_step(self, trainer: TrainerView) -> None:
        for fn in self.fns:
            fn(trainer.optimizer)


def grad_transforms_from(cfg: Any) -> GradTransforms | None:
    """The callback of an ``OptimizerConfig`` (``grad_clip_norm`` appended as a
    final ``clip_norm``); ``None`` when there is nothing to do."""
    specs = [(t.name, dict(t.args)) for t in cfg.grad_transforms]
    if cfg.grad_clip_norm:
        specs.append(("clip_norm", {"max_norm": cfg.grad_clip_norm}))
    return GradTransforms(specs) if specs else None
