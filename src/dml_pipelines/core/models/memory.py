"""The one ring-buffer memory of detached (embedding, label) rows: the
cross-batch memory (XBM, Wang et al., CVPR 2020) of ``xbn``
(docs/methods/xbn.md) and, with GSP's batch schedule on top
(``core/losses/gsp_xbm.py``), of ``gsp``'s base loss
(docs/baselines.md#cross-batch-memory-xbm).

The buffers are registered, so the memory is in the method's ``state_dict``
(``last.pt``, resume) and moves with ``.to(device)``. Slots are written in ring
order from slot 0, so the filled entries are always slots ``0..count−1``;
``entries()`` returns them in slot order (views, no copy; what XBN's loss uses
and normalises in place), ``chronological()`` oldest first and ``survivors(b)``
oldest first without those an enqueue of ``b`` rows would overwrite (copies).
An empty slot holds label −1.
"""

from __future__ import annotations

import torch
from torch import nn


class RingMemory(nn.Module):
    """FIFO memory of ``size`` entries of dimension ``dim``.

    Args:
        size: K_mem, the number of stored embeddings.
        dim: D, the embedding dimension.
        key: the config key that sets ``size`` (named in the error).
    """

    def __init__(self, size: int, dim: int, key: str = "xbm.memory_size") -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(
                f"{key}: need size > 0 and dim > 0 (memory size {size}, dim {dim})"
            )
        self.size, self.dim = size, dim
        self.register_buffer("feats", torch.zeros(size, dim))
        self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.count)

    @property
    def is_full(self) -> bool:
        return int(self.count) == self.size

    def reset(self) -> None:
        """Empty the memory (XBM (re)start)."""
        self.feats.zero_()
        self.labels.fill_(-1)
        self.ptr.zero_()
        self.count.zero_()

    @torch.no_grad()
    def enqueue(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Store (b, D) detached ``feats`` and (b,) ``labels``, overwriting the
        oldest entries. Returns (b,) long: the slot of each row (−1 for rows of a
        batch larger than the memory that did not fit; the last K_mem are kept)."""
        b = feats.shape[0]
        slots = torch.full((b,), -1, dtype=torch.long, device=self.feats.device)
        keep = min(b, self.size)
        ptr = int(self.ptr)
        idx = (ptr + torch.arange(keep, device=self.feats.device)) % self.size
        self.feats[idx] = feats[b - keep :].detach().to(self.feats)
        self.labels[idx] = labels[b - keep :].to(self.labels)
        slots[b - keep :] = idx
        self.ptr.fill_((ptr + keep) % self.size)
        self.count.fill_(min(int(self.count) + keep, self.size))
        return slots

    def entries(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled entries in slot order: (n, D) and (n,) views (n = count)."""
        n = int(self.count)
        return self.feats[:n], self.labels[:n]

    def survivors(self, incoming: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled entries that an enqueue of ``incoming`` rows would keep,
        oldest first: (m, D) and (m,) copies (nothing is written)."""
        keep = max(self.size - incoming, 0)
        idx = (self.ptr + incoming + torch.arange(keep, device=self.ptr.device)) % (
            self.size
        )
        idx = idx[idx < self.count]
        return self.feats[idx], self.labels[idx]

    def chronological(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The filled entries oldest first: (n, D) and (n,) copies."""
        return self.survivors(0)
