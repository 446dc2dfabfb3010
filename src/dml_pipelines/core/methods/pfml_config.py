"""Config of ``pfml`` (torch-free; registered for the Kedro wiring).

Potential-field DML (docs/methods/pfml.md): every key below is validated before
any work; errors are one line naming ``pfml.<key>`` and the value. ``alpha`` is
the paper's decay exponent of the force (docs/methods/pfml.md, "The exponent
convention"): α = 0 is a constant force and trains.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.methods.configs import register_config
from dml_pipelines.core.schema import StrictModel

ALPHA_HELP = (
    "α is the decay exponent of the force d^(−α) (0: a constant force); a "
    "negative α would make the force grow with distance"
)


class CPMLConfig(StrictModel):
    """Non-decaying variant (§5): ``repulsion: pfml`` keeps PFML's repulsion
    (DEFAULT), ``hinge`` uses max(δ − d, 0)."""

    repulsion: Literal["pfml", "hinge"] = "pfml"


@register_config("pfml")
class PFMLConfig(MethodConfig):
    """Potential-field DML: decaying attraction/repulsion potentials of batch
    embeddings and M proxies per class; loss = total potential energy.

    ``delta_att`` / ``delta_rep`` default to ``delta`` (``None``); the resolved
    radii are ``radius_att`` / ``radius_rep``."""

    normalization: Literal["l2"] = "l2"
    variant: Literal["pfml", "cpml"] = "pfml"
    cpml: CPMLConfig = Field(default_factory=CPMLConfig)
    alpha: float = 4.0
    delta: float = Field(0.2, gt=0)
    delta_att: float | None = Field(None, gt=0)
    delta_rep: float | None = Field(None, gt=0)
    min_distance: float = 1e-4
    proxies_per_class: int = Field(15, ge=0)
    proxy_proxy: Literal["batch_classes", "all", "none"] = "batch_classes"
    reduction: Literal["per_batch_sample", "sum"] = "per_batch_sample"
    normalize_proxies: bool = True
    proxy_init: Literal["kaiming_normal", "normal"] = "kaiming_normal"
    proxy_lr_multiplier: float = Field(100.0, ge=0)
    collapse_check: bool = True

    @field_validator("alpha")
    @classmethod
    def _alpha_non_negative(cls, value: float) -> float:
        if not value >= 0:
            raise ValueError(f"must be >= 0: {ALPHA_HELP}")
        return value

    @field_validator("min_distance")
    @classmethod
    def _min_distance(cls, value: float, info: ValidationInfo) -> float:
        d = info.data
        radii = [d.get("delta"), d.get("delta_att"), d.get("delta_rep")]
        radii = [r for r in radii if r is not None]
        if not radii:  # a radius failed its own check (reported there)
            return value
        top = min(radii) / 10
        if not 0 < value <= top:
            raise ValueError(f"must be in (0, δ_min / 10 = {top:g}]")
        return value

    @property
    def radius_att(self) -> float:
        """δ_att (``delta_att``, else ``delta``)."""
        return self.delta if self.delta_att is None else self.delta_att

    @property
    def radius_rep(self) -> float:
        """δ_rep (``delta_rep``, else ``delta``)."""
        return self.delta if self.delta_rep is None else self.delta_rep

    @model_validator(mode="after")
    def _own_proxy_lr(self):
        mult = self.optimizer.loss_lr_mult
        if mult != 1.0:
            raise ValueError(
                "optimizer.loss_lr_mult: pfml sets the proxies' lr with "
                f"proxy_lr_multiplier; leave it at 1 (got {mult})"
            )
        return self
