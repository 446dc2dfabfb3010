"""C2 contrastive loss with two margins
(docs/baselines.md#c2-contrastive-with-two-margins-contrastive_c2): mean over non-zero
positive terms of [d_ap − m⁺]₊ + mean over non-zero negative terms of [m⁻ − d_an]₊
(Euclidean distance of L2-normalised embeddings)."""

from __future__ import annotations

from pytorch_metric_learning import losses

from dml_pipelines.core.losses import LOSSES
from dml_pipelines.core.losses.pair_loss import PairLoss


@LOSSES.register("contrastive_c2")
def build(
    embedding_size: int,
    num_classes: int,
    pos_margin: float = 0.0,
    neg_margin: float = 0.3841,
    distance: str = "normalised",
) -> PairLoss:
    loss = losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)
    return PairLoss(loss, distance=distance)
