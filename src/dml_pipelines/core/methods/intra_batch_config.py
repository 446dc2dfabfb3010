"""Config of ``intra_batch`` (torch-free; registered for the Kedro wiring)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from dml_pipelines.core.config import MethodConfig, StrictModel
from dml_pipelines.core.methods.configs import register_config

INTRA_BATCH_LOSSES = ("backbone_ce", "mpn_ce")


class MPNConfig(StrictModel):
    """Message-passing network (§3): L post-norm attention layers, H heads."""

    layers: int = Field(1, gt=0)
    heads: int = Field(2, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    cat: bool = False
    ffn_mult: int = Field(4, gt=0)


class LrDrop(StrictModel):
    """At the start of 1-based ``epoch``: reload the best checkpoint, then set
    lr = base lr × ``factor`` (factors are relative to the base lr)."""

    epoch: int = Field(gt=0)
    factor: float = Field(gt=0)


class LossWeights(StrictModel):
    backbone_ce: float = Field(1.0, ge=0)
    mpn_ce: float = Field(1.0, ge=0)


@register_config("intra_batch")
class IntraBatchConfig(MethodConfig):
    """Intra-Batch connections (MPN over the batch graph, label-smoothed CE)."""

    normalization: Literal["l2"] = "l2"
    attention_zero_logit: bool = True
    mpn: MPNConfig = Field(default_factory=MPNConfig)
    temperature: float = Field(0.2, gt=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    losses: list[Literal["backbone_ce", "mpn_ce"]] = Field(
        default_factory=lambda: list(INTRA_BATCH_LOSSES), min_length=1
    )
    loss_weights: LossWeights = Field(default_factory=LossWeights)
    lr_drops: list[LrDrop] = Field(
        default_factory=lambda: [
            LrDrop(epoch=31, factor=0.1),
            LrDrop(epoch=51, factor=0.1),
        ]
    )
    ddp_graph: Literal["local", "global"] = "local"

    @field_validator("ddp_graph")
    @classmethod
    def _local_only(cls, value: str) -> str:
        if value != "local":
            raise ValueError(
                "'global' (differentiable all-gather) is not implemented; valid: local"
            )
        return value

    @field_validator("losses")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a loss is listed twice")
        return value

    @field_validator("lr_drops")
    @classmethod
    def _increasing(cls, value: list[LrDrop]) -> list[LrDrop]:
        epochs = [d.epoch for d in value]
        if epochs != sorted(set(epochs)):
            raise ValueError("epochs must be strictly increasing")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.embedding_dim % self.mpn.heads:
            raise ValueError(
                f"mpn.heads: {self.mpn.heads} does not divide embedding_dim "
                f"{self.embedding_dim}"
            )
        if self.lr_drops and self.training.scheduler is not None:
            raise ValueError(
                "lr_drops: set lr_drops: [] to use training.scheduler (both set lr)"
            )
        return self
