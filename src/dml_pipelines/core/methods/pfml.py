"""Potential-Field DML (Bhatnagar & Ahuja, CVPR 2025; docs/methods/pfml.md):
the L2-normalised batch embeddings and M learnable proxies per class are charges
with decaying attraction/repulsion potentials; the loss is their total potential
energy (``core/losses/pfml.py``). The test embedding is the embedder's; proxies
are training-only (not in ``model_state.pt``) and train at lr × the proxy
multiplier. A collapse watch logs the epoch's mean different-class distance."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from dml_pipelines.core.engine.hooks import StepContext, StepOutput, TrainerView
from dml_pipelines.core.losses.pfml import PotentialFieldLoss, mean_negative_distance
from dml_pipelines.core.methods.base import Method, gather
from dml_pipelines.core.methods.registry import METHODS
from dml_pipelines.core.models.embedder import Embedder, build_embedder

log = logging.getLogger(__name__)


class EmbeddingCollapseError(RuntimeError):
    """The training embeddings of different classes collapsed (§4)."""


class PFML(Method):
    """Embedder + ``PotentialFieldLoss`` (which owns the proxies).

    Args:
        embedder: gives the normalised embeddings (``forward``).
        criterion: the potential-field loss.
        proxy_lr_multiplier: proxies' lr = ``optimizer.lr`` × this.
        collapse_threshold: stop when the epoch's mean different-class distance
            falls below it (``None``: only log it).
    """

    def __init__(
        self,
        embedder: Embedder,
        criterion: PotentialFieldLoss,
        proxy_lr_multiplier: float = 100.0,
        collapse_threshold: float | None = None,
    ) -> None:
        super().__init__(embedder)
        self.criterion = criterion
        self.proxy_lr_multiplier = proxy_lr_multiplier
        self.collapse_threshold = collapse_threshold
        self.neg_distances: list[float] = []  # this epoch's batches
        self.epoch_neg_distance = math.nan  # the last finished epoch's mean

    def training_loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        ctx: StepContext | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(B, 3, H, W), (B,) -> (U reduced, logs: energy groups and the mean
        different-class distance ``neg_distance``)."""
        z = self.embedder(images).float()
        z, labels = gather(ctx, z, labels)  # the global batch under several ranks
        terms = self.criterion.energy_terms(z, labels)
        loss = self.criterion.reduce(sum(terms.values()), len(labels))
        logs = {f"energy/{k}": float(v.detach()) for k, v in terms.items()}
        logs["neg_distance"] = mean_negative_distance(z.detach(), labels)
        return loss, logs

    def param_groups(self, optimizer_cfg: Any) -> list[dict[str, Any]]:
        """Backbone and head as the base class; the proxies as group ``proxies``
        at ``optimizer.lr`` × ``proxy_lr_multiplier``."""
        groups = super().param_groups(optimizer_cfg)
        for group in groups:
            if group["name"] == "loss":
                group["name"] = "proxies"
                group["lr"] = optimizer_cfg.lr * self.proxy_lr_multiplier
        return groups

    # -- collapse watch (§4) ---------------------------------------------------
    def on_train_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        self.neg_distances = []

    def on_train_batch_end(self, trainer: TrainerView, outputs: StepOutput) -> None:
        value = outputs.logs.get("neg_distance", math.nan)
        if not math.isnan(value):
            self.neg_distances.append(value)

    def on_train_epoch_end(
        self, trainer: TrainerView, epoch: int, metrics: dict[str, float]
    ) -> None:
        if not self.neg_distances:
            return
        mean = sum(self.neg_distances) / len(self.neg_distances)
        self.epoch_neg_distance = mean
        log.info("pfml epoch %d: mean different-class distance %.4f", epoch + 1, mean)
        if self.collapse_threshold is not None and mean < self.collapse_threshold:
            raise EmbeddingCollapseError(
                f"pfml.collapse_check: mean different-class distance {mean:.3g} < "
                f"δ/10 = {self.collapse_threshold:g} in epoch {epoch + 1}: the "
                "embeddings collapsed (check pfml.delta and the repulsion)"
            )


@METHODS.register("pfml")
def build_pfml(cfg: Any, num_classes: int) -> PFML:
    """Build from a ``PFMLConfig`` for ``num_classes`` training classes."""
    criterion = PotentialFieldLoss(
        cfg.embedding_dim,
        num_classes,
        proxies_per_class=cfg.proxies_per_class,
        alpha=cfg.alpha,
        delta_att=cfg.radius_att,
        delta_rep=cfg.radius_rep,
        variant=cfg.variant,
        cpml_repulsion=cfg.cpml.repulsion,
        proxy_proxy=cfg.proxy_proxy,
        reduction=cfg.reduction,
        normalize_proxies=cfg.normalize_proxies,
        proxy_init=cfg.proxy_init,
        min_distance=cfg.min_distance,
    )
    threshold = min(cfg.radius_att, cfg.radius_rep) / 10
    return PFML(
        build_embedder(cfg),
        criterion,
        proxy_lr_multiplier=cfg.proxy_lr_multiplier,
        collapse_threshold=threshold if cfg.collapse_check else None,
    )
