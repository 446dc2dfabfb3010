"""Triplet loss over all triplets (docs/baselines.md#triplet-all-triplets-triplet): mean
over non-zero terms of [d_ap − d_an + m]₊."""

from __future__ import annotations

from pytorch_metric_learning import losses

from dml_pipelines.core.losses import LOSSES
from dml_pipelines.core.losses.pair_loss import PairLoss


@LOSSES.register("triplet")
def build(
    embedding_size: int,
    num_classes: int,
    margin: float = 0.0961,
    distance: str = "normalised",
) -> PairLoss:
    loss = losses.TripletMarginLoss(
        margin=margin, swap=False, smooth_loss=False, triplets_per_anchor="all"
    )
    return PairLoss(loss, distance=distance, triplets=True)
