"""Entropy-smoothed partial optimal transport of GSP
(docs/methods/gsp.md#partial-transport).

Each of the n features carries mass 1/n; a fraction μ of the total is moved onto
K prototypes at costs c (B, K, n), the rest stays as residual ρ. With
s_i = Σ_k exp(−γ c_ki) the optimum is ρ_i = (1/n)/(1 + β s_i),
π_ki = β exp(−γ c_ki) ρ_i, and the scalar β > 0 per image solves
Σ_i (1/n) β s_i / (1 + β s_i) = μ (scalar fixed point, β₀ = 1).

``transport_plan`` returns X = [ρ; π] (B, K + 1, *spatial). ``backward``:
``implicit`` (closed-form gradient at the fixed point) or ``unrolled``
(autograd through the iterations).
"""

from __future__ import annotations

import torch

from dml_pipelines.core.ops import clip_to_ball

BACKWARDS = ("implicit", "unrolled")


#: N(u) = u / max(1, ‖u‖) (clip onto the unit ball)
lipschitz_normalize = clip_to_ball


def _solve(costs: torch.Tensor, mu: float, gamma: float, iterations: int):
    """(B, K, n) -> X (B, K + 1, n), differentiable through the loop."""
    n = costs.shape[-1]
    kern = torch.exp(-gamma * costs)  # (B, K, n)
    s = kern.sum(dim=1)  # (B, n)
    beta = torch.ones(costs.shape[0], 1, dtype=costs.dtype, device=costs.device)
    for _ in range(iterations):
        a = (1.0 / n) / (1.0 + beta * s)
        beta = mu / (a * s).sum(dim=1, keepdim=True)
    # final pass: ρ from the last β, then β so that Σ π = μ exactly
    rho = (1.0 / n) / (1.0 + beta * s)
    beta = mu / (rho * s).sum(dim=1, keepdim=True)
    pi = beta[:, :, None] * kern * rho[:, None, :]
    return torch.cat([rho[:, None, :], pi], dim=1)


class _ImplicitPlan(torch.autograd.Function):
    """Forward: the fixed point without a graph; backward: the closed form of
    docs/methods/gsp.md#partial-transport."""

    @staticmethod
    def forward(ctx, costs, mu, gamma, iterations):  # noqa: D102
        with torch.no_grad():
            x = _solve(costs, mu, gamma, iterations)
        ctx.save_for_backward(x)
        ctx.mu, ctx.gamma = mu, gamma
        return x

    @staticmethod
    def backward(ctx, grad_x):  # noqa: D102
        (x,) = ctx.saved_tensors
        n = x.shape[-1]
        g = x * grad_x  # G = X ⊙ dL/dX
        r = x[:, 0]  # residuals (B, n)
        col = g.sum(dim=1)  # S_i, residual row included
        kappa = 1.0 / (1.0 - ctx.mu - n * (r * r).sum(dim=1, keepdim=True))
        c = g[:, 0].sum(dim=1, keepdim=True) - n * (col * r).sum(dim=1, keepdim=True)
        nu = -c * kappa
        h = n * (col + nu * r)  # (B, n)
        grad_c = -ctx.gamma * (g[:, 1:] - h[:, None, :] * x[:, 1:])
        return grad_c, None, None, None


def transport_plan(
    costs: torch.Tensor,
    mu: float,
    gamma: float,
    iterations: int = 100,
    backward: str = "implicit",
) -> torch.Tensor:
    """Partial transport plan.

    Args:
        costs: (B, K, *spatial) non-negative costs c_ki.
        mu: transport ratio in (0, 1]; gamma: γ = 1/ε ≥ 0.
        iterations: fixed-point iterations (the final pass comes on top).
        backward: ``implicit`` or ``unrolled``.

    Returns:
        X (B, K + 1, *spatial): row 0 = ρ, rows 1..K = π.
    """
    if backward not in BACKWARDS:
        raise ValueError(
            f"pooling.args.backward: {backward!r}; valid: {', '.join(BACKWARDS)}"
        )
    b, k = costs.shape[:2]
    flat = costs.reshape(b, k, -1)
    if backward == "implicit":
        x = _ImplicitPlan.apply(flat, float(mu), float(gamma), int(iterations))
    else:
        x = _solve(flat, float(mu), float(gamma), int(iterations))
    return x.reshape(b, k + 1, *costs.shape[2:])
