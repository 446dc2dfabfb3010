"""The pair-loss contract shared by every pair/triplet loss: a batch of anchors
scored against references (the batch itself, a memory bank, proxies)::

    loss(embeddings (B, D), labels (B,),
         ref_embeddings=None (M, D), ref_labels=None (M,), exclude_self=False)

``exclude_self`` drops each anchor's own copy from its pairs: ``True`` means
reference i is anchor i (references = the batch, possibly followed by more);
a LongTensor (B,) gives each anchor's own reference index (−1: none; XBM's
stored copy). Without references the batch is its own reference set with the
diagonal excluded, which is exactly pytorch-metric-learning's plain call.

``distance``: ``normalised`` lets PML's distance re-normalise (unit vectors);
``clip_to_ball`` clips inputs to the unit ball (v / max(1, ‖v‖)) and switches the
distance's normalisation off, as CCP's Lipschitz option needs.
"""

from __future__ import annotations

import torch
from torch import nn

from dml_pipelines.core.ops import clip_to_ball

DISTANCES = ("normalised", "clip_to_ball")


def own_index(
    exclude_self: bool | torch.Tensor, n: int, m: int, device
) -> torch.Tensor:
    """Each anchor's own reference index (−1: none) as a LongTensor (n,)."""
    if isinstance(exclude_self, torch.Tensor):
        return exclude_self.to(device=device, dtype=torch.long)
    if exclude_self:
        if m < n:
            raise ValueError(
                "exclude_self=True needs at least as many references as anchors"
            )
        return torch.arange(n, device=device)
    return torch.full((n,), -1, dtype=torch.long, device=device)


def pair_masks(
    labels: torch.Tensor, ref_labels: torch.Tensor, own: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative masks (B, M) with each anchor's own copy removed."""
    matches = labels[:, None] == ref_labels[None, :]
    diffs = ~matches
    rows = torch.nonzero(own >= 0).squeeze(1)
    matches[rows, own[rows]] = False
    diffs[rows, own[rows]] = False
    return matches, diffs


def triplets_from_masks(
    pos: torch.Tensor, neg: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every (anchor, positive, negative) of the masks (B, M), ordered by anchor,
    positive, negative; memory O(number of triplets), never B·M²."""
    a_p, p_idx = torch.where(pos)
    a_n, n_idx = torch.where(neg)  # sorted by anchor
    per_anchor = neg.sum(1)
    start = torch.cumsum(per_anchor, 0) - per_anchor
    reps = per_anchor[a_p]
    a = torch.repeat_interleave(a_p, reps)
    p = torch.repeat_interleave(p_idx, reps)
    first = torch.repeat_interleave(torch.cumsum(reps, 0) - reps, reps)
    within = torch.arange(len(a), device=pos.device) - first
    n = n_idx[torch.repeat_interleave(start[a_p], reps) + within]
    return a, p, n


class PairLoss(nn.Module):
    """A pytorch-metric-learning pair or triplet loss under the contract above.

    Args:
        loss: the PML loss (pair-based, or triplet-based with ``triplets=True``).
        distance: ``normalised`` or ``clip_to_ball``.
        triplets: hand PML (anchor, positive, negative) triplets, not pairs.
        per_anchor: divide the result by the number of anchors B (C1's
            normalisation with PML's ``SumReducer``).
    """

    def __init__(
        self,
        loss: nn.Module,
        distance: str = "normalised",
        triplets: bool = False,
        per_anchor: bool = False,
    ) -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(
                f"loss.args.distance: {distance!r}; valid: {', '.join(DISTANCES)}"
            )
        self.loss, self.distance = loss, distance
        self.triplets, self.per_anchor = triplets, per_anchor
        if distance == "clip_to_ball":
            loss.distance.normalize_embeddings = False

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_embeddings: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
        exclude_self: bool | torch.Tensor = False,
    ) -> torch.Tensor:
        """(B, D), (B,) [, (M, D), (M,), exclude_self] -> scalar."""
        if (ref_embeddings is None) != (ref_labels is None):
            raise ValueError("ref_embeddings and ref_labels go together")
        if ref_embeddings is None:
            ref_embeddings, ref_labels, exclude_self = embeddings, labels, True
        if self.distance == "clip_to_ball":
            embeddings, ref_embeddings = (
                clip_to_ball(embeddings),
                clip_to_ball(ref_embeddings),
            )
        own = own_index(exclude_self, len(labels), len(ref_labels), embeddings.device)
        pos, neg = pair_masks(labels, ref_labels.to(labels.device), own)
        if self.triplets:
            indices: tuple = triplets_from_masks(pos, neg)
        else:
            indices = (*torch.where(pos), *torch.where(neg))
        loss = self.loss(
            embeddings, labels, indices, ref_emb=ref_embeddings, ref_labels=ref_labels
        )
        return loss / embeddings.shape[0] if self.per_anchor else loss
