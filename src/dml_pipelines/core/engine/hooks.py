"""The method–Trainer contract (docs/architecture.md, "Hooks"): the hooks a
method and every engine callback receive (``Hooks``), what they may see of and
do to the trainer (``TrainerView``), what ``training_loss`` knows of its step
(``StepContext``) and what the end-of-step hook gets (``StepOutput``).

One ``Trainer.fit``, against PyTorch Lightning 2.x (each hook: the method's
first, then each callback's in list order)::

    here                                 Lightning 2.x
    resume from last.pt                  checkpoint restore
    on_fit_start(trainer)                on_fit_start
    per epoch:
      on_train_epoch_start(tr, epoch)    on_train_epoch_start (sampler: before)
      per batch:
        training_loss(x, y, ctx)         training_step
        zero_grad, backward, AMP         on_before_zero_grad, on_before_backward,
        unscale, gradient average        on_after_backward: none here
        on_before_optimizer_step(tr)     on_before_optimizer_step
        optimizer step, scaler update    optimizer_step
        on_train_batch_end(tr, outputs)  on_train_batch_end(outputs, batch, idx)
      validation                         validation loop (its hooks: none here)
      LR scheduler epoch step            after on_train_epoch_end
      on_train_epoch_end(tr, epoch, m)   on_train_epoch_end
      finite check, last.pt, best.pt     ModelCheckpoint, in on_train_epoch_end
    on_fit_end(trainer)                  on_train_end, on_fit_end

Where the order differs from Lightning's: the method's hook runs before the
callbacks' (Lightning calls callbacks first), so CCP's regulariser λ(θ − θ̄)
enters the gradients in ``on_before_optimizer_step`` before the configured
gradient transforms (a callback) clip them; the scheduler steps before
``on_train_epoch_end``, which sees the next epoch's lr on the optimiser (the row
holds the epoch's own ``lr``).

Control from a hook: ``trainer.stop_training = True`` ends training after the
epoch; ``trainer.request_restore_best()`` loads the selected (best) weights at
the end, ``trainer.reload_best()`` now.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from dml_pipelines.core.engine.distributed import Dist

#: the hooks in the order one epoch of one step calls them (the table above)
HOOK_ORDER = (
    "on_fit_start",
    "on_train_epoch_start",
    "on_before_optimizer_step",
    "on_train_batch_end",
    "on_train_epoch_end",
    "on_fit_end",
)


@runtime_checkable
class TrainerView(Protocol):
    """What a hook may see of and do to the trainer.

    Attributes:
        method: the trained method (an ``nn.Module``).
        device: the training device.
        epoch: completed epochs; global_step: optimiser steps taken.
        history: the finished epochs' rows (``loss``, ``lr``, ``val/<metric>``).
        optimizer: its ``state`` and ``param_groups`` (gradient transforms,
            CCP's reset of the proxies' moments).
        selection_key: the epoch metric choosing ``best.pt`` (``None``: last).
        stop_training: set True to end training after the epoch.
        train_dataset: the training loader's map-style dataset (its ``labels``).
        loader_workers: the training loader's worker processes, for any other
            loader over the training data (CCP's proxy pool).
    """

    method: nn.Module
    device: torch.device
    epoch: int
    global_step: int
    history: list[dict[str, float]]
    optimizer: torch.optim.Optimizer
    selection_key: str | None
    stop_training: bool

    @property
    def train_dataset(self) -> Any: ...

    @property
    def loader_workers(self) -> int: ...

    normalize: Callable[[torch.Tensor, bool], torch.Tensor]

    def autocast(self) -> AbstractContextManager[Any]:
        """The training step's autocast (device type, dtype, on/off)."""
        ...

    def set_lr_factor(self, factor: float) -> None:
        """Every group's lr = its initial lr × ``factor``."""
        ...

    def request_restore_best(self) -> None:
        """Load the selected (best) weights at the end of ``fit``."""
        ...

    def reload_best(self) -> None:
        """Load the selected (best) weights now."""
        ...


@dataclass(frozen=True)
class StepContext:
    """What ``training_loss`` knows of the loop: 0-based ``epoch``, the global
    step about to be taken, the step within the epoch, the trainer, and the
    process group (``dist``). ``all_gather`` turns a per-rank tensor into the
    global batch's (identity in one process): a method whose maths spans the
    batch gathers its embeddings and labels with it. ``output`` hands tensors
    to this step's ``on_train_batch_end`` (``StepOutput.tensors``)."""

    epoch: int = 0
    global_step: int = 0
    step: int = 0
    trainer: TrainerView | None = None
    dist: Dist = Dist()
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)

    def all_gather(self, x: torch.Tensor) -> torch.Tensor:
        """(b, ...) per rank -> (N·b, ...) of the global batch, differentiable."""
        return self.dist.all_gather(x)

    def output(self, **tensors: torch.Tensor) -> None:
        """Keep ``tensors`` (detached) for the step's ``on_train_batch_end``."""
        self.outputs.update({k: v.detach() for k, v in tensors.items()})


@dataclass(frozen=True)
class StepOutput:
    """What one optimisation step produced (``on_train_batch_end``).

    Attributes:
        loss: the step's loss (detached scalar).
        logs: ``loss`` as a float and the logs ``training_loss`` returned.
        tensors: what ``training_loss`` handed over with ``ctx.output`` (e.g.
            GSP's embeddings and labels of the global batch), detached.
        global_step: the 0-based optimiser step just taken.
        step: the 0-based batch within the epoch.
    """

    loss: torch.Tensor
    logs: dict[str, float]
    tensors: dict[str, torch.Tensor]
    global_step: int
    step: int


class Hooks:
    """The hook methods, all no-ops; shared by ``Callback`` and ``Method`` (the
    method receives every hook before the callbacks do; order in the module
    docstring).

    A subclass that defines an ``on_*`` method which is not a hook (a misspelt
    or pre-rename name such as ``on_epoch_start``) is an error at class
    creation: the trainer would never call it."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        stray = sorted(
            name
            for name, value in vars(cls).items()
            if name.startswith("on_") and callable(value) and name not in HOOK_ORDER
        )
        if stray:
            raise TypeError(
                f"{cls.__name__}: {', '.join(stray)} is not a hook "
                f"(hooks: {', '.join(HOOK_ORDER)}; core/engine/hooks.py)"
            )

    def on_fit_start(self, trainer: TrainerView) -> None:
        """Before the first epoch (also after a resume)."""

    def on_train_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based) draws its first batch."""

    def on_before_optimizer_step(self, trainer: TrainerView) -> None:
        """Gradients final (after backward, the AMP unscale and the average over
        the ranks), before the optimiser step."""

    def on_train_batch_end(self, trainer: TrainerView, outputs: StepOutput) -> None:
        """After the optimiser step ``outputs.global_step``."""

    def on_train_epoch_end(
        self, trainer: TrainerView, epoch: int, metrics: dict[str, float]
    ) -> None:
        """After epoch ``epoch``; ``metrics`` is its history row (train loss, lr
        and, when a validation split exists, ``val/map@r`` ...): a hook may add
        columns."""

    def on_fit_end(self, trainer: TrainerView) -> None:
        """After the last epoch, before the best weights are restored."""
