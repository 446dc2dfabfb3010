"""Multi-Similarity loss without miner
(docs/baselines.md#multi-similarity-no-miner-multi_similarity):
L = mean_a [(1/α) log(1 + Σ_p e^{−α(s_ap − λ)}) + (1/β) log(1 + Σ_n e^{β(s_an − λ)})].
"""

from __future__ import annotations

from pytorch_metric_learning import losses

from dml_pipelines.core.losses import LOSSES
from dml_pipelines.core.losses.pair_loss import PairLoss


@LOSSES.register("multi_similarity")
def build(
    embedding_size: int,
    num_classes: int,
    alpha: float = 2.0,
    beta: float = 40.0,
    base: float = 0.5,
    distance: str = "normalised",
) -> PairLoss:
    loss = losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)
    return PairLoss(loss, distance=distance)
