"""CCP's instance loss (docs/methods/ccp.md): one pair loss called twice,

    L = w_proxy · ℓ(e, y; N(P), y_P) + w_batch · ℓ(e, y; e, y)   (self-pairs out)

with the batch as anchors in both terms. In the proxy term the references are
all C·M proxies (positives: the M proxies of the anchor's class, no diagonal
removed); the pair loss normalises anchors and references alike (clip to the unit
ball under ``clip_to_ball``, unit vectors under ``normalised``). Not a registry
entry: only the ``ccp`` method uses it.

The triplet proxy term builds its (a, p, n) triplets from the positive pairs and
each anchor's negatives (``sparse_triplets``) instead of ``PairLoss``'s dense
(B, R, R) mask, which at SOP scale (R = 11,318 × 4 proxies) would need 65 GB.
"""

from __future__ import annotations

import torch
from torch import nn

from dml_pipelines.core.losses.pair_loss import clip_to_ball, pair_masks


def proxy_labels(num_classes: int, proxies_per_class: int) -> torch.Tensor:
    """Labels (C·M,) of the m-major proxy layout: row m·C + c has label c."""
    return torch.arange(num_classes).repeat(proxies_per_class)


def sparse_triplets(
    pos: torch.Tensor, neg: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All (a, p, n) with ``pos[a, p]`` and ``neg[a, n]``, from (B, R) masks, in
    the order of ``nonzero(pos[:, :, None] & neg[:, None, :])`` without the
    (B, R, R) mask: memory O(#triplets)."""
    a_pos, p_pos = torch.nonzero(pos, as_tuple=True)  # sorted by (a, p)
    a_neg, n_neg = torch.nonzero(neg, as_tuple=True)  # sorted by (a, n)
    count = torch.bincount(a_neg, minlength=pos.shape[0])
    start = torch.cumsum(count, 0) - count
    reps = count[a_pos]
    a = a_pos.repeat_interleave(reps)
    p = p_pos.repeat_interleave(reps)
    first = torch.cumsum(reps, 0) - reps
    offset = torch.arange(len(a), device=a.device) - first.repeat_interleave(reps)
    return a, p, n_neg[start[a] + offset]


class ProxyPairLoss(nn.Module):
    """Multi-proxy form of a pair loss plus its weighted in-batch form.

    Args:
        pair_loss: a loss under the pair-loss contract (``losses/pair_loss.py``).
        proxy_weight: w_proxy (1.0 in the paper).
        batch_weight: w_batch (0.1 in the official code; 0 drops the term).
    """

    def __init__(
        self, pair_loss: nn.Module, proxy_weight: float = 1.0, batch_weight: float = 0.1
    ) -> None:
        super().__init__()
        if proxy_weight < 0 or batch_weight < 0:
            raise ValueError("proxy_loss_weight and batch_loss_weight must be >= 0")
        self.pair_loss = pair_loss
        self.proxy_weight, self.batch_weight = proxy_weight, batch_weight

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        proxies: torch.Tensor,
        proxy_labels: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(B, D), (B,), (C·M, D), (C·M,) -> (scalar loss, logs of each term)."""
        loss = embeddings.new_zeros(())
        logs: dict[str, float] = {}
        if self.proxy_weight > 0:
            term = self._proxy_term(embeddings, labels, proxies, proxy_labels)
            loss = loss + self.proxy_weight * term
            logs["proxy_loss"] = float(term.detach())
        if self.batch_weight > 0:
            term = self.pair_loss(embeddings, labels)
            loss = loss + self.batch_weight * term
            logs["batch_loss"] = float(term.detach())
        return loss, logs

    def _proxy_term(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        proxies: torch.Tensor,
        proxy_labels: torch.Tensor,
    ) -> torch.Tensor:
        pl = self.pair_loss
        if not getattr(pl, "triplets", False):
            return pl(embeddings, labels, proxies, proxy_labels)
        if pl.distance == "clip_to_ball":
            embeddings, proxies = clip_to_ball(embeddings), clip_to_ball(proxies)
        own = torch.full_like(labels, -1)
        pos, neg = pair_masks(labels, proxy_labels.to(labels.device), own)
        triplets = sparse_triplets(pos, neg)
        return pl.loss(
            embeddings, labels, triplets, ref_emb=proxies, ref_labels=proxy_labels
        )
