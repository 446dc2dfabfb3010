"""The method template every method and baseline fills in.

A method is one ``nn.Module`` holding the embedder, any training-only modules
(heads, memory banks, proxies) and its criterion, so one ``state_dict`` checkpoints
all of it. The engine only calls the hooks below.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from dml_pipelines.core.models.embedder import Embedder


class Method(nn.Module, ABC):
    """Base class.

    Subclasses implement ``training_loss``; the defaults embed with the embedder
    and put backbone / head / everything else in three optimiser groups.
    """

    #: the embeddings artifact's ``normalization`` field
    normalization: str = "l2"

    def __init__(self, embedder: Embedder) -> None:
        super().__init__()
        self.embedder = embedder
        self.normalization = embedder.normalization

    @abstractmethod
    def training_loss(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(B, 3, H, W) float, (B,) int64 in 0..C−1 -> (scalar loss, logs)."""

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Evaluation embedding (B, D), unnormalised-by-evaluator convention:
        returns the method's output (the evaluator applies ``normalization``)."""
        return self.embedder.features(images)

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Parameters frozen during ``warmup_epochs``."""
        return list(self.embedder.backbone.parameters())

    def param_groups(self, optimizer_cfg: Any) -> list[dict[str, Any]]:
        """Optimiser groups: backbone, head (embedder minus backbone) and the rest
        (losses' proxies, method heads), with their ``lr`` multipliers."""
        backbone = {id(p) for p in self.backbone_parameters()}
        embedder = {id(p) for p in self.embedder.parameters()}
        groups: dict[str, list[nn.Parameter]] = {"backbone": [], "head": [], "loss": []}
        for p in self.parameters():
            if not p.requires_grad and id(p) not in backbone:
                continue
            key = (
                "backbone"
                if id(p) in backbone
                else "head"
                if id(p) in embedder
                else "loss"
            )
            groups[key].append(p)
        mult = {
            "backbone": optimizer_cfg.backbone_lr_mult,
            "head": optimizer_cfg.head_lr_mult,
            "loss": optimizer_cfg.loss_lr_mult,
        }
        return [
            {"name": k, "params": v, "lr": optimizer_cfg.lr * mult[k]}
            for k, v in groups.items()
            if v
        ]

    def callbacks(self) -> list[Any]:
        """Method-specific engine callbacks (e.g. CCP proxy re-selection)."""
        return []


class LossMethod(Method):
    """Embedder + one metric loss on the normalised embeddings (the baselines)."""

    def __init__(self, embedder: Embedder, criterion: nn.Module) -> None:
        super().__init__(embedder)
        self.criterion = criterion

    def training_loss(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        emb = self.embedder(images)
        return self.criterion(emb.float(), labels), {}
