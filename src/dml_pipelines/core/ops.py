"""Small tensor operations shared by several methods (one copy each)."""

from __future__ import annotations

import torch


def clip_to_ball(x: torch.Tensor) -> torch.Tensor:
    """(..., D) -> (..., D): x / max(1, ‖x‖) over the last dimension: the
    projection onto the unit ball (the Lipschitz normalisation N(v) of GSP and
    CCP, ``normalization: lipschitz`` of the embedder)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1.0)
