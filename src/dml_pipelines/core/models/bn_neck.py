"""BN-neck classifier (docs/methods/intra_batch.md#the-model-and-the-loss): BatchNorm1d
with a frozen zero bias, then a bias-free linear layer initialised N(0, 0.001²)."""

from __future__ import annotations

import torch
from torch import nn


class BNNeckClassifier(nn.Module):
    """(B, dim) features -> (B, C) logits.

    Args:
        dim: input size; num_classes: C; init_std: std of the linear weights.
    """

    def __init__(self, dim: int, num_classes: int, init_std: float = 0.001) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        self.fc = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.fc.weight, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, dim) -> (B, C)."""
        return self.fc(self.bn(x))
