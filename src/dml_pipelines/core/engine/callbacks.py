"""Engine callbacks: the trainer's extension points besides the method. A
callback overrides the hooks of ``core/engine/hooks.py`` it needs (their order,
against Lightning's, is documented there); ``state_dict``/``load_state_dict``
are checkpointed under the callback's ``name`` (not its position), so resume
works when the list of callbacks changes.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from dml_pipelines.core.engine.hooks import Hooks, TrainerView


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

    def on_train_epoch_end(
        self, trainer: TrainerView, epoch: int, metrics: dict[str, float]
    ) -> None:
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

    def on_fit_end(self, trainer: TrainerView) -> None:
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
