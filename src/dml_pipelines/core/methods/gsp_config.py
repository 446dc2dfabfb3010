"""Config of ``gsp`` (torch-free; registered for the Kedro wiring).

Generalized Sum Pooling (GSP) is the pooling ``{name: gsp, args: {...}}``; its
layer settings (``num_prototypes``, ``transport_ratio`` μ, ``entropy_weight`` γ,
``solver_iterations``, ``backward``, ``init``, ``init_memory_size``,
``operator``, ``augment_max_pool``) are ``pooling.args``, checked by the
pooling's own ``core/models/gsp_pooling_options.py``. The method adds the base
loss (``loss``), the cross-batch memory around it (``xbm``) and the zero-shot
regression loss (``zsr``, options in ``core/losses/gsp_zsr_options.py``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dml_pipelines.core.config import Component, MethodConfig, check_head_init
from dml_pipelines.core.losses.gsp_zsr_options import ZsrConfig
from dml_pipelines.core.methods.configs import register_config
from dml_pipelines.core.models.gsp_pooling_options import check_pooling_args
from dml_pipelines.core.schema import StrictModel

#: losses under the pair-loss contract (usable inside the cross-batch memory)
PAIR_LOSSES = ("contrastive_c1", "contrastive_c2", "triplet", "multi_similarity")


class XbmConfig(StrictModel):
    """Cross-batch memory around the base pair loss (TF framework semantics):
    every training batch is enqueued; the memory term (batch vs memory, own copy
    excluded) is added with ``weight`` once ``start_step + memory_batches``
    batches have been enqueued (the current one included)."""

    enabled: bool = True
    memory_batches: int = Field(25, gt=0)
    start_step: int = Field(1000, ge=0)
    weight: float = Field(1.0, ge=0)


class GspZsrConfig(ZsrConfig):
    """``ZsrConfig`` with the TF code's ``split: alternate`` (DEFAULT of ``gsp``)."""

    split: Literal["alternate", "halves"] = "alternate"


@register_config("gsp")
class GspConfig(MethodConfig):
    """GSP pooling + base loss (+ XBM) + ZSR (docs/methods/gsp.md)."""

    pooling: Component = Field(default_factory=lambda: Component(name="gsp"))
    head: Component = Field(
        default_factory=lambda: Component(name="linear", args={"bias": False})
    )
    loss: Component = Field(
        default_factory=lambda: Component(
            name="contrastive_c1", args={"margin": 0.5, "eps": 1e-5}
        )
    )
    #: the 1×1 head W: Keras glorot uniform as the official layer (DEFAULT);
    #: ``default`` keeps PyTorch's Linear initialisation (about 2× smaller)
    head_init: Literal["default", "glorot_uniform"] = "glorot_uniform"
    xbm: XbmConfig = Field(default_factory=XbmConfig)
    zsr: GspZsrConfig = Field(default_factory=GspZsrConfig)

    @model_validator(mode="after")
    def _consistent(self):
        check_head_init(self)
        gsp = self.pooling.name == "gsp"
        if gsp:
            check_pooling_args(self.pooling.args, self.embedding_dim)
        if gsp and self.pooling.args.get("init") == "classifier_kcenter":
            raise ValueError(
                "pooling.args.init: classifier_kcenter needs a classifier, which "
                "the gsp method has not (use memory_kcenter or none here, or the "
                "intra_batch method)"
            )
        self.zsr.check_pooling(self.pooling.name)
        if self.xbm.enabled and self.loss.name not in PAIR_LOSSES:
            raise ValueError(
                f"xbm.enabled: the memory takes a pair loss "
                f"({', '.join(PAIR_LOSSES)}), got {self.loss.name!r}"
            )
        return self
