"""Cross-batch memory around a pair loss, as GSP's TF framework uses it
(``zsr/xbm/original_contrastive``; docs/baselines.md#cross-batch-memory-xbm).

The ring buffer is the one memory of ``core/models/memory.py`` (``size``
detached (embedding, label) rows); this adds GSP's batch schedule and the
memory term. Every training batch is enqueued after its step (``enqueue``,
from the method's ``on_train_batch_end``). The memory term scores the batch against
the memory *as it is after enqueueing the current batch* (the batch, detached,
followed by the newest ``size − B`` stored rows; each anchor's own copy
excluded by index), which is the official order (enqueue, then loss) without
mutating state inside the forward pass. The term is active once ``start_step +
batches`` batches have been enqueued, the current one included (TF:
``start_at + batches_in_mem``).

Checkpoints written before the memories were merged named the buffers
``embeddings``/``pointer`` and marked empty slots by label −1; they load as
they are (``feats``/``ptr``, ``count`` = the slots with a label).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dml_pipelines.core.models.memory import RingMemory

#: buffer names of the GSP memory before the merge -> the ring buffer's
LEGACY_KEYS = {"embeddings": "feats", "pointer": "ptr"}


class CrossBatchMemory(RingMemory):
    """Args: size (rows), dim (D), batches (memory size in batches),
    start_step (batches before the memory fills)."""

    def __init__(self, size: int, dim: int, batches: int, start_step: int) -> None:
        super().__init__(size, dim, key="xbm.memory_batches")
        self.batches, self.start_step = batches, start_step
        self.register_buffer("enqueued", torch.zeros((), dtype=torch.long))

    def active(self) -> bool:
        """The memory term is used at this step (current batch included)."""
        return int(self.enqueued) + 1 >= self.start_step + self.batches

    def references(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D), (B,) -> references (M, D), (M,): the detached batch, then the
        stored rows that survive its enqueue, newest last."""
        stored, stored_labels = self.survivors(len(labels))
        refs = torch.cat([embeddings.detach(), stored.to(embeddings)])
        return refs, torch.cat([labels, stored_labels])

    def loss(
        self, criterion: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """Memory term ``criterion(batch, references, exclude_self=True)``."""
        refs, ref_labels = self.references(embeddings, labels)
        return criterion(embeddings, labels, refs, ref_labels, exclude_self=True)

    @torch.no_grad()
    def enqueue(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Write (B, D), (B,) at the pointer (FIFO, wrapping around; a batch
        larger than the memory keeps its last rows) and count the batch."""
        slots = super().enqueue(embeddings, labels)
        self.enqueued += 1
        return slots

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # a checkpoint of the memory before the merge (see the module docstring)
        for old, new in LEGACY_KEYS.items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        labels = state_dict.get(prefix + "labels")
        if labels is not None and prefix + "count" not in state_dict:
            state_dict[prefix + "count"] = (labels >= 0).sum()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
