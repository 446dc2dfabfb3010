"""Zero-shot regression (ZSR) loss of GSP (specs/methods/gsp.md §7).

The batch is split into two class-disjoint halves A and B; a ridge regressor
(dual form, ridge λ) fitted on one half's attribute vectors Z and class
embeddings E[y] predicts the other half's class embeddings:
Ŷ_B = Z_B Z_Aᵀ (Z_A Z_Aᵀ + λI)⁻¹ E[y_A], and symmetrically Ŷ_A. The loss is
softmax cross-entropy over all training classes of τ⟨E_c, ŷ_i⟩ (unnormalised),
averaged over the batch. E (C × D, Keras he-normal) is a parameter of this
module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def class_halves(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (B,) of halves A and B: the distinct classes in order of
    first appearance, the first ⌈P/2⌉ to A and the rest to B."""
    classes, inverse = torch.unique(labels, return_inverse=True)
    p = len(classes)
    if p < 2:
        raise ValueError(
            f"zsr.enabled: the ZSR loss splits the batch by class and needs "
            f"at least 2 classes per batch (got {p})"
        )
    pos = torch.arange(len(labels), device=labels.device)
    first = torch.full((p,), len(labels), dtype=torch.long, device=labels.device)
    first = first.scatter_reduce(0, inverse, pos, reduce="amin")
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(p, device=labels.device)
    in_a = rank[inverse] < math.ceil(p / 2)
    return in_a, ~in_a


def ridge_predict(
    z_train: torch.Tensor, y_train: torch.Tensor, z_test: torch.Tensor, ridge: float
) -> torch.Tensor:
    """Dual ridge regression without intercept: (m, K), (m, D), (t, K) ->
    (t, D) = Z_t Z_mᵀ (Z_m Z_mᵀ + λI)⁻¹ Y_m."""
    gram = z_train @ z_train.T
    eye = torch.eye(len(z_train), dtype=gram.dtype, device=gram.device)
    alpha = torch.linalg.solve(gram + ridge * eye, y_train)  # (m, D)
    return (z_test @ z_train.T) @ alpha


class ZeroShotRegressionLoss(nn.Module):
    """ZSR loss.

    Args:
        num_classes: C training classes; dim: D (class embedding size).
        ridge: λ; scale: τ.
    """

    def __init__(
        self, num_classes: int, dim: int, ridge: float = 0.05, scale: float = 9.5
    ) -> None:
        super().__init__()
        self.class_embeddings = nn.Parameter(torch.empty(num_classes, dim))
        # Keras he_normal on a (C, D) weight: fan_in = C, truncated at 2σ
        std = math.sqrt(2.0 / num_classes) / 0.87962566103423978
        nn.init.trunc_normal_(self.class_embeddings, std=std, a=-2 * std, b=2 * std)
        self.ridge, self.scale = ridge, scale

    def predictions(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, K) attributes, (B,) labels -> (B, D) cross-half predictions."""
        in_a, in_b = class_halves(labels)
        y = self.class_embeddings[labels].to(z.dtype)
        pred = torch.empty_like(y)
        pred[in_b] = ridge_predict(z[in_a], y[in_a], z[in_b], self.ridge)
        pred[in_a] = ridge_predict(z[in_b], y[in_b], z[in_a], self.ridge)
        return pred

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, K), (B,) -> scalar L_ZS."""
        with torch.autocast(z.device.type, enabled=False):
            z = z.to(torch.promote_types(z.dtype, torch.float32))
            pred = self.predictions(z, labels)
            logits = self.scale * pred @ self.class_embeddings.to(z.dtype).T
            return F.cross_entropy(logits, labels)
