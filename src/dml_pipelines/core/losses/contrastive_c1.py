"""C1 contrastive loss, XBM style (baselines.md §3):

L = (1/N_anchors) [Σ_(a,p) (1 − s_ap) + Σ_(a,n) [s_an − m]₊],  m = 0.5.
"""

from __future__ import annotations

from pytorch_metric_learning import distances, losses, reducers

from dml_pipelines.core.losses import LOSSES
from dml_pipelines.core.losses.pair_loss import PairLoss


@LOSSES.register("contrastive_c1")
def build(
    embedding_size: int,
    num_classes: int,
    margin: float = 0.5,
    distance: str = "normalised",
) -> PairLoss:
    """PML ``ContrastiveLoss(pos_margin=1, neg_margin=m, CosineSimilarity,
    SumReducer)`` divided by the number of anchors."""
    loss = losses.ContrastiveLoss(
        pos_margin=1.0,
        neg_margin=margin,
        distance=distances.CosineSimilarity(),
        reducer=reducers.SumReducer(),
    )
    return PairLoss(loss, distance=distance, per_anchor=True)
