"""Global poolings. A pooling receives the feature map AND the head, so a pooling
such as GSP may apply the head per location before pooling; the plain ones pool
first and apply the head after. A pooling returns the embedding (B, D), a tuple
(embedding, aux), or a dict with ``embedding`` and any of ``pooled``/``aux``.
Registry names: ``gap`` (avg), ``gmp`` (max), ``gap+gmp`` (avg + max)."""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn

from dml_pipelines.core.registry import Registry

POOLINGS: Registry = Registry("pooling")


class HeadAfterPooling(nn.Module):
    """Pool (B, C, h, w) -> (B, C), then apply the head -> (B, D)."""

    @abstractmethod
    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C)."""

    def forward(self, fmap: torch.Tensor, head: nn.Module) -> dict[str, torch.Tensor]:
        """(B, C, h, w), head -> ``embedding`` (B, D) and ``pooled`` (B, C)."""
        pooled = self.pool(fmap)
        return {"embedding": head(pooled), "pooled": pooled}


@POOLINGS.register("gap")
class GlobalAvgPool(HeadAfterPooling):
    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))


@POOLINGS.register("gmp")
class GlobalMaxPool(HeadAfterPooling):
    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.amax(dim=(2, 3))


@POOLINGS.register("gap+gmp")
class GlobalAvgMaxPool(HeadAfterPooling):
    """GAP + GMP (summed), as in the Proxy-Anchor code base."""

    def pool(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3)) + fmap.amax(dim=(2, 3))
