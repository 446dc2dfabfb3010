"""Generalized Sum Pooling + zero-shot regression loss (Gürbüz, Şener, Alatan,
ICCV 2023; docs/methods/gsp.md), TF paper-framework semantics: the GSP pooling
(``core/models/gsp_pooling.py``), a base metric loss on normalise(g) (C1
contrastive by default) with an optional cross-batch memory, and the ZSR loss on
the attribute vectors, mixed as (1 − w)·L_DML + w·L_ZS. The cross-batch memory
and the GAP memory are written after the optimiser step from the step's outputs
(``on_train_batch_end``); the memory term already scores the memory as it will
be after that write (``core/losses/gsp_xbm.py``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dml_pipelines.core.engine.hooks import StepContext, StepOutput, TrainerView
from dml_pipelines.core.losses.gsp_xbm import CrossBatchMemory
from dml_pipelines.core.losses.gsp_zsr import ZeroShotRegressionLoss
from dml_pipelines.core.methods.base import Method, gather
from dml_pipelines.core.methods.registry import METHODS, build_loss
from dml_pipelines.core.models import gsp_pooling
from dml_pipelines.core.models.embedder import (
    Embedder,
    build_embedder,
    normalize_embeddings,
)
from dml_pipelines.core.models.heads import init_head


class GSP(Method):
    """Embedder (GSP pooling) + base loss [+ memory] [+ ZSR].

    Args:
        embedder: its pooling gives ``embedding`` g, ``aux`` z and ``gap``.
        criterion: base loss on the normalised g (pair-loss contract when a
            memory is used).
        zsr: the ZSR loss or ``None``; zsr_weight: w; mix: convex | additive.
        memory: the cross-batch memory or ``None``; memory_weight: its weight.
    """

    def __init__(
        self,
        embedder: Embedder,
        criterion: nn.Module,
        zsr: ZeroShotRegressionLoss | None = None,
        zsr_weight: float = 0.1,
        mix: str = "convex",
        memory: CrossBatchMemory | None = None,
        memory_weight: float = 1.0,
    ) -> None:
        super().__init__(embedder)
        self.criterion, self.zsr, self.memory = criterion, zsr, memory
        self.zsr_weight, self.mix, self.memory_weight = zsr_weight, mix, memory_weight

    def training_loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        ctx: StepContext | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(B, 3, H, W), (B,) -> (loss, logs ``dml`` [``xbm``] [``zsr``]); in the
        trainer the step's outputs ``embeddings``, ``labels`` [``gap``] (global
        batch) go to ``on_train_batch_end``."""
        feats = self.embedder.features(images)
        emb = normalize_embeddings(feats["embedding"].float(), self.normalization)
        # the global batch under several processes (identity in one)
        emb, labels = gather(ctx, emb, labels)
        loss = self.criterion(emb, labels)
        logs = {"dml": float(loss.detach())}
        if self.memory is not None and self.memory.active():
            term = self.memory.loss(self.criterion, emb, labels)
            logs["xbm"] = float(term.detach())
            loss = loss + self.memory_weight * term
        if self.zsr is not None:
            (aux,) = gather(ctx, feats["aux"])
            zs = self.zsr(aux, labels)
            logs["zsr"] = float(zs.detach())
            w = self.zsr_weight
            loss = (1 - w) * loss + w * zs if self.mix == "convex" else loss + w * zs
        if ctx is not None:  # for on_train_batch_end (memory enqueue, GAP memory)
            ctx.output(embeddings=emb, labels=labels)
            if "gap" in feats:
                (gap,) = gather(ctx, feats["gap"])
                ctx.output(gap=gap)
        return loss, logs

    def on_fit_start(self, trainer: TrainerView) -> None:
        """Initialise the prototypes if the GAP memory is already full."""
        init = getattr(self.embedder.pooling, "initialize_if_full", None)
        if init is not None:
            init()

    def on_train_batch_end(self, trainer: TrainerView, outputs: StepOutput) -> None:
        """Enqueue the step's embeddings; feed the GAP memory (prototype init)."""
        out = outputs.tensors
        if self.memory is not None and "embeddings" in out:
            self.memory.enqueue(out["embeddings"], out["labels"])
        observe = getattr(self.embedder.pooling, "observe", None)
        if observe is not None and "gap" in out:
            observe(out["gap"])

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The embedder's weights (prototypes and their ``initialized`` flag
        included) without the GAP memory used only to initialise them."""
        drop = {f"embedder.pooling.{b}" for b in gsp_pooling.TRAINING_ONLY_BUFFERS}
        return {k: v for k, v in super().export_state_dict().items() if k not in drop}


@METHODS.register("gsp")
def build_gsp(cfg: Any, num_classes: int) -> GSP:
    """Build from a ``GspConfig`` for ``num_classes`` training classes."""
    cfg = gsp_pooling.with_embedding_dim(cfg)
    embedder = build_embedder(cfg)
    init_head(embedder.head, cfg.head_init)  # Keras glorot uniform by default
    zsr = None
    if cfg.zsr.enabled:
        z = cfg.zsr
        zsr = ZeroShotRegressionLoss(
            num_classes, cfg.embedding_dim, z.ridge, z.scale, z.epsilon, z.split
        )
    memory = None
    if cfg.xbm.enabled:
        s = cfg.sampler
        rf = s.random_factorisation
        batch = rf.batch_size if rf is not None else s.P * s.K
        memory = CrossBatchMemory(
            cfg.xbm.memory_batches * batch,
            cfg.embedding_dim,
            cfg.xbm.memory_batches,
            cfg.xbm.start_step,
        )
    return GSP(
        embedder,
        build_loss(cfg, num_classes),
        zsr=zsr,
        zsr_weight=cfg.zsr.weight,
        mix=cfg.zsr.mix,
        memory=memory,
        memory_weight=cfg.xbm.weight,
    )
