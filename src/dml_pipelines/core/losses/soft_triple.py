"""SoftTriple (docs/baselines.md#softtriple-soft_triple) with K centres per class and
the centre-sparsity regulariser (PML)."""

from __future__ import annotations

from pytorch_metric_learning import losses, regularizers

from dml_pipelines.core.losses import LOSSES


@LOSSES.register("soft_triple")
def build(
    embedding_size: int,
    num_classes: int,
    centers_per_class: int = 10,
    la: float = 20.0,
    gamma: float = 0.1,
    margin: float = 0.01,
    weight_reg_weight: float = 0.2,
) -> losses.SoftTripleLoss:
    reg = regularizers.SparseCentersRegularizer(num_classes, centers_per_class)
    return losses.SoftTripleLoss(
        num_classes=num_classes,
        embedding_size=embedding_size,
        centers_per_class=centers_per_class,
        la=la,
        gamma=gamma,
        margin=margin,
        weight_regularizer=reg,
        weight_reg_weight=weight_reg_weight,
    )
