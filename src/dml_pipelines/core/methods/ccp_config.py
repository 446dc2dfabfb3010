"""Config of ``ccp``, DML with chance constraints (torch-free; registered for the
Kedro wiring). The defaults are the official code's (docs/methods/ccp.md lists
them), with the current epoch's validation value (no monitor lag); the embedded
default block in ``parameters_ccp.yml`` shortens the instance patience."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dml_pipelines.core.config import MethodConfig, TrainingConfig
from dml_pipelines.core.methods.configs import register_config

#: the pair losses CCP turns into multi-proxy problems (§3.3)
CCP_BASE_LOSSES = ("contrastive_c1", "contrastive_c2", "multi_similarity", "triplet")


class CcpTrainingConfig(TrainingConfig):
    """``training`` with the checkpoint selected on held-out training classes by
    default: the outer loop needs a validation value every epoch."""

    checkpoint_selection: Literal["last", "validation", "test_recall_at_1"] = (
        "validation"
    )


@register_config("ccp")
class CcpConfig(MethodConfig):
    """CCP: a multi-proxy pair loss, the projection regulariser λ(θ − θ̄) and the
    alternating-projection outer loop with greedy k-center proxy re-selection.

    ``base_loss`` names the pair loss; ``loss_args`` holds the margins of any of
    the four losses (a dataset recipe holds its whole table row, so switching
    ``base_loss`` keeps that dataset's values); the distance follows
    ``normalization``: ``lipschitz`` -> clip to the unit ball, ``l2`` -> unit
    vectors. ``monitor`` is the epoch metric driving the instances (maximised).
    """

    normalization: Literal["lipschitz", "l2"] = "lipschitz"
    head_init: Literal["default", "glorot_uniform"] = "default"
    base_loss: Literal[CCP_BASE_LOSSES] = "contrastive_c2"
    loss_args: dict[str, dict[str, Any]] = Field(default_factory=dict)
    proxies_per_class: int = Field(8, gt=0)
    pool_per_class: int = Field(12, gt=0)
    pool_batch_size: int = Field(128, gt=0)
    pool_augmentation: Literal["train", "test"] = "train"
    proxy_loss_weight: float = Field(1.0, ge=0)
    batch_loss_weight: float = Field(0.1, ge=0)
    reg_lambda: float = Field(2.0e-4, ge=0)
    reg_lambda_decay: float = Field(1.0, gt=0)
    instance_patience: int = Field(3, gt=0)
    instance_min_delta: float = Field(1.0e-5, ge=0)
    instance_min_epochs: int = Field(1, gt=0)
    monitor: str = "val/map@r"
    monitor_lag_epochs: int = Field(0, ge=0)
    reset_proxy_optimizer_state: bool = False
    training: CcpTrainingConfig = Field(default_factory=CcpTrainingConfig)

    @field_validator("loss_args")
    @classmethod
    def _known_losses(cls, value: dict[str, dict[str, Any]]):
        unknown = sorted(set(value) - set(CCP_BASE_LOSSES))
        if unknown:
            valid = ", ".join(CCP_BASE_LOSSES)
            raise ValueError(f"{unknown} are not CCP pair losses; valid: {valid}")
        for name, args in value.items():
            if "distance" in args:
                raise ValueError(f"{name}.distance is set by normalization; remove it")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.proxy_loss_weight == 0 and self.batch_loss_weight == 0:
            raise ValueError(
                "proxy_loss_weight and batch_loss_weight: at least one must be > 0"
            )
        if (
            self.monitor.startswith("val/")
            and self.training.checkpoint_selection == "last"
        ):
            raise ValueError(
                f"monitor: {self.monitor!r} needs a validation split; set "
                "training.checkpoint_selection: validation (or a non-val monitor)"
            )
        from dml_pipelines.core.losses import load_all
        from dml_pipelines.core.registry import check_args

        for name, args in self.loss_args.items():
            skip = ("embedding_size", "num_classes")
            check_args(load_all().get(name), args, f"loss_args.{name}", skip)
        return self
