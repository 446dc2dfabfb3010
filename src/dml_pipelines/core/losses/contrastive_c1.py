"""C1 contrastive loss, XBM style
(docs/baselines.md#c1-contrastive-xbm-style-contrastive_c1):

L = (1/N_anchors) [Σ_(a,p) [1 − ε − s_ap]₊ + Σ_(a,n) [s_an − m]₊],  m = 0.5.

ε = 0 is XBM's loss (the baseline's default); the GSP/CCP TF framework's
``original_contrastive`` uses ε = 1e-5 (the ``gsp`` method's default, checked
against the official code in ``tests/official/``; docs/methods/gsp.md).
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
    eps: float = 0.0,
) -> PairLoss:
    """PML ``ContrastiveLoss(pos_margin=1 − eps, neg_margin=m, CosineSimilarity,
    SumReducer)`` divided by the number of anchors."""
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"loss.args.eps: must be in [0, 1) (got {eps!r})")
    loss = losses.ContrastiveLoss(
        pos_margin=1.0 - eps,
        neg_margin=margin,
        distance=distances.CosineSimilarity(),
        reducer=reducers.SumReducer(),
    )
    return PairLoss(loss, distance=distance, per_anchor=True)
