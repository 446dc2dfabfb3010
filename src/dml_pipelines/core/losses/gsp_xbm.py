"""Cross-batch memory around a pair loss, as GSP's TF framework uses it
(``zsr/xbm/original_contrastive``; docs/baselines.md#cross-batch-memory-xbm).

A ring buffer of ``size`` detached (embedding, label) rows. Every training batch
is enqueued after its step (``enqueue``, from the method's ``on_step_end``). The
memory term scores the batch against the memory *as it is after enqueueing the
current batch* (the batch, detached, followed by the newest ``size − B`` stored
rows; each anchor's own copy excluded by index), which is the official order
(enqueue, then loss) without mutating state inside the forward pass. The term is
active once ``start_step + batches`` batches have been enqueued, the current
one included (TF: ``start_at + batches_in_mem``).
"""

from __future__ import annotations

import torch
from torch import nn


class CrossBatchMemory(nn.Module):
    """Args: size (rows), dim (D), batches (memory size in batches),
    start_step (batches before the memory fills)."""

    def __init__(self, size: int, dim: int, batches: int, start_step: int) -> None:
        super().__init__()
        if size <= 0:
            raise ValueError(f"xbm.memory_batches: memory size {size} must be > 0")
        self.batches, self.start_step = batches, start_step
        self.register_buffer("embeddings", torch.zeros(size, dim))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("enqueued", torch.zeros((), dtype=torch.long))

    def active(self) -> bool:
        """The memory term is used at this step (current batch included)."""
        return int(self.enqueued) + 1 >= self.start_step + self.batches

    def references(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D), (B,) -> references (M, D), (M,): the detached batch, then the
        stored rows that survive its enqueue, newest last."""
        size, b = len(self.labels), len(labels)
        keep = max(size - b, 0)
        idx = (self.pointer + b + torch.arange(keep, device=labels.device)) % size
        stored = self.labels[idx] >= 0
        idx = idx[stored]
        refs = torch.cat([embeddings.detach(), self.embeddings[idx].to(embeddings)])
        return refs, torch.cat([labels, self.labels[idx]])

    def loss(
        self, criterion: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Memory term ``criterion(batch, references, exclude_self=True)``."""
        refs, ref_labels = self.references(embeddings, labels)
        return criterion(embeddings, labels, refs, ref_labels, exclude_self=True)

    @torch.no_grad()
    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Write (B, D), (B,) at the pointer (FIFO, wrapping around)."""
        size = len(self.labels)
        emb, lab = embeddings[-size:], labels[-size:]
        idx = (self.pointer + torch.arange(len(lab), device=lab.device)) % size
        self.embeddings[idx] = emb.to(self.embeddings)
        self.labels[idx] = lab.to(self.labels)
        self.pointer.copy_((self.pointer + len(lab)) % size)
        self.enqueued += 1
