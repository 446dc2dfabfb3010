"""Embedder = backbone → pooling (given the head) → normalisation.

``features(x)`` returns every intermediate as a dict (``feature_map``,
``pooled``, ``embedding`` before normalisation, ``aux`` from the pooling);
``embedding(x)`` is the unnormalised embedding and ``forward`` the normalised one.
"""

from __future__ import annotations

import torch
from torch import nn

from dml_pipelines.core.models.backbones import BACKBONES, freeze_batchnorm
from dml_pipelines.core.models.heads import HEADS
from dml_pipelines.core.models.pooling import POOLINGS
from dml_pipelines.core.normalization import get_normalization
from dml_pipelines.core.registry import call_with_args


def normalize_embeddings(x: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, D) -> (B, D): ``l2`` (unit norm), ``lipschitz`` (v / max(1, ‖v‖)) or
    ``none``."""
    return get_normalization(mode).tensor(x)


class Embedder(nn.Module):
    """Images (B, 3, H, W) -> embeddings (B, D).

    Args:
        backbone: feature extractor with ``out_channels``.
        pooling: module called as ``pooling(fmap, head)``; returns the embedding
            (B, D), or a tuple (embedding, aux) / a dict with ``embedding`` (and
            e.g. ``pooled``) when it has auxiliary outputs.
        embedding_dim: D; the default head is ``Linear(C, D)`` (``None`` keeps C,
            no head).
        head: a module (B, C) -> (B, D) replacing the default head.
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
        head: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.pooling = pooling
        c = backbone.out_channels
        if head is None:
            head = (
                nn.Identity() if embedding_dim is None else nn.Linear(c, embedding_dim)
            )
        self.head = head
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

    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """(B, 3, H, W) -> ``feature_map`` (B, C, h, w), ``pooled`` (B, C) when
        the pooling gives it, ``embedding`` (B, D) unnormalised, ``aux`` (the
        pooling's auxiliary output or ``None``)."""
        fmap = self.backbone(x)
        out = self.pooling(fmap, self.head)
        if isinstance(out, dict):
            return {"feature_map": fmap, "pooled": None, "aux": None, **out}
        emb, aux = out if isinstance(out, tuple) else (out, None)
        return {"feature_map": fmap, "pooled": None, "embedding": emb, "aux": aux}

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> unnormalised embedding (B, D)."""
        return self.features(x)["embedding"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> normalised embedding (B, D)."""
        return normalize_embeddings(self.embedding(x), self.normalization)


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
    head_cfg = getattr(cfg, "head", None)
    head = None
    if head_cfg is not None:
        head = call_with_args(
            HEADS.get(head_cfg.name, key="head.name"),
            {
                "in_dim": backbone.out_channels,
                "out_dim": cfg.embedding_dim,
                **head_cfg.args,
            },
            "head.args",
        )
    return Embedder(
        backbone,
        pooling,
        cfg.embedding_dim,
        normalization=cfg.normalization,
        freeze_bn=cfg.backbone.freeze_bn,
        head=head,
    )
