"""Intra-Batch connections (Seidenschwarz et al., ICML 2021;
docs/methods/intra_batch.md): a message-passing network over the complete batch
graph refines the L2-normalised embeddings during training; label-smoothed CE on
the backbone logits and on the MPN logits; the test embedding is the backbone's.

Optional (docs/methods/gsp.md#prototype-initialisation): the GSP pooling with prototypes
picked among the backbone classifier's weight rows (``init:
classifier_kcenter``, at the first training forward) and the zero-shot
regression loss on its attributes (``zsr``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.hooks import StepContext
from dml_pipelines.core.engine.lr_drops import ReloadBestLrDrops
from dml_pipelines.core.losses.gsp_zsr import ZeroShotRegressionLoss
from dml_pipelines.core.losses.label_smoothed_ce import label_smoothed_ce
from dml_pipelines.core.methods.base import Method, gather
from dml_pipelines.core.methods.registry import METHODS
from dml_pipelines.core.models import gsp_pooling
from dml_pipelines.core.models.bn_neck import BNNeckClassifier
from dml_pipelines.core.models.embedder import Embedder, build_embedder
from dml_pipelines.core.models.heads import init_head
from dml_pipelines.core.models.mpn import MessagePassingNetwork

POOLING = "embedder.pooling."


class IntraBatch(Method):
    """Embedder + backbone classifier + MPN + BN-neck MPN classifier.

    Args:
        embedder: gives u (B, D) unnormalised (``features``).
        num_classes: C training classes.
        mpn: ``MessagePassingNetwork`` on e = u / ‖u‖.
        temperature: T; smoothing: ε; losses: subset of ``backbone_ce``,
            ``mpn_ce``; loss_weights: λ per loss name.
        lr_drops: ``(epoch, factor)`` reload-best lr drops.
        zsr: the ZSR loss on the pooling's attributes (GSP pooling) or ``None``;
            zsr_weight: w; zsr_mix: additive (L + w·L_ZS) | convex.

    A pooling with ``init == "classifier_kcenter"`` (GSP) receives the rows of
    ``classifier.weight`` (C, D) at the first training forward.
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
        zsr: ZeroShotRegressionLoss | None = None,
        zsr_weight: float = 0.1,
        zsr_mix: str = "additive",
    ) -> None:
        super().__init__(embedder)
        self.classifier = nn.Linear(embedder.embedding_dim, num_classes)
        self.mpn = mpn
        self.mpn_classifier = BNNeckClassifier(mpn.out_dim, num_classes)
        self.temperature, self.smoothing = temperature, smoothing
        self.losses = tuple(losses)
        self.loss_weights = {"backbone_ce": 1.0, "mpn_ce": 1.0, **(loss_weights or {})}
        self.lr_drops = tuple(lr_drops)
        self.zsr, self.zsr_weight, self.zsr_mix = zsr, zsr_weight, zsr_mix

    def _ce(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return label_smoothed_ce(logits, labels, self.temperature, self.smoothing)

    def training_loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        ctx: StepContext | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(B, 3, H, W), (B,) -> L = λ_ce·CE_ε(a/T) + λ_gnn·CE_ε(g/T)
        [+ w·L_ZS(z)], logs (one per term)."""
        if self.training:
            self.initialize_prototypes()
        feats = self.embedder.features(images)
        u = feats["embedding"].float()  # (B, D), unnormalised
        u, labels = gather(ctx, u, labels)  # the global batch's graph under DDP
        terms: dict[str, torch.Tensor] = {}
        if "backbone_ce" in self.losses:
            terms["backbone_ce"] = self._ce(self.classifier(u), labels)
        if "mpn_ce" in self.losses:
            e = F.normalize(u, dim=1)  # not detached: the MPN term trains the backbone
            terms["mpn_ce"] = self._ce(self.mpn_classifier(self.mpn(e)), labels)
        loss = sum(self.loss_weights[k] * v for k, v in terms.items())
        logs = {k: float(v.detach()) for k, v in terms.items()}
        if self.zsr is not None:
            (aux,) = gather(ctx, feats["aux"])
            zs = self.zsr(aux, labels)
            logs["zsr"] = float(zs.detach())
            w = self.zsr_weight
            loss = (
                loss + w * zs if self.zsr_mix == "additive" else (1 - w) * loss + w * zs
            )
        return loss, logs

    def initialize_prototypes(self) -> bool:
        """``classifier_kcenter``: hand the classifier's weight rows to the GSP
        pooling, which sets its prototypes once, in place (a no-op afterwards,
        also after a resume: its ``initialized`` flag is checkpointed). True when
        it initialised now."""
        pool = self.embedder.pooling
        if getattr(pool, "init", None) != "classifier_kcenter":
            return False
        return pool.initialize_from_rows(self.classifier.weight)

    def param_groups(self, optimizer_cfg: Any) -> list[dict[str, Any]]:
        """One group at ``optimizer.lr``
        (docs/methods/intra_batch.md#key-parameters-under-intra_batch); the base class's
        three groups when a ``*_lr_mult`` differs from 1."""
        mults = (
            optimizer_cfg.backbone_lr_mult,
            optimizer_cfg.head_lr_mult,
            optimizer_cfg.loss_lr_mult,
        )
        if any(m != 1.0 for m in mults):
            return super().param_groups(optimizer_cfg)
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"name": "all", "params": params, "lr": optimizer_cfg.lr}]

    def callbacks(self) -> list[Callback]:
        """The reload-best lr drops (none when ``lr_drops`` is empty)."""
        return [ReloadBestLrDrops(self.lr_drops)] if self.lr_drops else []

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The embedder's weights (GSP prototypes and their ``initialized`` flag
        included, the GSP layer's training-only buffers left out)."""
        drop = {POOLING + b for b in gsp_pooling.TRAINING_ONLY_BUFFERS}
        return {k: v for k, v in super().export_state_dict().items() if k not in drop}

    def load_export_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """As ``Method``'s; besides, the full state of an Intra-Batch model
        without the GSP pooling (``classifier.weight`` present, no
        ``embedder.pooling.*`` key: a warm start, ``training.init_from``) leaves
        the pooling as it is, so ``classifier_kcenter`` then picks the
        prototypes among the loaded classifier's rows."""
        own = {k: v for k, v in self.state_dict().items() if k.startswith(POOLING)}
        if (
            own
            and "classifier.weight" in state
            and not any(k.startswith(POOLING) for k in state)
        ):
            state = {**state, **own}
        super().load_export_state_dict(state)


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
    cfg = gsp_pooling.with_embedding_dim(cfg)
    embedder = build_embedder(cfg)
    k = cfg.pooling.args.get("num_prototypes", 64)
    if cfg.pooling.args.get("init") == "classifier_kcenter" and k > num_classes:
        raise ValueError(
            f"pooling.args.num_prototypes: {k} prototypes cannot be picked among "
            f"the classifier rows of {num_classes} training classes"
        )
    z = cfg.zsr
    method = IntraBatch(
        embedder,
        num_classes,
        mpn,
        temperature=cfg.temperature,
        smoothing=cfg.label_smoothing,
        losses=tuple(cfg.losses),
        loss_weights=cfg.loss_weights.model_dump(),
        lr_drops=tuple((d.epoch, d.factor) for d in cfg.lr_drops),
        zsr_weight=z.weight,
        zsr_mix=z.mix,
    )
    # built last: switching the ZSR on leaves every other initial weight as is
    if z.enabled:
        method.zsr = ZeroShotRegressionLoss(
            num_classes, cfg.embedding_dim, z.ridge, z.scale, z.epsilon, z.split
        )
    if cfg.head_init != "default":
        init_head(embedder.head, cfg.head_init)
        init_head(method.classifier, cfg.head_init)
    return method
