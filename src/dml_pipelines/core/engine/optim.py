"""Optimiser and LR-scheduler registries (built from ``OptimizerConfig`` and
``training.scheduler``)."""

from __future__ import annotations

from typing import Any

import torch

from dml_pipelines.core.registry import Registry, call_with_args

OPTIMIZERS: Registry = Registry("optimizer")


@OPTIMIZERS.register("keras_adam")
class KerasAdam(torch.optim.Optimizer):
    """Adam as Keras (TF 2.x ``tf.keras.optimizers.Adam``) computes it, for the
    recipes of TensorFlow origin (docs/methods/gsp.md):

    m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g²,
    θ ← θ − lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε),  ε = 1e-7.

    ε is added to the *uncorrected* √v, so relative to PyTorch's Adam (ε added
    to √v̂) it is ε/√(1 − β₂ᵗ): about 31.6·ε at step 1. ``weight_decay`` is
    coupled (added to the gradient), as in ``torch.optim.Adam``; checked against
    Keras in ``tests/official/``.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-7,
        weight_decay: float = 0.0,
    ) -> None:
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1) or eps < 0 or weight_decay < 0:
            raise ValueError(
                "optimizer.args: keras_adam needs 0 <= betas < 1, eps >= 0 and "
                f"weight_decay >= 0 (got betas={betas}, eps={eps}, "
                f"weight_decay={weight_decay})"
            )
        defaults = {"lr": lr, "betas": (b1, b2), "eps": eps}
        super().__init__(params, {**defaults, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):  # noqa: D102
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"]:
                    g = g.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(g, 1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                lr_t = group["lr"] * (1 - b2**t) ** 0.5 / (1 - b1**t)
                p.addcdiv_(m, v.sqrt().add_(group["eps"]), value=-lr_t)
        return loss


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
#: stepped with the selection metric after validation (mode from selection_mode)
SCHEDULERS.register("plateau")(torch.optim.lr_scheduler.ReduceLROnPlateau)


class WarmupCosine:
    """lr factor per epoch e (0-based): linear warm-up (e + 1) / W for e < W, then
    cosine from 1 to ``min_factor`` over the remaining ``total − W`` epochs."""

    def __init__(self, warmup: int, total: int, min_factor: float) -> None:
        self.warmup, self.total, self.min_factor = warmup, total, min_factor

    def __call__(self, epoch: int) -> float:
        import math

        if epoch < self.warmup:
            return (epoch + 1) / self.warmup
        span = max(self.total - self.warmup, 1)
        t = min(epoch - self.warmup, span) / span
        return self.min_factor + (1 - self.min_factor) * 0.5 * (
            1 + math.cos(math.pi * t)
        )


@SCHEDULERS.register("cosine_warmup")
def cosine_warmup(
    optimizer: torch.optim.Optimizer,
    total_epochs: int,
    warmup_epochs: int = 0,
    min_factor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay with linear warm-up (``WarmupCosine``), epoch-wise."""
    if warmup_epochs < 0 or total_epochs <= 0 or not 0 <= min_factor <= 1:
        raise ValueError(
            "training.scheduler.args: need total_epochs > 0, warmup_epochs >= 0, "
            "0 <= min_factor <= 1"
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(warmup_epochs, total_epochs, min_factor)
    )


def build_optimizer(groups: list[dict[str, Any]], cfg: Any) -> torch.optim.Optimizer:
    """Optimiser over ``groups`` (each with its own ``lr``), with
    ``cfg.weight_decay`` and ``cfg.args`` (e.g. ``betas``, ``momentum``)."""
    ctor = OPTIMIZERS.get(cfg.name, key="optimizer.name")
    args = {"lr": cfg.lr, "weight_decay": cfg.weight_decay, **cfg.args}
    return call_with_args(lambda **kw: ctor(groups, **kw), args, "optimizer.args")


def build_scheduler(optimizer: torch.optim.Optimizer, training: Any):
    """Epoch-wise LR scheduler from ``training.scheduler`` (``None`` = constant).
    ``plateau`` gets ``mode`` from ``training.selection_mode``; ``cosine_warmup``
    defaults ``total_epochs`` to ``training.epochs``."""
    cfg = training.scheduler
    if cfg is None:
        return None
    ctor = SCHEDULERS.get(cfg.name, key="training.scheduler.name")
    args = dict(cfg.args)
    if cfg.name == "plateau":
        args.setdefault("mode", training.selection_mode)
    if cfg.name == "cosine_warmup":
        args.setdefault("total_epochs", training.epochs)
    return call_with_args(
        lambda **kw: ctor(optimizer, **kw), args, "training.scheduler.args"
    )


def is_plateau(scheduler: Any) -> bool:
    """True for schedulers stepped with a metric value."""
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
