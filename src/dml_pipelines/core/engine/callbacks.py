"""Engine callbacks: the trainer's extension points (in the spirit of
Lightning's hook list). The method itself receives every hook too (``Method``
defines them as no-ops), before the callbacks, in this order per epoch::

    on_fit_start(trainer)                      once, also after a resume
    on_epoch_start(trainer, epoch)             before the first batch (0-based)
      per batch:
        method.training_loss(images, labels, ctx)  -> (loss, logs); ctx: epoch,
                                                      global_step, step, trainer
        backward, AMP unscale
        on_after_backward(trainer)             gradients final, before the step
        optimizer step
        on_step_end(trainer, logs, global_step)  logs: "loss" + the method's logs
    validation, LR scheduler step
    on_epoch_end(trainer, epoch, metrics)      metrics: loss, lr, val/<metric>
    checkpoint (last.pt, best.pt)
    on_fit_end(trainer)                        once, then best weights restored

Control from a hook: ``trainer.stop_training = True`` ends training after the
current epoch; ``trainer.request_restore_best()`` loads the selected (best)
weights at the end. State: ``state_dict``/``load_state_dict`` are checkpointed
under the callback's ``name`` (not its position), so resume works when the list
of callbacks changes.
"""

from __future__ import annotations

import copy
import math
from typing import Any


class Hooks:
    """The hook methods, all no-ops; shared by ``Callback`` and ``Method`` (the
    method receives every hook before the callbacks do)."""

    def on_fit_start(self, trainer: Any) -> None:
        """Before the first epoch (also after a resume)."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based) draws its first batch."""

    def on_after_backward(self, trainer: Any) -> None:
        """After backward and the AMP unscale, before the optimiser step."""

    def on_step_end(
        self, trainer: Any, logs: dict[str, float], global_step: int
    ) -> None:
        """After optimiser step ``global_step`` (0-based); ``logs`` holds ``loss``
        and what ``training_loss`` returned."""

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        """After epoch ``epoch``; ``metrics`` holds the train loss and, when a
        validation split exists, the validation metrics (``val/map@r`` ...)."""

    def on_fit_end(self, trainer: Any) -> None:
        """After the last epoch, before the best weights are restored."""


class Callback(Hooks):
    """No-op base; override the hooks you need (see the module docstring)."""

    @property
    def name(self) -> str:
        """Key of this callback's state in checkpoints (default: class name)."""
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        """Callback state saved in the checkpoint (tensors and plain values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


def improved(value: float, best: float, mode: str, min_delta: float = 0.0) -> bool:
    """``value`` beats ``best`` by more than ``min_delta`` (``mode`` max or min)."""
    if math.isnan(value):
        return False
    if mode == "max":
        return value > best + min_delta
    return value < best - min_delta


class EarlyStopping(Callback):
    """Stop when ``metric`` (a key of the epoch metrics, e.g. ``val/map@r``) has
    not improved by more than ``min_delta`` for ``patience`` epochs.

    With ``restore_best`` the best weights are loaded at the end: the trainer's
    selected checkpoint when ``metric`` is the selection metric, otherwise a copy
    kept by this callback (saved with its state, so it survives a resume).
    """

    def __init__(
        self,
        metric: str,
        mode: str = "max",
        patience: int = 5,
        min_delta: float = 0.0,
        restore_best: bool = True,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"early_stopping.mode: {mode!r}; valid: max, min")
        self.metric, self.mode = metric, mode
        self.patience, self.min_delta = patience, min_delta
        self.restore_best = restore_best
        self.best = -math.inf if mode == "max" else math.inf
        self.best_epoch = 0
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_weights: dict[str, Any] | None = None

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        if self.metric not in metrics:
            valid = ", ".join(sorted(metrics))
            raise KeyError(
                f"training.early_stopping.metric: {self.metric!r} is not among the "
                f"epoch metrics; valid: {valid}"
            )
        value = float(metrics[self.metric])
        if improved(value, self.best, self.mode, self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best and self.metric != trainer.selection_key:
                self.best_weights = copy.deepcopy(
                    {
                        k: v.detach().cpu()
                        for k, v in trainer.method.state_dict().items()
                    }
                )
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.stopped_epoch = epoch + 1
                trainer.stop_training = True
        if self.restore_best:
            trainer.request_restore_best()

    def on_fit_end(self, trainer: Any) -> None:
        if self.restore_best and self.best_weights is not None:
            trainer.method.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state["best"], state["best_epoch"]
        self.wait, self.stopped_epoch = state["wait"], state["stopped_epoch"]
        self.best_weights = state["best_weights"]
