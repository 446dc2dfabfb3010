"""Typed configuration (pydantic v2). Unknown keys are errors everywhere.

These models are torch-free so that Kedro can validate node parameters before any
node runs without importing torch. Errors are condensed to one line naming the key
(``contrastive_c1.sampler.P: Input should be greater than 0 (got 0)``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    field_validator,
    model_validator,
)

from dml_pipelines.core.layers import deep_merge, flatten
from dml_pipelines.core.registry import value_problem


def _one_line(prefix: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = err.get("input")
        if err["type"] not in ("extra_forbidden", "missing") and not isinstance(
            got, dict
        ):
            msg += f" (got {got!r})"
        parts.append(f"{key}: {msg}")
    return "; ".join(parts)


class OneLineErrors:
    """Mixin for pydantic models: ``model_validate`` (what Kedro calls) raises a
    one-line ``ValueError`` naming ``<error_key(obj)>.<field>`` and the problem."""

    error_key: ClassVar[str] = ""

    @classmethod
    def _error_key(cls, obj: Any) -> str:
        return cls.error_key

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any):  # noqa: D102
        try:
            return super().model_validate(obj, *args, **kwargs)
        except ValidationError as exc:
            raise ValueError(_one_line(cls._error_key(obj), exc)) from None


class StrictModel(OneLineErrors, BaseModel):
    """Base: unknown keys forbidden; one-line validation errors."""

    model_config = ConfigDict(
        extra="forbid", validate_default=True, allow_inf_nan=False
    )


EMBEDDED_DATASETS = ("digits", "glyphs", "glyphs_tune")
DATASETS = (
    "digits",
    "glyphs",
    "glyphs_tune",
    "cub200",
    "cars196",
    "sop",
    "inshop",
    "csv",
)


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


SourceSize = int | Literal["dataset", "original"]
"""A cache size: ``dataset`` (the dataset's own, ``datasets.<name>.resize_shorter``),
a shorter side in pixels, or ``original`` (the native size)."""


def _check_size(value: Any) -> Any:
    if value in ("dataset", "original"):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ValueError("must be dataset, original or a positive int (pixels)")


def source_size(size: SourceSize, dataset_size: int | None) -> int | None:
    """The shorter side a ``SourceSize`` stands for (``None``: the original
    size), given the dataset's own ``dataset_size``."""
    if size == "dataset":
        return dataset_size
    return None if size == "original" else int(size)


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

    _size = field_validator("source_size", mode="before")(_check_size)

    @model_validator(mode="after")
    def _check_args(self):
        # unknown field names and bad values fail here, in one line, not in training
        from dml_pipelines.core.data.transforms import build_transforms

        try:
            base = build_transforms(self.preset)
            build_transforms(
                self.preset,
                image_size=self.image_size,
                normalize_std=self.normalize_std,
                **self.args,
            )
        except KeyError as exc:
            raise ValueError(f"preset: {exc.args[0]}") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"args: {exc}") from None
        for key, value in self.args.items():
            why = value_problem(getattr(base, key), value)
            if why:
                raise ValueError(f"args.{key}: {why} (got {value!r})")
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
    normalization: Literal["l2", "lipschitz", "none"] = "l2"
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
        # Registries live in torch modules: import lazily, only when validating.
        from dml_pipelines.core.methods.registry import check_components

        try:
            check_components(self)
        except KeyError as exc:  # unknown registry name: report as a value error
            raise ValueError(exc.args[0]) from None
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


#: settings of a method block that cannot change a result (how fast, how
#: verbose): left out of a run's identity, so changing them neither discards a
#: checkpoint nor relabels a result (docs/protocols.md, "What identifies a run")
NON_IDENTITY_KEYS = ("training.num_threads", "training.num_workers")


def run_identity(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config (``model_dump(mode="json")``) without ``NON_IDENTITY_KEYS``
    and without ``recipes`` (the applied recipe's values are in the block and its
    name in ``recipe``; the other datasets' recipes do not change this run)."""
    out = {
        k: dict(v) if isinstance(v, dict) else v
        for k, v in config.items()
        if k != "recipes"
    }
    for key in NON_IDENTITY_KEYS:
        block, _, leaf = key.partition(".")
        if isinstance(out.get(block), dict):
            out[block].pop(leaf, None)
    return out


def config_hash(config: dict[str, Any], *extra: str, length: int = 12) -> str:
    """The one hash of a resolved config's identity (``run_identity``), with
    ``extra`` strings (data fingerprint, code digest) appended: sha256, hex."""
    import hashlib
    import json

    text = json.dumps(run_identity(config), sort_keys=True, default=str)
    return hashlib.sha256("|".join((text, *extra)).encode()).hexdigest()[:length]


def identity_differences(
    trained: dict[str, Any], current: dict[str, Any], limit: int = 3
) -> list[str]:
    """Dotted keys whose values differ between two resolved configs' identities,
    as ``key: <current> now, <trained> trained`` (at most ``limit``, then a count)."""
    a, b = flatten(run_identity(trained)), flatten(run_identity(current))
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    out = [f"{k}: {b.get(k)!r} now, {a.get(k)!r} trained" for k in keys[:limit]]
    return out + ([f"+{len(keys) - limit} more"] if len(keys) > limit else [])


# --- project-wide parameters (parameters.yml) ----------------------------------


class DatasetEntry(StrictModel):
    """One dataset's block of ``datasets`` (parameters.yml): where it lives and how
    it is ingested, prepared and scored."""

    root: str
    options: dict[str, Any] = Field(default_factory=dict)
    expected_counts: dict[str, int] | Literal["default"] | None = "default"
    on_missing: Literal["raise", "skip"] = "raise"
    on_error: Literal["raise", "skip"] = "raise"
    resize_shorter: int | None = Field(None, gt=0)
    use_bbox: bool = False
    recall_at: list[int] = Field(default_factory=lambda: [1, 2, 4, 8])


class DatasetTable(OneLineErrors, RootModel[dict[str, DatasetEntry]]):
    """``datasets``: dataset name -> ``DatasetEntry``."""

    error_key: ClassVar[str] = "datasets"

    def entry(self, name: str) -> DatasetEntry:
        """The block of dataset ``name``; one-line error if it has none."""
        if name not in self.root:
            valid = ", ".join(sorted(self.root))
            raise ValueError(
                f"datasets.{name}: no block for this dataset; valid: {valid}"
            )
        return self.root[name]


class DataParams(StrictModel):
    """The run's dataset (``--params dataset=<name>``), its cache folder and the
    extra cache size the ``data`` pipeline builds.

    ``cache_dir`` holds one cache per size (``cache_r256/``, ``cache_original/``);
    the ``data`` pipeline builds the dataset's own size
    (``datasets.<name>.resize_shorter``) and, when ``cache_size``
    (``--params cache_size=original`` or ``=<N>``) names another one, that size
    too; ``dataset`` (DEFAULT) adds none."""

    error_key: ClassVar[str] = "data"

    name: str
    cache_dir: str
    cache_size: SourceSize = "dataset"

    _size = field_validator("cache_size", mode="before")(_check_size)

    @model_validator(mode="after")
    def _known(self):
        if self.name not in DATASETS:
            raise ValueError(
                f"dataset {self.name!r} is unknown; valid: {', '.join(DATASETS)}"
            )
        return self


class DataSpec(DatasetEntry):
    """The resolved dataset of a run: its ``DatasetEntry`` plus name and cache."""

    name: str
    cache_dir: str
    cache_size: SourceSize = "dataset"

    @property
    def cache_sizes(self) -> list[int | None]:
        """The sizes the ``data`` pipeline builds: the dataset's own first, then
        ``cache_size`` when it names another one."""
        extra = source_size(self.cache_size, self.resize_shorter)
        return list(dict.fromkeys([self.resize_shorter, extra]))


def resolve_dataset(data: DataParams, table: DatasetTable) -> DataSpec:
    """The run's ``DataSpec``; one-line errors for a dataset without a block in
    ``datasets`` or a benchmark dataset whose root does not exist."""
    from pathlib import Path

    entry = table.entry(data.name)
    if data.name not in EMBEDDED_DATASETS and not Path(entry.root).exists():
        raise ValueError(
            f"data root {entry.root} for dataset {data.name!r} does not exist "
            f"(set datasets.{data.name}.root in conf/local/parameters.yml)"
        )
    return DataSpec(
        name=data.name,
        cache_dir=data.cache_dir,
        cache_size=data.cache_size,
        **entry.model_dump(),
    )


class EvaluationParams(StrictModel):
    """The ``evaluation`` block (parameters.yml; docs/protocols.md): retrieval
    and clustering options. Errors name ``evaluation.<key>``, as do those of
    ``core.evaluation.protocols.resolve_options`` (the same keys, for callers
    of the core without Kedro)."""

    error_key: ClassVar[str] = "evaluation"

    lone_queries: Literal["drop", "miss"] = "drop"
    knn_backend: Literal["auto", "faiss", "torch", "bf16"] = "auto"
    knn_chunk_size: int = Field(4096, gt=0)
    knn_k: int | None = Field(None, gt=0)
    deep_recall: Literal["count", "search"] = "count"
    avg_of_avgs: bool = False
    clustering: bool = True
    clustering_backend: Literal["faiss", "sklearn"] = "faiss"
    inshop_set: Literal["union", "query"] = "union"
    seed: int = 0


class PathsParams(StrictModel):
    models: str = "data/06_models"


class RunParams(StrictModel):
    """The run axes (``--params run.seed=1,run.fold=0``): the training seed and,
    under MLRC, the held-out class block (``None``: conventional protocol, all
    training classes). Every artifact path carries ``seed<S>[/fold<F>]``."""

    error_key: ClassVar[str] = "run"

    seed: int = 0
    fold: int | None = Field(None, ge=0)

    @property
    def directory(self) -> str:
        """``seed<S>`` or ``seed<S>/fold<F>``."""
        return run_directory(self.seed, self.fold)

    def apply(self, cfg: MethodConfig) -> MethodConfig:
        """``cfg`` with ``training.seed`` = ``seed``; under a fold, checkpoint
        selection on the held-out block ``fold`` (MLRC)."""
        training: dict[str, Any] = {"seed": self.seed}
        if self.fold is not None:
            if self.fold >= cfg.training.folds:
                raise ValueError(
                    f"run.fold: {self.fold} must be < training.folds "
                    f"{cfg.training.folds}"
                )
            training.update(
                checkpoint_selection="validation", validation_fold=self.fold
            )
        raw = cfg.model_dump(mode="json")
        raw["training"].update(training)
        return type(cfg).model_validate(raw)


def run_directory(seed: Any, fold: Any = None) -> str:
    """The run folder ``seed<S>`` or ``seed<S>/fold<F>`` (``fold`` None, ``null``
    or empty: no fold level). Also the catalog's ``run_dir`` resolver."""

    def number(value: Any, key: str) -> int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: must be an integer (got {value!r})") from None

    if fold is None or str(fold).lower() in ("", "none", "null"):
        return f"seed{number(seed, 'run.seed')}"
    return f"seed{number(seed, 'run.seed')}/fold{number(fold, 'run.fold')}"


def parse_method_config(raw: dict[str, Any]) -> MethodConfig:
    """Validate a method block with the config model registered for its
    ``method`` (``core/methods/<name>_config.py``)."""
    from dml_pipelines.core.methods.configs import config_for

    name = raw.get("method") if isinstance(raw, dict) else None
    return config_for(name).model_validate(raw)


def protocol_card(cfg: MethodConfig, cache_manifest: dict[str, Any]) -> dict[str, Any]:
    """The facts logged with every run (its protocol card): backbone, BN
    frozen or not, pooling, image preparation and augmentation, embedding dim,
    batch composition, selection split, budget.

    ``cache_manifest`` describes the cache the run trained on: its
    ``resize_shorter`` is the card's ``cache_resize_shorter`` (``original`` for
    the native size); ``source_size`` is what the config asked for."""
    s, t = cfg.sampler, cfg.training
    rf = s.random_factorisation
    batch = (
        f"{s.P} classes x {s.K} samples"
        if rf is None
        else f"{rf.batch_size} = P x K, P drawn per epoch from {rf.P_choices}"
    )
    return {
        "backbone": cfg.backbone.name,
        "pretrained": cfg.backbone.pretrained,
        "freeze_bn": cfg.backbone.freeze_bn,
        "pooling": cfg.pooling.name,
        "embedding_dim": cfg.embedding_dim,
        "cache_resize_shorter": (
            cache_manifest.get("resize_shorter") or "original"
            if "resize_shorter" in cache_manifest
            else None
        ),
        "source_size": cfg.transforms.source_size,
        "use_bbox": cache_manifest.get("use_bbox", False),
        "transforms": cfg.transforms.preset,
        "batch": batch,
        "sampler_order": s.order,
        "repeated_classes": s.allow_repeated_classes,
        "optimizer": f"{cfg.optimizer.name} lr {cfg.optimizer.lr:g}",
        "epochs": t.epochs,
        "warmup_epochs": t.warmup_epochs,
        "checkpoint_selection": t.checkpoint_selection,
        "selection_metric": None
        if t.checkpoint_selection == "last"
        else f"{t.validation_metric} ({t.selection_mode})",
        "selected_on": {
            "last": "last epoch",
            "validation": f"held-out training classes (fold_block {t.validation_fold})",
            "test_recall_at_1": "the test split (optimistic)",
        }[t.checkpoint_selection],
        "seed": t.seed,
    }
