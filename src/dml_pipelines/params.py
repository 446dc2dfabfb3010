"""The project-wide parameters (``conf/base/parameters.yml``): the datasets
table, the run's dataset, the model folder and the run axes, and the protocol
card logged with every run. Project level: the Kedro nodes and hooks read these;
``core`` never imports them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, RootModel, field_validator, model_validator

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.data.index import EMBEDDED_DATASETS
from dml_pipelines.core.data.sizes import SourceSize, check_size, source_size
from dml_pipelines.core.schema import OneLineErrors, StrictModel

DATASETS = (
    *EMBEDDED_DATASETS,
    "cub200",
    "cars196",
    "sop",
    "inshop",
    "csv",
)


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

    _size = field_validator("cache_size", mode="before")(check_size)

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
