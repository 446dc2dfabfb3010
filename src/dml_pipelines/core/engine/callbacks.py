"""Engine callbacks: hooks at train start, after each step and at epoch end (with
the epoch's validation metrics). Methods add their own (CCP proxy re-selection,
Intra-Batch reload-best LR drops)."""

from __future__ import annotations

from typing import Any


class Callback:
    """No-op base; override the hooks you need. ``trainer.stop_training = True``
    ends training after the current epoch."""

    def on_train_start(self, trainer: Any) -> None:
        """Before the first epoch (also after a resume)."""

    def on_epoch_start(self, trainer: Any, epoch: int) -> None:
        """Before epoch ``epoch`` (0-based) draws its first batch."""

    def on_step_end(self, trainer: Any, step: int, loss: float) -> None:
        """After the optimiser step ``step`` (global, 0-based)."""

    def on_epoch_end(self, trainer: Any, epoch: int, metrics: dict[str, float]) -> None:
        """After epoch ``epoch``; ``metrics`` holds the train loss and, when a
        validation split exists, the validation metrics (``val/map@r`` ...)."""

    def on_train_end(self, trainer: Any) -> None:
        """After the last epoch."""

    def state_dict(self) -> dict[str, Any]:
        """Callback state saved in the checkpoint (tensors and plain values)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
