"""Potential-field loss (Bhatnagar & Ahuja, CVPR 2025; docs/methods/pfml.md).

Every batch embedding z_i and every proxy p_{j,k} is a charge: it attracts points
of its class with ψ_att and repels the others with ψ_rep (d = distance). α is
the decay exponent of the *force* (the paper's convention, under which its
ablation point α = 0, a constant force, trains): the force magnitude on the
sloped branch is d^(−α), and the potentials are its integrals::

    φ_α(d) = (d^(1−α) − 1) / (1 − α)      (ln d at α = 1; φ_α(1) = 0)
    ψ_att(d) = φ_α(max(d, δ_att))          ψ_rep(d) = −φ_α(min(d, δ_rep))

(an earlier version used ψ_att = −max(d, δ)^(−α'), whose force is α'·d^(−α'−1):
its α' is this α − 1, and its energy is (α − 1)·U + const; CPML: ψ_att(d) =
max(d, δ_att) − δ_att, hinge repulsion max(δ_rep − d, 0)).
The loss is the total energy U = Σ_i Ψ_{y_i}(z_i) + Σ_{j,k} Ψ_j(p_{j,k}),
each charge in the field of its own class, self terms excluded. Per ordered pair
group: U = U_ss + U_sp + U_ps + U_pp with U_ps = U_sp (same pairs, same class
relation) and U_pp restricted by ``proxy_proxy``. Distances are
sqrt(max(‖a − b‖², d_min²)) in float32 (also under AMP); the distances that
enter the potentials are taken from the differences a − b, not from
‖a‖² + ‖b‖² − 2 a·b, which cancels catastrophically for close points.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dml_pipelines.core.losses import LOSSES

PROXY_PROXY = ("batch_classes", "all", "none")
REDUCTIONS = ("per_batch_sample", "sum")
VARIANTS = ("pfml", "cpml")
REPULSIONS = ("pfml", "hinge")


def _check(key: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{key}: {value!r}; valid: {valid}")


def decay_potential(d: torch.Tensor, alpha: float) -> torch.Tensor:
    """φ_α(d) = (d^(1−α) − 1) / (1 − α) elementwise (ln d at α = 1), d > 0: the
    potential whose derivative is d^(−α). Evaluated as expm1((1 − α) ln d) /
    (1 − α), exact near α = 1 too."""
    c = 1.0 - alpha
    if c == 0:
        return d.log()
    return torch.expm1(c * d.log()) / c


def attraction(
    d: torch.Tensor, alpha: float, delta: float, variant: str = "pfml"
) -> torch.Tensor:
    """ψ_att elementwise: φ_α(max(d, δ)) (``pfml``) or max(d, δ) − δ (``cpml``)."""
    _check("variant", variant, VARIANTS)
    if variant == "cpml":
        return d.clamp_min(delta) - delta
    return decay_potential(d.clamp_min(delta), alpha)


def repulsion(
    d: torch.Tensor, alpha: float, delta: float, kind: str = "pfml"
) -> torch.Tensor:
    """ψ_rep elementwise: −φ_α(min(d, δ)) (``pfml``) or max(δ − d, 0) (``hinge``)."""
    _check("cpml_repulsion", kind, REPULSIONS)
    if kind == "hinge":
        return (delta - d).clamp_min(0)
    return -decay_potential(d.clamp_max(delta), alpha)


def pair_distances(
    a: torch.Tensor, b: torch.Tensor, i: torch.Tensor, j: torch.Tensor, d_min: float
) -> torch.Tensor:
    """Distances of the pairs (a[i], b[j]), sqrt(max(‖a_i − b_j‖², d_min²)), from
    the differences (no cancellation for close points). The rows are gathered
    with ``index_select``: its backward adds the pair gradients in index order,
    while the backward of ``a[i]`` adds them with atomics across CPU threads
    (a run-to-run different float sum with two or more threads)."""
    diff = a.index_select(0, i) - b.index_select(0, j)
    return diff.pow(2).sum(1).clamp_min(d_min**2).sqrt()


@torch.no_grad()
def safe_distances(a: torch.Tensor, b: torch.Tensor, min_distance: float):
    """(N, D), (M, D) -> (N, M) Euclidean distances max(‖a − b‖, d_min), without
    the cancelling matrix-product expansion (values only)."""
    d = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    return d.clamp_min(min_distance)


@torch.no_grad()
def mean_negative_distance(embeddings: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean distance over different-class pairs of the batch (collapse watch,
    §4); NaN when the batch holds one class."""
    neg = labels[:, None] != labels[None, :]
    if not neg.any():
        return math.nan
    d = safe_distances(embeddings.float(), embeddings.float(), 0.0)
    return float(d[neg].mean())


class PotentialFieldLoss(nn.Module):
    """Total potential energy of the batch and the proxies.

    Args:
        embedding_size: D. num_classes: N training classes.
        proxies_per_class: M (0: no proxies, sample–sample terms only).
        alpha: decay exponent α ≥ 0 of the force d^(−α). delta_att / delta_rep: radii.
        variant: ``pfml`` or ``cpml`` (linear attraction).
        cpml_repulsion: ``pfml`` or ``hinge`` (used by ``cpml`` only).
        proxy_proxy: ``batch_classes`` | ``all`` | ``none``.
        reduction: ``per_batch_sample`` (U / B) or ``sum`` (U).
        normalize_proxies: L2-normalise proxies before every distance.
        proxy_init: ``kaiming_normal`` (fan_out, as Proxy-Anchor) or ``normal``.
        min_distance: d_min of the distance clamp.
    """

    def __init__(
        self,
        embedding_size: int,
        num_classes: int,
        proxies_per_class: int = 15,
        alpha: float = 4.0,
        delta_att: float = 0.2,
        delta_rep: float = 0.2,
        variant: str = "pfml",
        cpml_repulsion: str = "pfml",
        proxy_proxy: str = "batch_classes",
        reduction: str = "per_batch_sample",
        normalize_proxies: bool = True,
        proxy_init: str = "kaiming_normal",
        min_distance: float = 1e-4,
    ) -> None:
        super().__init__()
        _check("proxy_proxy", proxy_proxy, PROXY_PROXY)
        _check("reduction", reduction, REDUCTIONS)
        _check("variant", variant, VARIANTS)
        _check("cpml_repulsion", cpml_repulsion, REPULSIONS)
        self.alpha, self.delta_att, self.delta_rep = alpha, delta_att, delta_rep
        self.variant = variant
        self.rep_kind = cpml_repulsion if variant == "cpml" else "pfml"
        self.proxy_proxy, self.reduction = proxy_proxy, reduction
        self.normalize_proxies, self.min_distance = normalize_proxies, min_distance
        n = num_classes * proxies_per_class
        self.proxies = nn.Parameter(torch.empty(n, embedding_size)) if n else None
        if self.proxies is not None:
            if proxy_init == "kaiming_normal":
                nn.init.kaiming_normal_(self.proxies, mode="fan_out")
            elif proxy_init == "normal":
                nn.init.normal_(self.proxies)
            else:
                raise ValueError(f"proxy_init: {proxy_init!r}")
        labels = torch.arange(num_classes).repeat_interleave(proxies_per_class)
        self.register_buffer("proxy_labels", labels, persistent=False)

    def potential(self, d: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        """Pair potentials: ψ_att where ``same`` else ψ_rep (same shape as d)."""
        att = attraction(d, self.alpha, self.delta_att, self.variant)
        rep = repulsion(d, self.alpha, self.delta_rep, self.rep_kind)
        return torch.where(same, att, rep)

    def field(self, a, ya, b, yb, own: bool = False) -> torch.Tensor:
        """Ψ_{ya_i}(a_i) from the sources b (classes yb): (N,) (§3.2). ``own``:
        a is b, and source i does not act on point i (masked by index).

        Only pairs on the sloped branch of their potential (same class beyond
        δ_att, other class inside δ_rep) enter the graph; every other pair sits
        on a plateau (ψ_att(δ_att) or ψ_rep(δ_rep), zero gradient) and is
        counted. The sloped pairs' distances come from their differences
        a_i − b_j (cancellation-free; the branch test may use the expansion, whose
        error is far below the radii)."""
        same = ya[:, None] == yb[None, :]
        with torch.no_grad():  # which branch: the sloped pairs are re-measured
            sq = a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T
            active = torch.where(same, sq > self.delta_att**2, sq < self.delta_rep**2)
            flat_same, flat_diff = same & ~active, ~same & ~active
            if own:
                eye = torch.eye(len(a), dtype=torch.bool, device=a.device)
                active &= ~eye
                flat_same &= ~eye
                flat_diff &= ~eye
        plateau = self.plateaus(a.dtype, a.device)
        out = flat_same.sum(1) * plateau[0] + flat_diff.sum(1) * plateau[1]
        i, j = active.nonzero(as_tuple=True)
        d_ij = pair_distances(a, b, i, j, self.min_distance)
        return out.index_add(0, i, self.potential(d_ij, same[i, j]))

    def plateaus(self, dtype, device) -> torch.Tensor:
        """(ψ_att(δ_att), ψ_rep(δ_rep)): the values of the flat branches."""
        d = torch.tensor([self.delta_att, self.delta_rep], dtype=torch.float64)
        att = attraction(d[0], self.alpha, self.delta_att, self.variant)
        rep = repulsion(d[1], self.alpha, self.delta_rep, self.rep_kind)
        return torch.stack([att, rep]).to(dtype=dtype, device=device)

    def proxy_points(self, dtype=torch.float32):
        """(N·M, D) proxies as used in distances and their classes (N·M,), or
        ``None`` without proxies."""
        if self.proxies is None:
            return None
        p = self.proxies.to(dtype)
        return (
            F.normalize(p, dim=1) if self.normalize_proxies else p
        ), self.proxy_labels

    def energy_terms(
        self, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """(B, D), (B,) -> unreduced group sums ``sample_sample``,
        ``sample_proxy``, ``proxy_sample`` (= sample_proxy), ``proxy_proxy``."""
        with torch.autocast(embeddings.device.type, enabled=False):
            z = embeddings.to(torch.promote_types(embeddings.dtype, torch.float32))
            ss = self.field(z, labels, z, labels, own=True).sum()
            zero = z.sum() * 0
            terms = dict(
                sample_sample=ss, sample_proxy=zero, proxy_sample=zero, proxy_proxy=zero
            )
            points = self.proxy_points(z.dtype)
            if points is None:
                return terms
            p, q = points
            sp = self.field(z, labels, p, q).sum()
            terms.update(sample_proxy=sp, proxy_sample=sp)
            if self.proxy_proxy != "none":
                if self.proxy_proxy == "batch_classes":
                    keep = torch.isin(q, labels)
                    p, q = p[keep], q[keep]
                terms["proxy_proxy"] = self.field(p, q, p, q, own=True).sum()
            return terms

    def reduce(self, total: torch.Tensor, batch_size: int) -> torch.Tensor:
        """U -> the loss (U / B or U)."""
        return total / batch_size if self.reduction == "per_batch_sample" else total

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(B, D) normalised embeddings, (B,) labels in 0..N−1 -> scalar loss."""
        total = sum(self.energy_terms(embeddings, labels).values())
        return self.reduce(total, len(labels))


LOSSES.register("pfml")(PotentialFieldLoss)
