"""Zero-shot regression (ZSR) loss of GSP
(docs/methods/gsp.md#zero-shot-regression-zsr-loss).

The batch is split into two class-disjoint halves A and B (``split``); a ridge
regressor (dual form, ridge λ) fitted on one half's attribute vectors Z and
class embeddings E[y] predicts the other half's class embeddings:
Ŷ_B = Z_B Z_Aᵀ (Z_A Z_Aᵀ + λI)⁻¹ E[y_A], and symmetrically Ŷ_A. The loss is
softmax over all training classes of τ⟨E_c, ŷ_i⟩ (unnormalised); each sample
scores −log(p_i + ε) with p_i its class's probability, averaged over the batch.
ε = 1e-16 is the official code's form (DEFAULT): a sample's loss is capped at
−log ε ≈ 36.84 and its gradient vanishes once p_i ≪ ε. ε = 0 is the exact
cross-entropy. E (C × D, Keras he-normal) is a parameter of this module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: ``alternate``: the distinct classes in order of first appearance go to A, B,
#: A, B, … (the TF code's even/odd positions on its class-interleaved batches);
#: ``halves``: the first ⌈P/2⌉ classes to A, the rest to B (the PyTorch
#: module's first/second half of a batch grouped by class)
SPLITS = ("alternate", "halves")


def class_halves(
    labels: torch.Tensor, split: str = "halves"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks (B,) of the class-disjoint halves A and B (``SPLITS``)."""
    if split not in SPLITS:
        raise ValueError(f"zsr.split: {split!r}; valid: {', '.join(SPLITS)}")
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
    if split == "alternate":
        in_a = rank[inverse] % 2 == 0
    else:
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
        epsilon: ε of −log(p + ε) (1e-16, the official code; 0: exact CE).
        split: how the classes are split into halves (``SPLITS``).
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        ridge: float = 0.05,
        scale: float = 9.5,
        epsilon: float = 1e-16,
        split: str = "halves",
    ) -> None:
        super().__init__()
        self.class_embeddings = nn.Parameter(torch.empty(num_classes, dim))
        # Keras he_normal on a (C, D) weight: fan_in = C, truncated at 2σ
        std = math.sqrt(2.0 / num_classes) / 0.87962566103423978
        nn.init.trunc_normal_(self.class_embeddings, std=std, a=-2 * std, b=2 * std)
        if epsilon < 0:
            raise ValueError(f"zsr.epsilon: must be >= 0 (got {epsilon!r})")
        if split not in SPLITS:
            raise ValueError(f"zsr.split: {split!r}; valid: {', '.join(SPLITS)}")
        self.ridge, self.scale, self.epsilon = ridge, scale, epsilon
        self.split = split

    def predictions(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, K) attributes, (B,) labels -> (B, D) cross-half predictions."""
        in_a, in_b = class_halves(labels, self.split)
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
            if self.epsilon == 0:
                return F.cross_entropy(logits, labels)
            log_p = F.log_softmax(logits, dim=1).gather(1, labels[:, None])[:, 0]
            # log(p + ε) without forming p: logaddexp(log p, log ε)
            log_eps = torch.full_like(log_p, math.log(self.epsilon))
            return -torch.logaddexp(log_p, log_eps).mean()
