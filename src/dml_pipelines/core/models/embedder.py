"""Embedder = backbone → pooling (given the head) → normalisation."""

from __future__ import annotations

import torch
from torch import nn

from dml_pipelines.core.models.backbones import BACKBONES, freeze_batchnorm
from dml_pipelines.core.models.pooling import POOLINGS
from dml_pipelines.core.registry import call_with_args


def normalize_embeddings(x: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, D) -> (B, D): ``l2`` (unit norm), ``lipschitz`` (v / max(1, ‖v‖)) or
    ``none``."""
    if mode == "l2":
        return nn.functional.normalize(x, dim=1)
    if mode == "lipschitz":
        return x / x.norm(dim=1, keepdim=True).clamp_min(1.0)
    if mode == "none":
        return x
    raise ValueError(f"normalization: {mode!r} is invalid; valid: l2, lipschitz, none")


class Embedder(nn.Module):
    """Images (B, 3, H, W) -> embeddings (B, D).

    Args:
        backbone: feature extractor with ``out_channels``.
        pooling: module called as ``pooling(fmap, head)``.
        embedding_dim: D; the head is ``Linear(C, D)`` (``None`` keeps C, no head).
        normalization: ``l2`` | ``lipschitz`` | ``none``.
        freeze_bn: keep the backbone's BatchNorm layers frozen (eval mode).
    """

    def __init__(
        self,
        backbone: nn.Module,
        pooling: nn.Module,
        embedding_dim: int | None,
        normalization: str = "l2",
        freeze_bn: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        c = backbone.out_channels
        self.head = (
            nn.Identity() if embedding_dim is None else nn.Linear(c, embedding_dim)
        )
        self.embedding_dim = c if embedding_dim is None else embedding_dim
        normalize_embeddings(torch.zeros(1, 1), normalization)  # validate early
        self.normalization = normalization
        self.freeze_bn = freeze_bn
        if freeze_bn:
            freeze_batchnorm(self.backbone)

    def train(self, mode: bool = True) -> Embedder:
        super().train(mode)
        if self.freeze_bn:
            freeze_batchnorm(self.backbone)
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> unnormalised embedding (B, D)."""
        out = self.pooling(self.backbone(x), self.head)
        return out[0] if isinstance(out, tuple) else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> normalised embedding (B, D)."""
        return normalize_embeddings(self.features(x), self.normalization)


def build_embedder(cfg) -> Embedder:
    """Build from a ``MethodConfig`` (backbone, pooling, embedding_dim,
    normalization). Unknown names raise ``KeyError`` listing valid ones."""
    bb = BACKBONES.get(cfg.backbone.name, key="backbone.name")
    backbone = call_with_args(
        bb,
        {"pretrained": cfg.backbone.pretrained, **cfg.backbone.args},
        "backbone.args",
    )
    pool_cls = POOLINGS.get(cfg.pooling.name, key="pooling.name")
    pooling = call_with_args(pool_cls, cfg.pooling.args, "pooling.args")
    return Embedder(
        backbone,
        pooling,
        cfg.embedding_dim,
        normalization=cfg.normalization,
        freeze_bn=cfg.backbone.freeze_bn,
    )
