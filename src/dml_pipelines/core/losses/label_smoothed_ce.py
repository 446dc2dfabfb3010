"""Label-smoothed cross-entropy with a temperature
(docs/baselines.md#label-smoothed-softmax,
docs/methods/intra_batch.md#the-model-and-the-loss). Acts on logits, so it is a function
used by the ``intra_batch`` method, not an entry of the embedding-loss registry."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def label_smoothed_ce(
    logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 1.0,
    smoothing: float = 0.1,
) -> torch.Tensor:
    """CE_ε(z / T, y) averaged over the batch, target (1 − ε)·onehot(y) + ε/C.

    Args:
        logits: (B, C); labels: (B,) in 0..C−1; temperature: T; smoothing: ε.

    Returns:
        scalar loss.
    """
    return F.cross_entropy(
        logits.float() / temperature, labels, label_smoothing=smoothing
    )
