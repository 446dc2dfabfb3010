"""Message-passing network of Intra-Batch connections
(docs/methods/intra_batch.md#the-model-and-the-loss): dense attention over the complete
batch graph (self-loops included) whose softmax carries an extra logit fixed at 0, in
post-norm Transformer layers."""

from __future__ import annotations

import math

import torch
from torch import nn


def zero_logit_softmax(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim with an extra logit 0 whose weight is dropped.

    w_ij = exp(s_ij) / (1 + Σ_j' exp(s_ij')), computed in the stable form with
    m_i = max(0, max_j s_ij): exp(s_ij − m_i) / (exp(−m_i) + Σ_j' exp(s_ij' − m_i)).

    Args:
        scores: (..., B) logits of one receiver per row.

    Returns:
        (..., B) weights; each row sums to strictly less than 1.
    """
    m = scores.amax(dim=-1, keepdim=True).clamp_min(0.0).detach()
    e = torch.exp(scores - m)
    return e / (torch.exp(-m) + e.sum(dim=-1, keepdim=True))


class ZeroLogitAttention(nn.Module):
    """Multi-head dot-product attention of every node over all B nodes.

    Args:
        dim: d; heads: H (d_h = d / H); dropout: on the attention weights.
        zero_logit: the "+1" normaliser; ``False`` = plain softmax.
    """

    def __init__(
        self, dim: int, heads: int, dropout: float = 0.1, zero_logit: bool = True
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"mpn.heads: {heads} does not divide dim {dim}")
        self.heads, self.zero_logit = heads, zero_logit
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        for lin in (self.q, self.k, self.v, self.o):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        self.drop = nn.Dropout(dropout)

    def weights(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, d) -> attention weights (H, B, B) [receiver i, sender j] and values
        (H, B, d_h). Dense: the edge set is all B² ordered pairs. The logits and
        the normaliser are computed in at least float32 (also under AMP)."""
        b, d = h.shape
        dh = d // self.heads
        q = self.q(h).view(b, self.heads, dh).transpose(0, 1)  # (H, B, d_h)
        k = self.k(h).view(b, self.heads, dh).transpose(0, 1)
        v = self.v(h).view(b, self.heads, dh).transpose(0, 1)
        s = q @ k.transpose(1, 2)  # (H, B, B)
        s = (s.float() if s.element_size() < 4 else s) / math.sqrt(dh)
        w = zero_logit_softmax(s) if self.zero_logit else s.softmax(dim=-1)
        return w.to(v.dtype), v

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, d) -> messages (B, d): W_o concat_a(Σ_j w^a_ij v^a_j) + b_o."""
        w, v = self.weights(h)
        m = self.drop(w) @ v  # (H, B, d_h)
        return self.o(m.transpose(0, 1).reshape(h.shape))


class MPNLayer(nn.Module):
    """Post-norm layer: h = LN1(h + Drop(attn(h))); h = LN2(h + Drop(FFN(h)))."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float = 0.1,
        ffn_mult: int = 4,
        zero_logit: bool = True,
    ) -> None:
        super().__init__()
        self.attn = ZeroLogitAttention(dim, heads, dropout, zero_logit)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_mult * dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(ffn_mult * dim, dim),
        )
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B, d)."""
        h = self.norm1(h + self.drop1(self.attn(h)))
        return self.norm2(h + self.drop2(self.ffn(h)))


class MessagePassingNetwork(nn.Module):
    """h0 = W_in e + b_in, then L ``MPNLayer``s over the batch graph.

    Args:
        dim: node feature size d (the embedding dim).
        layers: L; heads: H; dropout, ffn_mult, zero_logit: see ``MPNLayer``.
        cat: output the concatenation of all L layer outputs (L·d) instead of
            the last one (d).
    """

    def __init__(
        self,
        dim: int,
        layers: int = 1,
        heads: int = 2,
        dropout: float = 0.1,
        cat: bool = False,
        ffn_mult: int = 4,
        zero_logit: bool = True,
    ) -> None:
        super().__init__()
        self.input = nn.Linear(dim, dim)
        self.layers = nn.ModuleList(
            MPNLayer(dim, heads, dropout, ffn_mult, zero_logit) for _ in range(layers)
        )
        self.cat = cat
        self.out_dim = dim * layers if cat else dim

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        """(B, d) node features -> (B, out_dim) refined features."""
        h = self.input(e)
        outs = []
        for layer in self.layers:
            h = layer(h)
            outs.append(h)
        return torch.cat(outs, dim=1) if self.cat else h
