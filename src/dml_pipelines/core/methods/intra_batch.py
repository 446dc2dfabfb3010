"""Intra-Batch connections (Seidenschwarz et al., ICML 2021;
specs/methods/intra_batch.md): a message-passing network over the complete batch
graph refines the L2-normalised embeddings during training; label-smoothed CE on
the backbone logits and on the MPN logits; the test embedding is the backbone's."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dml_pipelines.core.engine.lr_drops import ReloadBestLrDrops
from dml_pipelines.core.losses.label_smoothed_ce import label_smoothed_ce
from dml_pipelines.core.methods.base import Method, gather
from dml_pipelines.core.methods.registry import METHODS
from dml_pipelines.core.models.bn_neck import BNNeckClassifier
from dml_pipelines.core.models.embedder import Embedder, build_embedder
from dml_pipelines.core.models.mpn import MessagePassingNetwork


class IntraBatch(Method):
    """Embedder + backbone classifier + MPN + BN-neck MPN classifier.

    Args:
        embedder: gives u (B, D) unnormalised (``features``).
        num_classes: C training classes.
        mpn: ``MessagePassingNetwork`` on e = u / ‖u‖.
        temperature: T; smoothing: ε; losses: subset of ``backbone_ce``,
            ``mpn_ce``; loss_weights: λ per loss name.
        lr_drops: ``(epoch, factor)`` reload-best lr drops.
    """

    def __init__(
        self,
        embedder: Embedder,
        num_classes: int,
        mpn: MessagePassingNetwork,
        temperature: float = 0.2,
        smoothing: float = 0.1,
        losses: tuple[str, ...] = ("backbone_ce", "mpn_ce"),
        loss_weights: dict[str, float] | None = None,
        lr_drops: tuple[tuple[int, float], ...] = (),
    ) -> None:
        super().__init__(embedder)
        self.classifier = nn.Linear(embedder.embedding_dim, num_classes)
        self.mpn = mpn
        self.mpn_classifier = BNNeckClassifier(mpn.out_dim, num_classes)
        self.temperature, self.smoothing = temperature, smoothing
        self.losses = tuple(losses)
        self.loss_weights = {"backbone_ce": 1.0, "mpn_ce": 1.0, **(loss_weights or {})}
        self.lr_drops = tuple(lr_drops)

    def _ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return label_smoothed_ce(logits, labels, self.temperature, self.smoothing)

    def training_loss(
        self, images: torch.Tensor, labels: torch.Tensor, ctx: Any = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(B, 3, H, W), (B,) -> L = λ_ce·CE_ε(a/T) + λ_gnn·CE_ε(g/T), logs."""
        u = self.embedder.embedding(images).float()  # (B, D), unnormalised
        u, labels = gather(ctx, u, labels)  # the global batch's graph under DDP
        terms: dict[str, torch.Tensor] = {}
        if "backbone_ce" in self.losses:
            terms["backbone_ce"] = self._ce(self.classifier(u), labels)
        if "mpn_ce" in self.losses:
            e = F.normalize(u, dim=1)  # not detached: the MPN term trains the backbone
            terms["mpn_ce"] = self._ce(self.mpn_classifier(self.mpn(e)), labels)
        loss = sum(self.loss_weights[k] * v for k, v in terms.items())
        return loss, {k: float(v.detach()) for k, v in terms.items()}

    def param_groups(self, optimizer_cfg: Any) -> list[dict[str, Any]]:
        """One group at ``optimizer.lr`` (§7.1); the base class's three groups when
        a ``*_lr_mult`` differs from 1."""
        mults = (
            optimizer_cfg.backbone_lr_mult,
            optimizer_cfg.head_lr_mult,
            optimizer_cfg.loss_lr_mult,
        )
        if any(m != 1.0 for m in mults):
            return super().param_groups(optimizer_cfg)
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"name": "all", "params": params, "lr": optimizer_cfg.lr}]

    def callbacks(self) -> list[Any]:
        """The reload-best lr drops (none when ``lr_drops`` is empty)."""
        return [ReloadBestLrDrops(self.lr_drops)] if self.lr_drops else []


@METHODS.register("intra_batch")
def build_intra_batch(cfg: Any, num_classes: int) -> IntraBatch:
    """Build from an ``IntraBatchConfig`` for ``num_classes`` training classes."""
    m = cfg.mpn
    mpn = MessagePassingNetwork(
        cfg.embedding_dim,
        layers=m.layers,
        heads=m.heads,
        dropout=m.dropout,
        cat=m.cat,
        ffn_mult=m.ffn_mult,
        zero_logit=cfg.attention_zero_logit,
    )
    return IntraBatch(
        build_embedder(cfg),
        num_classes,
        mpn,
        temperature=cfg.temperature,
        smoothing=cfg.label_smoothing,
        losses=tuple(cfg.losses),
        loss_weights=cfg.loss_weights.model_dump(),
        lr_drops=tuple((d.epoch, d.factor) for d in cfg.lr_drops),
    )
