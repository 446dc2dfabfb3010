"""Config of ``gsp`` (torch-free; registered for the Kedro wiring).

Generalized Sum Pooling (GSP) is the pooling ``{name: gsp, args: {...}}``; its
layer settings (``num_prototypes``, ``transport_ratio`` μ, ``entropy_weight`` γ,
``solver_iterations``, ``backward``, ``init``, ``init_memory_size``,
``operator``, ``augment_max_pool``) are ``pooling.args`` (``check_pooling_args``
is the one check, shared with the layer). The method adds the base loss
(``loss``), the cross-batch memory around it (``xbm``) and the zero-shot
regression loss (``zsr``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from dml_pipelines.core.config import Component, MethodConfig, check_head_init
from dml_pipelines.core.methods.configs import register_config
from dml_pipelines.core.schema import StrictModel

#: losses under the pair-loss contract (usable inside the cross-batch memory)
PAIR_LOSSES = ("contrastive_c1", "contrastive_c2", "triplet", "multi_similarity")
BACKWARDS = ("implicit", "unrolled")
#: ``classifier_kcenter`` needs a method with a classifier (``intra_batch``)
INITS = ("memory_kcenter", "classifier_kcenter", "none")
OPERATORS = ("weighted_avg", "weighted_max", "weighted_gem")


def check_pooling_args(args: dict[str, Any]) -> None:
    """One-line ``ValueError`` naming ``pooling.args.<key>`` for a bad GSP value
    (names are checked against the layer's signature by the registry)."""

    def bad(key: str, why: str) -> None:
        raise ValueError(f"pooling.args.{key}: {why} (got {args[key]!r})")

    ints = ("num_prototypes", "solver_iterations", "init_memory_size", "dim")
    for key in ints:
        if key in args and args[key] is not None:
            if not isinstance(args[key], int) or args[key] <= 0:
                bad(key, "must be a positive integer")
    if "init_delay_steps" in args and (
        not isinstance(args["init_delay_steps"], int) or args["init_delay_steps"] < 0
    ):
        bad("init_delay_steps", "must be an integer >= 0")
    if "transport_ratio" in args and not 0 < float(args["transport_ratio"]) <= 1:
        bad("transport_ratio", "must be in (0, 1]")
    if "entropy_weight" in args and float(args["entropy_weight"]) < 0:
        bad("entropy_weight", "must be >= 0")
    for key, valid in (("backward", BACKWARDS), ("init", INITS)):
        if key in args and args[key] not in valid:
            bad(key, f"valid: {', '.join(valid)}")
    if "operator" in args and args["operator"] not in OPERATORS:
        bad("operator", f"valid: {', '.join(OPERATORS)}")
    k = args.get("num_prototypes", 64)
    if args.get("init", "memory_kcenter") == "memory_kcenter":
        if args.get("init_memory_size", 1024) <= k:
            bad("init_memory_size", f"must exceed num_prototypes {k}")


class XbmConfig(StrictModel):
    """Cross-batch memory around the base pair loss (TF framework semantics):
    every training batch is enqueued; the memory term (batch vs memory, own copy
    excluded) is added with ``weight`` once ``start_step + memory_batches``
    batches have been enqueued (the current one included)."""

    enabled: bool = True
    memory_batches: int = Field(25, gt=0)
    start_step: int = Field(1000, ge=0)
    weight: float = Field(1.0, ge=0)


class ZsrConfig(StrictModel):
    """Zero-shot regression loss on the GSP attribute vectors
    (docs/methods/gsp.md#zero-shot-regression-zsr-loss): ``convex``: (1 − w)·L_DML +
    w·L_ZS (TF, DEFAULT); ``additive``: L + w·L_ZS. ``epsilon``: each sample scores
    −log(p + ε) (1e-16: the official code, DEFAULT; 0: the exact cross-entropy)."""

    enabled: bool = True
    weight: float = Field(0.1, ge=0, le=1)
    mix: Literal["convex", "additive"] = "convex"
    ridge: float = Field(0.05, gt=0)
    scale: float = Field(9.5, gt=0)
    epsilon: float = Field(1e-16, ge=0, lt=1)
    #: class-disjoint halves: ``alternate`` (classes in order of first
    #: appearance to A, B, A, …: the TF code's even/odd positions on its
    #: class-interleaved batches) or ``halves`` (first ⌈P/2⌉ classes: the
    #: PyTorch module's first/second half of a grouped batch)
    split: Literal["alternate", "halves"] = "halves"


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
            check_pooling_args(self.pooling.args)
            dim = self.pooling.args.get("dim")
            if dim is not None and dim != self.embedding_dim:
                raise ValueError(
                    f"pooling.args.dim: {dim} must equal embedding_dim "
                    f"{self.embedding_dim} (or be left out)"
                )
        if gsp and self.pooling.args.get("init") == "classifier_kcenter":
            raise ValueError(
                "pooling.args.init: classifier_kcenter needs a classifier, which "
                "the gsp method has not (use memory_kcenter or none here, or the "
                "intra_batch method)"
            )
        if self.zsr.enabled and not gsp:
            raise ValueError(
                f"zsr.enabled: the ZSR loss needs pooling.name: gsp "
                f"(got {self.pooling.name!r}); set zsr.enabled: false"
            )
        if self.xbm.enabled and self.loss.name not in PAIR_LOSSES:
            raise ValueError(
                f"xbm.enabled: the memory takes a pair loss "
                f"({', '.join(PAIR_LOSSES)}), got {self.loss.name!r}"
            )
        return self
