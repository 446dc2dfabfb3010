"""Config of ``xbn`` (torch-free; docs/methods/xbn.md): cross-batch memory
(``xbm.*``), Cross Batch Normalization of the memory (``xbn.*``) and its
Kalman-filtered targets (``xbn.adaptive``, ``xbn.kalman.*``).

The four variants of the spec's protocol (Part D)::

    no memory          xbm.enabled: false  (xbn.enabled: false)
    XBM                xbm.enabled: true,  xbn.enabled: false
    XBM + XBN          xbn.enabled: true,  xbn.adaptive: false   (DEFAULT)
    XBM + Adaptive XBN xbn.enabled: true,  xbn.adaptive: true
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from dml_pipelines.core.config import Component, MethodConfig, check_head_init
from dml_pipelines.core.methods.configs import register_config
from dml_pipelines.core.schema import StrictModel

#: losses under the pair-loss contract (they accept memory references)
PAIR_LOSSES = ("contrastive_c1", "contrastive_c2", "triplet", "multi_similarity")


class XbmConfig(StrictModel):
    """Cross-batch memory: ``memory_size`` entries, active from 0-based step
    ``start_iteration`` on (the official code's iteration t > START_ITERATION
    with t 1-based), memory term weighted by ``weight``."""

    enabled: bool = True
    memory_size: int = Field(8192, gt=0)
    start_iteration: int = Field(1000, ge=0)
    weight: float = Field(1.0, ge=0)


class KalmanConfig(StrictModel):
    """Process noise Q: ``relative`` q · median_d(R) (DEFAULT q = 1),
    ``absolute`` q, ``innovation`` (EMA factor ``innovation_ema``; q unused).
    Observation noise R from the batch variance (``noise: observation``, the
    spec) or from the prior variance estimate (``estimate``, unbiased at Q = 0;
    see ``core/models/xbn_kalman.py``)."""

    q: float = Field(1.0, ge=0)
    q_mode: Literal["relative", "absolute", "innovation"] = "relative"
    innovation_ema: float = Field(0.9, ge=0, lt=1)
    noise: Literal["observation", "estimate"] = "observation"


class XbnNormConfig(StrictModel):
    """Moment matching of the memory to the current batch (Part B defaults).
    ``min_items`` (None: the batch size) is the memory fill XBN waits for;
    ``shrinkage`` only applies to ``covariance: full``."""

    enabled: bool = True
    adaptive: bool = False
    renormalize: bool = True
    order: Literal["before_enqueue", "after_enqueue"] = "before_enqueue"
    unbiased_std: bool = False
    eps: float = Field(1e-5, ge=0)
    min_items: int | None = Field(None, ge=2)
    covariance: Literal["diagonal", "full"] = "diagonal"
    shrinkage: float = Field(0.1, ge=0, le=1)
    kalman: KalmanConfig = Field(default_factory=KalmanConfig)


@register_config("xbn")
class XbnConfig(MethodConfig):
    """XBM + (Adaptive) XBN on a pair loss (``loss``, DEFAULT C1, λ = 0.5).
    ``head_init: kaiming_fan_out`` initialises the linear head as the official
    XBM code (Kaiming normal, fan_out, bias 0)."""

    normalization: Literal["l2"] = "l2"
    loss: Component = Field(
        default_factory=lambda: Component(name="contrastive_c1", args={"margin": 0.5})
    )
    head_init: Literal["default", "kaiming_fan_out"] = "default"
    xbm: XbmConfig = Field(default_factory=XbmConfig)
    xbn: XbnNormConfig = Field(default_factory=XbnNormConfig)

    def batch_size(self) -> int:
        """Rows per training batch (P·K or the random factorisation's size)."""
        rf = self.sampler.random_factorisation
        return rf.batch_size if rf is not None else self.sampler.P * self.sampler.K

    @model_validator(mode="after")
    def _consistent(self):
        if self.loss.name not in PAIR_LOSSES:
            raise ValueError(
                f"loss.name: {self.loss.name!r} takes no memory references; "
                f"valid: {', '.join(PAIR_LOSSES)}"
            )
        check_head_init(self)
        x = self.xbn
        if x.enabled and not self.xbm.enabled:
            raise ValueError("xbn.enabled: XBN acts on the memory; set xbm.enabled")
        if x.enabled and x.adaptive and x.covariance == "full":
            raise ValueError(
                "xbn.adaptive: the Kalman targets are per dimension; "
                "use xbn.covariance: diagonal"
            )
        need = x.min_items or self.batch_size()
        if x.enabled and self.xbm.memory_size < need:
            raise ValueError(
                f"xbm.memory_size: {self.xbm.memory_size} is below the "
                f"{need} items XBN waits for (xbn.min_items or the batch size)"
            )
        return self
