"""Training and embedding nodes: thin adapters over ``dml_pipelines.core.engine``.

The ``params`` argument of each node is re-annotated per method with that method's
config model (see ``pipelines.typing.typed``) so Kedro validates it before any
node runs. ``resolve`` gives the config a run uses (dataset recipe + run axes).
"""

from pathlib import Path
from typing import Any

import pandas as pd

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.params import DataParams, DatasetTable, PathsParams, RunParams
from dml_pipelines.pipelines.typing import resolve


def run_cache_size(image_cache: dict[str, Any], cfg: MethodConfig) -> int | None:
    """The cache size this run trains and embeds on: ``transforms.source_size``,
    where ``dataset`` is the size the dataset's cache was built with (the
    manifest's ``resize_shorter``); ``None``: the original size."""
    from dml_pipelines.core.data.sizes import source_size

    return source_size(cfg.transforms.source_size, image_cache.get("resize_shorter"))


def open_run_cache(
    image_cache: dict[str, Any],
    cfg: MethodConfig,
    data: DataParams,
    datasets: DatasetTable | None = None,
) -> Any:
    """Open the cache of the size the run's config asks for (``run_cache_size``)
    in ``data.cache_dir``; never one of another size.

    Raises:
        FileNotFoundError: that cache was not built; one line naming the config
            key, the size wanted, the sizes available and the command that
            builds it.
        ValueError: it was built from other source files than the dataset's
            latest ``data`` run, or ``datasets.<name>.resize_shorter`` changed
            since that run (with ``datasets``).
    """
    from dml_pipelines.core.data.cache import open_sized_cache, size_label

    default = image_cache.get("resize_shorter")
    command = f"kedro run --pipelines=data --params dataset={data.name}"
    if datasets is not None:
        configured = datasets.entry(data.name).resize_shorter
        if configured != default:
            raise ValueError(
                f"datasets.{data.name}.resize_shorter: {size_label(configured)}, "
                f"but the dataset's cache was built at {size_label(default)} "
                f"(image_cache.json); rebuild it: {command}"
            )
    wanted = run_cache_size(image_cache, cfg)
    setting = cfg.transforms.source_size
    key = f"{cfg.method}.transforms.source_size: {setting}"
    if cfg.recipe not in ("auto", "default"):
        key += f" (recipe {cfg.recipe})"
    if wanted != default:
        command += f",cache_size={size_label(wanted)}"
    return open_sized_cache(
        data.cache_dir,
        wanted,
        source_hash=image_cache.get("source_hash"),
        wanted_by=key,
        fix=f"build it: {command}",
    )


def build_augmentation(
    image_cache: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
    run: RunParams,
) -> dict[str, Any]:
    """The run's training augmentation, resolved as training resolves it (the
    dataset's recipe and the run axes applied to the method block).

    Args:
        image_cache: the cache manifest (the size ``transforms.source_size:
            dataset`` stands for; crops come from the run's cache, see
            ``run_cache_size``).
        params: the method block (validated config).
        data: the run's dataset (selects the method's recipe).
        run: the run axes (seed, fold).

    Returns:
        The ``augmentation`` dataset (``core.engine.training_data.augmentation``):
        preset, seed, the cache's resize and every field of the resolved
        transforms.
    """
    from dml_pipelines.core.engine.training_data import augmentation

    cfg = resolve(params, data, run)
    return augmentation(cfg, {"resize_shorter": run_cache_size(image_cache, cfg)})


def train_method(
    index_table: pd.DataFrame,
    image_cache: dict[str, Any],
    augmentation: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
    datasets: DatasetTable,
    paths: PathsParams,
    run: RunParams,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train the method on the training split, with checkpoints and resume.

    Args:
        index_table: the dataset's index table.
        image_cache: the cache manifest of the ``data`` pipeline; training opens
            the cache of the size the config asks for (``open_run_cache``).
        augmentation: output of ``build_augmentation``; training builds its
            transforms from it, after checking it is this run's (a stale or
            edited file fails with one line).
        params: the method block (validated config).
        data: the run's dataset.
        datasets: every dataset's block (the K list for validation).
        paths: where checkpoints live
            (``<models>/<dataset>/<method>/seed<S>[/fold<F>]/checkpoints``).
        run: the run axes (seed, fold).

    Returns:
        The model state (inference weights + the resolved config, the one
        artifact evaluation, the card and the report read; ``data_root``) and the
        per-epoch history.
    """
    from dml_pipelines.core.engine.run import train_model
    from dml_pipelines.core.engine.training_data import augmentation_transforms

    cfg = resolve(params, data, run)
    cache = open_run_cache(image_cache, cfg, data, datasets)
    ckpt = Path(paths.models) / data.name / params.method / run.directory
    state, history = train_model(
        index_table,
        cache,
        cfg,
        checkpoint_dir=ckpt / "checkpoints",
        recall_at=tuple(datasets.entry(data.name).recall_at),
        transforms=augmentation_transforms(augmentation, cfg, cache.meta),
        run_files=[ckpt / "model_state.pt"],
    )
    extra = {"data_root": datasets.entry(data.name).root, "git_commit": git_commit()}
    return {**state, **extra}, history


def git_commit() -> str:
    """The code version (``git describe --always --dirty``), or ``unknown``."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def extract_embeddings(
    index_table: pd.DataFrame,
    image_cache: dict[str, Any],
    params: MethodConfig,
    data: DataParams,
    run: RunParams,
    model_state: dict[str, Any] | None = None,
) -> Any:
    """Embed the evaluation split(s) with the trained model, or with the
    untrained network (same seed) when ``model_state`` is not given.

    Args:
        index_table: the dataset's index table.
        image_cache: the cache manifest (the cache of the run's size is
            opened, as in ``train_method``).
        params: the method block.
        data: the run's dataset (selects the method's recipe).
        run: the run axes (seed, fold).
        model_state: output of ``train_method``; ``None``: untrained network.

    Returns:
        The embeddings artifact (``EmbeddingSet``).

    Raises:
        ValueError: the current parameters or the dataset's files differ from
            those the model was trained with (``trained_config``,
            ``check_trained_data``).
    """
    from dml_pipelines.core.engine.assemble import method_from_state
    from dml_pipelines.core.engine.embed import embedding_set
    from dml_pipelines.core.engine.model_state import (
        check_trained_data,
        trained_config,
    )
    from dml_pipelines.core.engine.training_data import (
        current_data_fingerprint,
        num_train_classes,
    )

    cfg = resolve(params, data, run)
    cache = open_run_cache(image_cache, cfg, data)
    if model_state is not None:
        # the model's own resolved config and data, checked against the current
        cfg = trained_config(model_state, cfg)
        fingerprint = current_data_fingerprint(index_table, cache, cfg)
        check_trained_data(model_state, data.name, None, fingerprint)
    classes = (
        len(model_state["classes"])
        if model_state is not None
        else num_train_classes(index_table, cfg)
    )
    method = method_from_state(model_state, cfg, classes)
    desc = "embed" if model_state is not None else "embed (untrained)"
    return embedding_set(method, index_table, cache, cfg, fold=run.fold, desc=desc)
