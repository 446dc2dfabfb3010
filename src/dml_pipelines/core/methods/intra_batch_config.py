"""Config of ``intra_batch`` (torch-free; registered for the Kedro wiring).

Besides its own pooling (``gmp``), the method accepts the GSP layer
``pooling: {name: gsp, args: {...}}`` with ``init: classifier_kcenter`` (the
prototypes are picked among the backbone classifier's weight rows at the first
training forward) or ``none``, and an optional zero-shot regression loss on the
GSP attributes (``zsr``, off by default): the Intra-Batch + GSP setting of the
GSP authors' PyTorch code (recipes ``gsp_intra_batch_<dataset>``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from dml_pipelines.core.config import MethodConfig, check_head_init
from dml_pipelines.core.losses.gsp_zsr_options import ZsrConfig
from dml_pipelines.core.methods.configs import register_config
from dml_pipelines.core.models.gsp_pooling_options import check_pooling_args
from dml_pipelines.core.schema import StrictModel

INTRA_BATCH_LOSSES = ("backbone_ce", "mpn_ce")


class MPNConfig(StrictModel):
    """Message-passing network (docs/methods/intra_batch.md#the-model-and-the-loss): L
    post-norm attention layers, H heads."""

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


class IntraBatchZsrConfig(ZsrConfig):
    """The ZSR loss of ``gsp`` added to the Intra-Batch losses: off by default;
    ``additive`` (L + w·L_ZS, the PyTorch integration) by default."""

    enabled: bool = False
    mix: Literal["convex", "additive"] = "additive"


#: GSP prototype initialisations usable here (``memory_kcenter`` is driven by
#: the ``gsp`` method's hooks)
GSP_INITS = ("classifier_kcenter", "none")


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
    #: none by default: the paper's drops (epochs 31 and 51 of 70) are in the
    #: recipes; a drop beyond ``training.epochs`` is an error (it would never fire)
    lr_drops: list[LrDrop] = Field(default_factory=list)
    ddp_graph: Literal["local", "global"] = "local"
    #: ``kaiming_fan_out``: the embedding head and the backbone classifier
    #: initialised as the GSP authors' PyTorch module (bias 0)
    head_init: Literal["default", "kaiming_fan_out"] = "default"
    zsr: IntraBatchZsrConfig = Field(default_factory=IntraBatchZsrConfig)

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
        gsp = self.pooling.name == "gsp"
        if gsp:
            args = self.pooling.args
            check_pooling_args(args, self.embedding_dim)
            if args.get("init", "memory_kcenter") not in GSP_INITS:
                raise ValueError(
                    f"pooling.args.init: intra_batch initialises the GSP prototypes "
                    f"from its classifier; valid: {', '.join(GSP_INITS)} "
                    f"(got {args.get('init', 'memory_kcenter')!r})"
                )
        self.zsr.check_pooling(self.pooling.name)
        check_head_init(self)
        late = [d.epoch for d in self.lr_drops if d.epoch > self.training.epochs]
        if late:
            raise ValueError(
                f"lr_drops: epoch {late[0]} is beyond training.epochs "
                f"{self.training.epochs}, so the drop would never fire; drop it, "
                f"move it inside the run or set lr_drops: []"
            )
        if self.lr_drops and self.training.scheduler is not None:
            raise ValueError(
                "lr_drops: set lr_drops: [] to use training.scheduler (both set lr)"
            )
        return self
