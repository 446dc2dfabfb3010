"""Embedding heads: (B, C) -> (B, D). Config: ``head: {name, args}``; the
builder receives ``in_dim`` (backbone channels) and ``out_dim``
(``embedding_dim``)."""

from __future__ import annotations

from torch import nn

from dml_pipelines.core.registry import Registry

HEADS: Registry = Registry("head")


@HEADS.register("linear")
def linear(in_dim: int, out_dim: int, bias: bool = True) -> nn.Module:
    """``Linear(C, D)`` with or without bias."""
    return nn.Linear(in_dim, out_dim, bias=bias)


@HEADS.register("identity")
def identity(in_dim: int, out_dim: int) -> nn.Module:
    """No head: the embedding is the pooled feature (needs ``embedding_dim`` = C)."""
    if in_dim != out_dim:
        raise ValueError(
            f"head.name: identity keeps the {in_dim} backbone channels; set "
            f"embedding_dim: {in_dim} (got {out_dim})"
        )
    return nn.Identity()


@HEADS.register("mlp")
def mlp(
    in_dim: int, out_dim: int, hidden_dim: int | None = None, batchnorm: bool = True
) -> nn.Module:
    """2-layer MLP: Linear(C, H) → [BN] → ReLU → Linear(H, D); H defaults to C."""
    hidden = hidden_dim or in_dim
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(hidden))
    layers += [nn.ReLU(inplace=True), nn.Linear(hidden, out_dim)]
    return nn.Sequential(*layers)
