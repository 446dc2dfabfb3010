"""Reload-best learning-rate drops (Intra-Batch,
docs/methods/intra_batch.md#key-parameters-under-intra_batch): at the start of given
1-based epochs, load the best checkpoint's weights, then set every group's lr to its
base lr × factor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dml_pipelines.core.engine.callbacks import Callback


class ReloadBestLrDrops(Callback):
    """Engine callback.

    Args:
        drops: ``(epoch, factor)`` pairs, 1-based epochs in increasing order;
            factors are relative to the base lr (not cumulative).

    At a drop epoch the weights of the best checkpoint are reloaded first
    (``trainer.reload_best``). With ``checkpoint_selection: last`` there is no
    best checkpoint other than the current weights, so the drop only changes the
    lr. From the first drop on, the lr is (re)set at every epoch start, so a run
    resumed after a drop continues at the dropped lr; before it the lr is left to
    the optimiser (and ``training.scheduler``, which the config forbids together
    with drops).
    """

    def __init__(self, drops: Sequence[tuple[int, float]]) -> None:
        self.drops = sorted((int(e), float(f)) for e, f in drops)

    def factor_at(self, epoch: int) -> float | None:
        """Factor in force during 1-based ``epoch`` (``None`` before any drop)."""
        active = [f for e, f in self.drops if e <= epoch]
        return active[-1] if active else None

    def on_train_epoch_start(self, trainer: Any, epoch: int) -> None:
        epoch1 = epoch + 1
        if any(e == epoch1 for e, _ in self.drops):
            trainer.reload_best()
        factor = self.factor_at(epoch1)
        if factor is not None:
            trainer.set_lr_factor(factor)
