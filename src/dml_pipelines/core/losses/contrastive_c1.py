"""C1 contrastive loss, XBM style (baselines.md §3):

L = (1/N_anchors) [Σ_(a,p) (1 − s_ap) + Σ_(a,n) [s_an − m]₊],  m = 0.5.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances, losses, reducers
from torch import nn

from dml_pipelines.core.losses import LOSSES


class ContrastiveC1(nn.Module):
    """PML ``ContrastiveLoss(pos_margin=1, neg_margin=m, CosineSimilarity,
    SumReducer)`` divided by the number of anchors."""

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        self.loss = losses.ContrastiveLoss(
            pos_margin=1.0,
            neg_margin=margin,
            distance=distances.CosineSimilarity(),
            reducer=reducers.SumReducer(),
        )

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, D), (B,) [, (M, D), (M,)] -> scalar."""
        loss = self.loss(embeddings, labels, ref_emb=ref_emb, ref_labels=ref_labels)
        return loss / embeddings.shape[0]


@LOSSES.register("contrastive_c1")
def build(embedding_size: int, num_classes: int, margin: float = 0.5) -> ContrastiveC1:
    return ContrastiveC1(margin=margin)
