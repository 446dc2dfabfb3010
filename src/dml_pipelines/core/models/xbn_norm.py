"""Cross Batch Normalization (XBN; Ajanthan et al., arXiv 2303.17127), a
reconstruction (no public code; docs/methods/xbn.md Part B): the stored
embeddings of a cross-batch memory are moved in place so that their first and
second moments match those of the current batch.

``diagonal`` (DEFAULT), per dimension d::

    M[:, d] <- (M[:, d] − μ_M[d]) / (s_M[d] + eps) · s[d] + μ[d]

``full`` (variant): whitening with the memory's covariance, colouring with the
batch's (shrunk towards a multiple of the identity, since it is rank-deficient
when b < D)::

    M <- (M − μ_M) C_M^{−1/2} C_Z^{1/2} + μ_Z

Either map may be followed by re-normalising every row to unit L2 norm.
Everything here runs without gradient.
"""

from __future__ import annotations

import torch

#: floor of a row norm when re-normalising
NORM_FLOOR = 1e-12


def batch_moments(
    z: torch.Tensor, unbiased: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, D) -> per-dimension mean (D,) and variance (D,) (biased: / b;
    unbiased: / (b − 1)), in float32 or wider."""
    need = 1 + int(unbiased)
    if z.shape[0] < need:
        raise ValueError(f"xbn: moments need at least {need} rows, got {z.shape[0]}")
    z = z.detach().to(torch.promote_types(z.dtype, torch.float32))
    return z.mean(dim=0), z.var(dim=0, correction=int(unbiased))


def renormalize_rows_(memory: torch.Tensor) -> torch.Tensor:
    """In place: each row of (n, D) ``memory`` divided by its L2 norm."""
    return memory.div_(memory.norm(dim=1, keepdim=True).clamp_min(NORM_FLOOR))


@torch.no_grad()
def match_moments_(
    memory: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    eps: float = 1e-5,
    unbiased: bool = False,
    renormalize: bool = True,
) -> torch.Tensor:
    """Diagonal XBN, in place on ``memory`` (n, D): per dimension, mean ``mean``
    (D,) and std ``std`` (D,) (up to ``eps``), then optional row re-normalisation.
    A dimension that is constant in the memory (s_M + eps = 0) is only shifted.

    Returns:
        ``memory`` (n, D), modified in place.
    """
    var_m, mu_m = torch.var_mean(memory, dim=0, correction=int(unbiased))
    den = var_m.sqrt() + eps
    scale = torch.where(den > 0, std.to(den) / den, torch.ones_like(den))
    memory.mul_(scale).add_(mean.to(memory) - mu_m * scale)  # two passes
    return renormalize_rows_(memory) if renormalize else memory


def _covariance(x: torch.Tensor, unbiased: bool) -> torch.Tensor:
    xc = x - x.mean(dim=0)
    return xc.T @ xc / (x.shape[0] - int(unbiased))


def _sym_power(cov: torch.Tensor, power: float, floor: float) -> torch.Tensor:
    """C^power of a symmetric PSD (D, D) matrix, eigenvalues clamped at ``floor``."""
    w, v = torch.linalg.eigh(cov)
    return (v * w.clamp_min(floor).pow(power)) @ v.T


def shrink(cov: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 − α) C + α (tr C / D) I."""
    d = cov.shape[0]
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    return (1 - alpha) * cov + alpha * torch.trace(cov) / d * eye


@torch.no_grad()
def match_covariance_(
    memory: torch.Tensor,
    z: torch.Tensor,
    eps: float = 1e-5,
    unbiased: bool = False,
    renormalize: bool = True,
    shrinkage: float = 0.1,
) -> torch.Tensor:
    """Full-covariance XBN, in place on ``memory`` (n, D) with batch ``z``
    (b, D): afterwards (re-normalisation off) the memory has the batch mean and
    the covariance ``shrink(C_Z, shrinkage)``, provided C_M's eigenvalues exceed
    ``eps`` (its floor when whitening). Computed in float64.

    Returns:
        ``memory`` (n, D), modified in place.
    """
    m64, z64 = memory.double(), z.detach().double()
    c_m = _covariance(m64, unbiased)
    c_z = shrink(_covariance(z64, unbiased), shrinkage)
    floor = max(eps, torch.finfo(torch.float64).tiny)
    a = _sym_power(c_m, -0.5, floor) @ _sym_power(c_z, 0.5, 0.0)
    memory.copy_((m64 - m64.mean(dim=0)) @ a + z64.mean(dim=0))
    return renormalize_rows_(memory) if renormalize else memory
