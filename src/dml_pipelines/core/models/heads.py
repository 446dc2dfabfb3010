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


HEAD_INITS: Registry = Registry("head init")


@HEAD_INITS.register("glorot_uniform")
def _glorot(weight) -> None:
    nn.init.xavier_uniform_(weight)


@HEAD_INITS.register("kaiming_fan_out")
def _kaiming_fan_out(weight) -> None:
    nn.init.kaiming_normal_(weight, a=0, mode="fan_out")


def init_head(head: nn.Module, name: str, key: str = "head_init") -> None:
    """Re-initialise every Linear layer of ``head`` with the registered scheme
    ``name`` (``default``: keep PyTorch's), biases set to zero; ``key`` names
    the config key in errors."""
    if name == "default":
        return
    init = HEAD_INITS.get(name, key=key)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{key}: {name} needs a head with Linear layers")
    for layer in linears:
        init(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
