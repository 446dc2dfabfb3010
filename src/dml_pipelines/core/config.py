"""Typed configuration (pydantic v2). Unknown keys are errors everywhere.

These models are torch-free so that Kedro can validate node parameters before any
node runs without importing torch. Errors are condensed to one line naming the key
(``contrastive_c1.sampler.P: Input should be greater than 0 (got 0)``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dml_pipelines.core.components import check_components, check_transforms
from dml_pipelines.core.data.sizes import SourceSize, check_size
from dml_pipelines.core.layers import deep_merge
from dml_pipelines.core.normalization import NormalizationName
from dml_pipelines.core.schema import StrictModel


class Component(StrictModel):
    """A registered component: ``{name: <registry name>, args: {...}}``."""

    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class BackboneConfig(StrictModel):
    name: str = "small_cnn"
    args: dict[str, Any] = Field(default_factory=dict)
    pretrained: bool = False
    freeze_bn: bool = False


class OptimizerConfig(StrictModel):
    """``name`` in adam, adamw, radam, sgd, rmsprop; ``lr`` is the base learning
    rate; ``*_lr_mult`` scale it per parameter group (proxies: ``loss_lr_mult``).

    ``grad_transforms`` run in list order on the (unscaled) gradients between
    backward and the step: ``coupled_weight_decay`` {weight_decay, groups},
    ``clip_norm`` {max_norm}, ``clip_value`` {clip_value}. ``grad_clip_norm: x``
    is shorthand for a final ``{name: clip_norm, args: {max_norm: x}}``."""

    name: str = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    args: dict[str, Any] = Field(default_factory=dict)
    backbone_lr_mult: float = Field(1.0, ge=0)
    head_lr_mult: float = Field(1.0, ge=0)
    loss_lr_mult: float = Field(1.0, ge=0)
    grad_clip_norm: float | None = Field(None, gt=0)
    grad_transforms: list[Component] = Field(default_factory=list)


class RandomFactorisation(StrictModel):
    batch_size: int = Field(gt=0)
    P_choices: list[int] = Field(min_length=1)

    @model_validator(mode="after")
    def _divides(self):
        bad = [p for p in self.P_choices if p <= 0 or self.batch_size % p]
        if bad:
            raise ValueError(f"P_choices {bad} do not divide batch_size")
        return self


class SamplerConfig(StrictModel):
    P: int = Field(16, gt=0)
    K: int = Field(4, gt=0)
    allow_repeated_classes: bool = False
    random_factorisation: RandomFactorisation | None = None
    order: Literal["grouped", "interleaved"] = "grouped"
    batches_per_epoch: int | None = Field(None, gt=0)


class TransformsConfig(StrictModel):
    """``preset`` (core/data/transforms.py), its output ``image_size`` and std.

    ``source_size`` is the prepared cache the transforms crop from (what the
    preset assumes it receives): ``dataset`` (DEFAULT: the dataset's own cache,
    ``datasets.<name>.resize_shorter``), an int N (the cache whose shorter side
    is N, e.g. 256 for "resize 256, crop 224") or ``original`` (the cache at the
    native size, for presets that crop from the original image). Training and
    embedding open exactly that cache, and fail in one line when it has not been
    built (``kedro run --pipelines=data --params dataset=<name>,cache_size=<size>``).
    """

    preset: str = "small"
    image_size: int | None = Field(None, gt=0)
    normalize_std: list[float] | None = None
    source_size: SourceSize = "dataset"
    #: overrides of the preset's fields (augmentation strength and the like:
    #: ``degrees``, ``translate``, ``affine_scale``, ``flip_p``, ``scale``,
    #: ``erasing_p``, ...; the valid names are the ``Transforms`` fields)
    args: dict[str, Any] = Field(default_factory=dict)

    _size = field_validator("source_size", mode="before")(check_size)

    @model_validator(mode="after")
    def _check_args(self):
        check_transforms(self)
        return self


class EarlyStoppingConfig(StrictModel):
    """Stop when the selection metric has not improved by more than
    ``min_delta`` for ``patience`` epochs; ``restore_best`` loads the best
    weights at the end. ``metric`` defaults to ``training.validation_metric``."""

    metric: str | None = None
    mode: Literal["max", "min"] | None = None
    patience: int = Field(5, gt=0)
    min_delta: float = Field(0.0, ge=0)
    restore_best: bool = True


class TrainingConfig(StrictModel):
    """Loop settings. ``validation_metric``/``selection_mode`` choose the
    checkpoint (any key of the validation dict: ``map@r``, ``recall@1``,
    ``r_precision``); ``validation_fold`` is the MLRC class block held out when
    ``checkpoint_selection: validation`` (the run axis ``run.fold`` sets it);
    ``init_from`` warm-starts from a checkpoint or a torchvision weights file;
    ``label_noise`` reassigns that fraction of the training labels to another
    class drawn uniformly (fixed by the seed; the noisy-label experiments);
    ``amp``: ``true``/``fp16`` = float16 autocast with loss scaling on CUDA (off
    on a CPU), ``bf16`` = bfloat16 autocast without scaling (CUDA or CPU),
    ``false`` = float32; ``channels_last``: NHWC memory layout for the backbone
    (``auto``: on CUDA only);
    ``num_workers``: loader processes; ``auto`` = none on a CPU device (the
    workers would compete with the compute threads), otherwise
    min(8, CPU cores // devices − 1);
    ``augment_on``: where the training images are resized and flipped:
    ``loader`` (the loader processes), ``device`` (the loader only cuts the crop
    box; the training device interpolates the batch), ``auto`` = ``device`` on
    CUDA, ``loader`` on a CPU (same parameters for the same seed either way);
    ``num_threads``: compute threads of the training process (``None``: its
    share of the cores minus one per loader process; faiss gets the same count,
    ``core/engine/threads.py``);
    ``devices: N`` trains in N processes (one per GPU, or gloo on CPU) on shards
    of the same global batch, with BatchNorm over the global batch (``sync_bn``)."""

    epochs: int = Field(20, ge=0)
    warmup_epochs: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool | Literal["bf16", "fp16"] = True
    channels_last: bool | Literal["auto"] = "auto"
    seed: int = 0
    num_workers: int | Literal["auto"] = "auto"
    augment_on: Literal["auto", "loader", "device"] = "auto"
    num_threads: int | None = Field(None, gt=0)
    eval_batch_size: int = Field(256, gt=0)
    checkpoint_selection: Literal["last", "validation", "test_recall_at_1"] = "last"
    validation_metric: Literal["map@r", "recall@1", "r_precision"] = "map@r"
    selection_mode: Literal["max", "min"] = "max"
    validation_fold: int = Field(3, ge=0)
    folds: int = Field(4, ge=2)
    scheduler: Component | None = None
    early_stopping: EarlyStoppingConfig | None = None
    init_from: str | None = None
    label_noise: float = Field(0.0, ge=0, lt=1)
    devices: int = Field(1, ge=1)
    sync_bn: bool = True

    @field_validator("num_workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 0:
            raise ValueError("must be >= 0 or auto")
        return value

    @model_validator(mode="after")
    def _warmup(self):
        if self.warmup_epochs > self.epochs:
            raise ValueError("warmup_epochs must not exceed epochs")
        if self.validation_fold >= self.folds:
            raise ValueError(
                f"validation_fold {self.validation_fold} must be < folds {self.folds}"
            )
        return self


class MethodConfig(StrictModel):
    """Shared block of every method/baseline (``conf/base/parameters_<method>.yml``).

    ``recipes`` holds per-dataset settings deep-merged over the block. ``recipe``
    picks one: ``auto`` (DEFAULT) uses the recipe named after the run's dataset
    when there is one (``for_dataset``), ``default`` none, any other name that
    recipe. Every recipe is validated over the block as written, before any
    work; a block with a recipe applied names it and empties its entry
    (``recipes.<name>: {}``; the other recipes stay). Under Kedro the project's
    config loader layers block < recipe < conf/local < ``--params``
    (``core/layers.py``).
    """

    method: str
    recipe: str = "auto"
    recipes: dict[str, dict[str, Any]] = Field(default_factory=dict)
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    pooling: Component = Field(default_factory=lambda: Component(name="gap"))
    head: Component = Field(default_factory=lambda: Component(name="linear"))
    #: at most 65,536: a larger head would not fit in memory on most machines
    #: (checked here, before anything is allocated)
    embedding_dim: int = Field(64, gt=0, le=1 << 16)
    #: a name of the registry ``core/normalization.py`` (l2, lipschitz, none)
    normalization: NormalizationName = "l2"
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    transforms: TransformsConfig = Field(default_factory=TransformsConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @model_validator(mode="before")
    @classmethod
    def _apply_recipe(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        recipe = data.get("recipe", "auto")
        recipes = data.get("recipes") or {}
        if recipe in ("auto", "default") or not isinstance(recipes, dict):
            return data
        if recipe not in recipes:
            valid = ", ".join(["auto", "default", *sorted(recipes)])
            raise ValueError(f"recipe {recipe!r} is unknown; valid: {valid}")
        if recipes[recipe] == {}:
            return data  # a resolved block: its recipe's values are in it
        # the block as written, and every recipe over it (not over this recipe's
        # merge, which ``_check_recipes`` then skips)
        try:
            cls.model_validate({**data, "recipe": "default"})
        except ValueError as exc:
            prefix = f"{cls._error_key(data)}: "
            raise ValueError(str(exc).removeprefix(prefix)) from None
        # the resolved block names the recipe it applied and keeps its entry
        # empty (its values are in the block): re-validating it (``RunParams.apply``,
        # a checkpoint's config) is a fixed point and never re-applies the recipe
        # over what conf/local or the command line set (``core/layers.py``)
        over = recipes[recipe]
        if not isinstance(over, dict):
            return data
        return {**deep_merge(data, over), "recipes": {**recipes, recipe: {}}}

    def for_dataset(self, dataset: str) -> MethodConfig:
        """The block a run on ``dataset`` uses: with ``recipe: auto``, the recipe
        named after the dataset when the method has one; otherwise unchanged."""
        if self.recipe != "auto" or dataset not in self.recipes:
            return self
        raw = self.model_dump(mode="json")
        return type(self).model_validate({**raw, "recipe": dataset})

    @model_validator(mode="after")
    def _check_components(self):
        check_components(self)
        return self

    @model_validator(mode="after")
    def _check_recipes(self):
        # every recipe must make a valid block over the block as written (checked
        # after the block itself); with a recipe applied, ``_apply_recipe`` did
        if self.recipe not in ("auto", "default"):
            return self
        base = self.model_dump(mode="json")
        for name, over in self.recipes.items():
            if name in ("auto", "default"):
                raise ValueError(f"recipes: {name!r} is a reserved name")
            merged = deep_merge(base, over)
            try:
                type(self).model_validate(
                    {**merged, "recipe": "default", "recipes": {}}
                )
            except ValueError as exc:
                raise ValueError(f"recipes.{name}: {exc}") from None
        return self

    @classmethod
    def _error_key(cls, obj: Any) -> str:
        # errors name the method block: ``contrastive_c1.sampler.P: ...``
        return str(obj.get("method", cls.__name__)) if isinstance(obj, dict) else ""


class BaselineConfig(MethodConfig):
    """A plain metric-learning loss on the embedder (``docs/baselines.md``)."""

    loss: Component


def check_head_init(cfg: MethodConfig) -> None:
    """A method's ``head_init`` other than ``default`` needs a ``linear`` head
    (one-line ``ValueError`` naming both keys otherwise)."""
    init = getattr(cfg, "head_init", "default")
    if init != "default" and cfg.head.name != "linear":
        raise ValueError(
            f"head_init: {init!r} needs head.name 'linear' (got {cfg.head.name!r})"
        )
