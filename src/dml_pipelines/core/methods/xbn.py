"""Cross-batch memory with (Adaptive) Cross Batch Normalization
(docs/methods/xbn.md): XBM (Wang et al., CVPR 2020; exact) adds a memory term
to a pair loss; XBN and Adaptive XBN (Ajanthan et al., arXiv 2303.17127;
reconstructions, no public code) move the stored embeddings so that their
moments match the current batch's (Kalman-filtered in the adaptive variant).

One training step (0-based step t; the official 1-based iteration t + 1)::

    z = l2(embedder(x))
    if xbm.enabled and t >= xbm.start_iteration:
        [XBN on the old memory]        xbn.order: before_enqueue (DEFAULT)
        own = memory.enqueue(z.detach(), y)
        [XBN on the memory]            xbn.order: after_enqueue
    L = loss(z, y)
    if active: L += xbm.weight · loss(z, y, memory, exclude_self=own)

XBN runs only while the memory holds ≥ ``xbn.min_items`` (DEFAULT the batch
size) entries. The test embedding is the embedder's; the memory and the Kalman
state are buffers (in ``last.pt``, not in ``model_state.pt``).

The memory is written inside ``training_loss``, before the memory term, as in
the official XBM (enqueue, then the loss), not after the step like GSP's
(``on_train_batch_end``): XBN maps the stored entries in place before the loss
(with ``after_enqueue`` the current batch's stored copy too), and the memory
term sums over the entries in slot order; a loss on a copy of the memory as it
would be after the step is another computation, not the same bits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dml_pipelines.core.engine.hooks import StepContext
from dml_pipelines.core.methods.base import Method, gather
from dml_pipelines.core.methods.registry import METHODS, build_loss
from dml_pipelines.core.models.embedder import Embedder, build_embedder
from dml_pipelines.core.models.heads import init_head
from dml_pipelines.core.models.memory import RingMemory
from dml_pipelines.core.models.xbn_kalman import MomentKalman
from dml_pipelines.core.models.xbn_norm import (
    batch_moments,
    match_covariance_,
    match_moments_,
)


class CrossBatchNorm(Method):
    """Embedder + pair loss + cross-batch memory + (Adaptive) XBN.

    Args:
        embedder: gives the L2-normalised embedding (B, D).
        criterion: a pair loss under the pair-loss contract.
        xbm: an ``XbmConfig``; xbn: an ``XbnNormConfig`` (any objects with
            their attributes).
    """

    def __init__(
        self, embedder: Embedder, criterion: nn.Module, xbm: Any, xbn: Any
    ) -> None:
        super().__init__(embedder)
        self.criterion = criterion
        self.xbm, self.xbn = xbm, xbn
        self.memory = RingMemory(xbm.memory_size, embedder.embedding_dim)
        k = xbn.kalman
        self.kalman = (
            MomentKalman(
                embedder.embedding_dim, k.q, k.q_mode, k.innovation_ema, k.noise
            )
            if xbn.enabled and xbn.adaptive
            else None
        )
        self._calls = 0  # step count when called without a trainer context

    def active(self, step: int) -> bool:
        """Whether the memory is used at 0-based step ``step``."""
        return bool(self.xbm.enabled) and step >= self.xbm.start_iteration

    def normalize_memory(self, z: torch.Tensor) -> bool:
        """XBN on the memory with batch ``z`` (b, D) when it holds enough
        entries; returns whether it ran. A reset Kalman filter is (re)initialised
        from this batch."""
        x = self.xbn
        feats, _ = self.memory.entries()
        if not x.enabled or len(feats) < (x.min_items or z.shape[0]):
            return False
        if x.covariance == "full":
            match_covariance_(
                feats, z, x.eps, x.unbiased_std, x.renormalize, x.shrinkage
            )
            return True
        mean, var = batch_moments(z, x.unbiased_std)
        if self.kalman is None:
            std = var.sqrt()
        else:
            mean, _ = self.kalman.update(mean, var, z.shape[0])
            std = self.kalman.std_target(x.eps)
        match_moments_(feats, mean, std, x.eps, x.unbiased_std, x.renormalize)
        return True

    def loss_on_embeddings(
        self, z: torch.Tensor, labels: torch.Tensor, step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(b, D) normalised embeddings, (b,) labels, 0-based step -> (loss,
        logs ``batch_loss`` and, when the memory is active, ``memory_loss``,
        ``memory_items``, ``xbn_applied``)."""
        loss = self.criterion(z, labels)
        logs = {"batch_loss": float(loss.detach())}
        if not self.active(step):
            return loss, logs
        if len(self.memory) == 0 and self.kalman is not None:
            self.kalman.reset()  # XBM (re)starts: fresh filter with the memory
        zd = z.detach().float()
        before = self.xbn.order == "before_enqueue"
        applied = self.normalize_memory(zd) if before else False
        own = self.memory.enqueue(zd, labels)
        if not before:
            applied = self.normalize_memory(zd)
        feats, mem_labels = self.memory.entries()
        mem = self.criterion(z, labels, feats, mem_labels, exclude_self=own)
        logs.update(
            memory_loss=float(mem.detach()),
            memory_items=float(len(self.memory)),
            xbn_applied=float(applied),
        )
        return loss + self.xbm.weight * mem, logs

    def training_loss(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        ctx: StepContext | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(B, 3, H, W), (B,) -> L = loss(z) [+ w · memory term], logs. The step
        is ``ctx.global_step`` (or this method's own call count without ctx)."""
        step = ctx.global_step if ctx is not None else self._calls
        self._calls = step + 1
        z = self.embedder(images).float()
        # the global batch under several ranks: every rank enqueues all of it
        z, labels = gather(ctx, z, labels)
        return self.loss_on_embeddings(z, labels, step)


@METHODS.register("xbn")
def build_xbn(cfg: Any, num_classes: int) -> CrossBatchNorm:
    """Build from an ``XbnConfig`` for ``num_classes`` training classes."""
    embedder = build_embedder(cfg)
    init_head(embedder.head, cfg.head_init)  # the official XBM: kaiming fan_out
    return CrossBatchNorm(embedder, build_loss(cfg, num_classes), cfg.xbm, cfg.xbn)
