"""High-level entry points the Kedro nodes call (and notebooks can too):
``train_model``, ``method_from_state``, ``embedding_set`` and ``data_fingerprint``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.data.cache import ImageCache
from dml_pipelines.core.data.fingerprint import data_fingerprint
from dml_pipelines.core.data.loader import make_loader
from dml_pipelines.core.data.samplers import PKSampler
from dml_pipelines.core.data.transforms import Transforms, build_transforms
from dml_pipelines.core.engine.distributed import current
from dml_pipelines.core.engine.progress import Progress
from dml_pipelines.core.engine.threads import configured_workers
from dml_pipelines.core.engine.trainer import Trainer, resolve_device
from dml_pipelines.core.evaluation import EmbeddingSet
from dml_pipelines.core.evaluation.report import evaluate_set
from dml_pipelines.core.methods.registry import build_method
from dml_pipelines.core.provenance import library_versions

EVAL_SPLITS = ("test", "query", "gallery")


def _transforms(cfg: MethodConfig):
    t = cfg.transforms
    return build_transforms(
        t.preset, image_size=t.image_size, normalize_std=t.normalize_std, **t.args
    )


def augmentation(
    cfg: MethodConfig, cache_manifest: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The run's training augmentation as JSON (the ``augmentation`` dataset).

    Args:
        cfg: the run's resolved config (recipe and run axes applied).
        cache_manifest: the prepared cache's manifest (crops are taken from its
            already-resized images).

    Returns:
        ``preset``, ``seed`` (the augmentation stream's), ``cache_resize_shorter``
        and ``transforms``: every field of the resolved ``Transforms`` (train
        geometry, crop scale/ratio, flip, affine, erasing, test resize,
        normalisation), which ``augmentation_transforms`` turns back into the
        preset training uses.
    """
    return {
        "preset": cfg.transforms.preset,
        "seed": cfg.training.seed,
        "cache_resize_shorter": (cache_manifest or {}).get("resize_shorter"),
        "transforms": _transforms(cfg).describe(),
    }


def _differences(expected: Any, got: Any, key: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(expected) | set(got), key=str):
            sub = f"{key}.{k}" if key else str(k)
            out += _differences(expected.get(k), got.get(k), sub)
        return out
    return [] if expected == got else [f"{key}: {got!r} (this run: {expected!r})"]


def augmentation_transforms(
    description: Mapping[str, Any],
    cfg: MethodConfig,
    cache_manifest: Mapping[str, Any] | None = None,
) -> Transforms:
    """The training ``Transforms`` rebuilt from an ``augmentation`` description,
    once it is checked to be this run's (same preset resolution, seed and cache):
    a stale or hand-edited file is never trained with.

    Raises:
        ValueError: the description differs (one line naming the first keys).
    """
    expected = json.loads(json.dumps(augmentation(cfg, cache_manifest)))
    got = json.loads(json.dumps(description))
    diff = _differences(expected, got)
    if diff:
        shown = "; ".join(diff[:3]) + (
            f"; +{len(diff) - 3} more" if len(diff) > 3 else ""
        )
        raise ValueError(
            f"augmentation: the description is not this run's ({shown}); "
            "re-run the build_augmentation node"
        )
    return Transforms.from_description(got["transforms"])


def loader_workers(training: Any) -> int:
    """``training.num_workers`` (``auto``: ``DML_NUM_WORKERS`` when set,
    ``core/engine/threads.py``) as a number: ``auto`` = 0 on a CPU device, else
    min(8, cores // devices − 1) (the rest feed the devices' processes)."""
    workers = configured_workers(training.num_workers)
    if workers != "auto":
        return int(workers)
    if resolve_device(training.device).type == "cpu":
        return 0
    cores = os.cpu_count() or 1
    return max(0, min(8, cores // training.devices - 1))


def augment_device(training: Any) -> torch.device | None:
    """The device that finishes the training augmentation (``training.augment_on``):
    the training device for ``device`` (or ``auto`` on CUDA), ``None`` for the
    loader path."""
    device = resolve_device(training.device)
    if training.augment_on == "device" or (
        training.augment_on == "auto" and device.type == "cuda"
    ):
        return device
    return None


def training_rows(table: pd.DataFrame, training: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row ids to train on and to validate on (empty when not needed).

    ``checkpoint_selection: validation`` holds out the training classes of
    ``fold_block == training.validation_fold`` (MLRC fold F trains on the other
    three quarters); ``test_recall_at_1`` validates on the evaluation split.
    """
    selection = training.checkpoint_selection
    train = table["split"] == "train"
    if selection == "validation":
        block = table["fold_block"] == training.validation_fold
        held = train & block.fillna(False)
        return table.index[train & ~held].to_numpy(), table.index[held].to_numpy()
    if selection == "test_recall_at_1":
        return table.index[train].to_numpy(), table.index[
            table["split"] != "train"
        ].to_numpy()
    return table.index[train].to_numpy(), np.empty(0, dtype=np.int64)


def check_source_size(cache: ImageCache, cfg: MethodConfig) -> None:
    """Refuse a cache whose size is not the one ``transforms.source_size`` names
    (an int N: shorter side N; ``original``: native size). ``dataset`` accepts
    the dataset's own cache, which the caller chose.

    Raises:
        ValueError: one line naming the key, the size wanted and the cache's.
    """
    from dml_pipelines.core.data.cache import describe_size
    from dml_pipelines.core.data.sizes import source_size

    wanted = cfg.transforms.source_size
    if wanted == "dataset":
        return
    size = source_size(wanted, None)
    have = cache.meta.get("resize_shorter")
    if have != size:
        raise ValueError(
            f"{cfg.method}.transforms.source_size: {wanted} wants the image cache "
            f"at {describe_size(size)}, but {cache.directory} holds images at "
            f"{describe_size(have)}; pass the cache of that size "
            "(dml_pipelines.core.data.cache.open_sized_cache)"
        )


def cache_record(cache: ImageCache) -> dict[str, Any]:
    """The cache a run used, as kept in ``model_state["cache"]`` and shown in
    the protocol card: directory, size (``resize_shorter``), box use, count."""
    m = cache.meta
    return {
        "directory": str(cache.directory),
        "resize_shorter": m.get("resize_shorter"),
        "use_bbox": m.get("use_bbox"),
        "count": len(cache),
        "source_hash": m.get("source_hash"),
    }


def noisy_labels(
    labels: np.ndarray, num_classes: int, fraction: float, seed: int
) -> np.ndarray:
    """``labels`` (N,) with round(fraction·N) entries, chosen by ``seed``,
    moved to another class drawn uniformly among the C − 1 others."""
    if fraction <= 0:
        return labels
    rng = np.random.default_rng([seed, 0x4E015E])
    out = labels.copy()
    idx = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    shift = rng.integers(1, num_classes, size=len(idx))
    out[idx] = (labels[idx] + shift) % num_classes
    return out


def warm_start(method: torch.nn.Module, path: str) -> None:
    """Initialise ``method`` from ``training.init_from``: a project checkpoint
    (``last.pt``/``best.pt``/``model_state.pt``: its ``model`` weights) or a
    torchvision weights file for the backbone (keys of the torchvision model).
    Loaded with ``weights_only=True``; keys that match nothing are an error."""
    from dml_pipelines.core.engine.trainer import load_checkpoint

    if not Path(path).exists():
        raise ValueError(f"training.init_from: {path} does not exist")
    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        method.load_export_state_dict(state["model"])
        return
    backbone = method.embedder.backbone
    names = getattr(backbone, "child_names", None)
    if not names:
        raise ValueError(
            f"training.init_from: {path} is not a project checkpoint and backbone "
            f"{type(backbone).__name__} takes no torchvision weights file"
        )
    index = {name: str(i) for i, name in enumerate(names)}
    mapped = {}
    for key, value in state.items():
        child, _, rest = key.partition(".")
        if child in index:
            mapped[f"{index[child]}.{rest}"] = value
    missing, _ = backbone.body.load_state_dict(mapped, strict=False)
    if missing:
        raise ValueError(
            f"training.init_from: {path} lacks {len(missing)} backbone weights "
            f"(first: {missing[:3]})"
        )


def build_for_training(cfg: MethodConfig, num_classes: int) -> torch.nn.Module:
    """Seed, then build the method (the untrained network is this same model)."""
    torch.manual_seed(cfg.training.seed)
    return build_method(cfg, num_classes)


def embed_rows(
    method: torch.nn.Module,
    cache: ImageCache,
    rows: np.ndarray,
    cfg: MethodConfig,
    device: torch.device | None = None,
    *,
    desc: str = "embed",
    leave: bool = True,
) -> np.ndarray:
    """Evaluation embeddings (len(rows), D) float32 of index-table ``rows``
    (a progress bar ``desc`` in images on a terminal, rank 0 only: see
    ``core/engine/progress.py``; ``leave=False`` removes it when done)."""
    device = device or resolve_device(cfg.training.device)
    transforms = _transforms(cfg)
    positions = cache.positions_of(rows)
    loader = make_loader(
        cache,
        positions,
        np.zeros(len(positions), dtype=np.int64),
        transforms,
        batch_size=cfg.training.eval_batch_size,
        train=False,
        num_workers=loader_workers(cfg.training),
    )
    method.to(device).eval()
    out = []
    bar = Progress(len(positions), desc, "img", main=current().is_main, leave=leave)
    with torch.no_grad(), bar:
        for images, _ in loader:
            n = len(images)
            images = transforms.normalize(images.to(device), False)
            out.append(method.embed(images).float().cpu())
            bar.update(n)
    if not out:
        return np.zeros((0, method.embedder.embedding_dim), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def rows_embedding_set(
    method: torch.nn.Module,
    table: pd.DataFrame,
    cache: ImageCache,
    rows: np.ndarray,
    cfg: MethodConfig,
    fold: int | None = None,
    **bar: Any,
) -> EmbeddingSet:
    """The embeddings artifact of index-table ``rows`` (query/gallery flags when
    the rows hold query or gallery images; ``fold``: the MLRC fold model;
    ``bar``: ``desc``/``leave`` of the progress bar, see ``embed_rows``)."""
    split = table.loc[rows, "split"].to_numpy()
    qg = bool(np.isin(split, ["query", "gallery"]).any())
    return EmbeddingSet(
        embeddings=embed_rows(method, cache, rows, cfg, **bar),
        labels=table.loc[rows, "label"].to_numpy(np.int64),
        index=np.asarray(rows, dtype=np.int64),
        normalization=method.normalization,
        is_query=(split == "query") if qg else None,
        is_gallery=(split == "gallery") if qg else None,
        fold=fold,
    )


def embedding_set(
    method: torch.nn.Module,
    table: pd.DataFrame,
    cache: ImageCache,
    cfg: MethodConfig,
    fold: int | None = None,
    **bar: Any,
) -> EmbeddingSet:
    """The embeddings artifact of the evaluation splits (test, or query+gallery);
    ``bar``: ``desc``/``leave`` of the progress bar (``embed_rows``). The cache
    must be of the size ``transforms.source_size`` asks for (``check_source_size``)."""
    check_source_size(cache, cfg)
    rows = table.index[table["split"].isin(EVAL_SPLITS)].to_numpy()
    rows = rows[np.isin(rows, cache.row_ids)]
    return rows_embedding_set(method, table, cache, rows, cfg, fold=fold, **bar)


def _validator(table, cache, rows, cfg, recall_at):
    if len(rows) == 0:
        return None

    def validate(method: torch.nn.Module) -> dict[str, float]:
        es = rows_embedding_set(
            method, table, cache, rows, cfg, desc="validate", leave=False
        )
        metrics = evaluate_set(es, recall_at=tuple(recall_at), clustering=False)
        return {k: metrics[k] for k in ("recall@1", "r_precision", "map@r")}

    return validate


def train_model(
    table: pd.DataFrame,
    cache: ImageCache,
    cfg: MethodConfig,
    *,
    checkpoint_dir: str | Path | None,
    recall_at: tuple[int, ...] = (1, 2, 4, 8),
    callbacks: list[Any] | None = None,
    transforms: Transforms | None = None,
    run_files: list[str | Path] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train ``cfg.method`` on the training rows of ``table``; with
    ``training.devices: N > 1`` in N processes on shards of each global batch
    (``core/engine/distributed.py``), rank 0 writing the results; under
    ``torchrun`` (``python -m dml_pipelines.train``) in torchrun's processes
    (``core/engine/launch.py``, ``docs/distributed.md``).

    ``transforms``: the training preset to use (the Kedro node passes the one
    rebuilt from the run's ``augmentation`` dataset); it must be the one
    ``cfg.transforms`` resolves to (the resume key holds the config), which is
    the default. ``run_files``: the run's other files (its ``model_state.pt``),
    moved aside with the checkpoints when the run is replaced (``Trainer``).

    Returns:
        ``model_state`` (``config``, ``classes`` = original training labels in
        re-indexed order, ``model`` = the method's inference weights
        (``export_state_dict``), ``epoch``, ``selected_epoch``, ``fingerprint``,
        ``cache`` = the cache trained on, ``cache_record``; ``code_digest``,
        ``libraries``, ``method_summary`` = the method's ``summary()``) and the
        per-epoch history.

    Raises:
        ValueError: ``cache`` is not of the size ``transforms.source_size`` asks
            for (``check_source_size``), or ``transforms`` is not the config's.
    """
    check_source_size(cache, cfg)
    if transforms is not None and transforms != _transforms(cfg):
        raise ValueError(
            "train_model: transforms differ from the preset cfg.transforms "
            f"resolves to ({transforms.preset!r} with other fields)"
        )
    from dml_pipelines.core.engine import launch

    if launch.current() is not None:  # rank 0 under torchrun (docs/distributed.md)
        if callbacks:
            raise ValueError("train_model: extra callbacks need one process")
        return launch.lead(
            table, cache, cfg, checkpoint_dir, recall_at, transforms, run_files
        )
    world = cfg.training.devices
    if world == 1:
        return _fit(
            table,
            cache,
            cfg,
            checkpoint_dir,
            recall_at,
            callbacks,
            transforms,
            run_files=run_files,
        )
    if callbacks:
        raise ValueError("train_model: extra callbacks need training.devices: 1")
    import tempfile

    from dml_pipelines.core.engine.distributed import spawn
    from dml_pipelines.core.engine.trainer import load_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.pt"
        args = (
            table,
            cache,
            cfg,
            checkpoint_dir,
            recall_at,
            transforms,
            out,
            None,
            run_files,
        )
        spawn(_fit_rank, world, args)
        result = load_checkpoint(out)
    return result["state"], pd.DataFrame(result["history"])


def _fit_rank(
    rank,
    world,
    table,
    cache,
    cfg,
    checkpoint_dir,
    recall_at,
    transforms,
    out=None,
    callbacks=None,
    run_files=None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One rank of a multi-process run (``spawn`` or torchrun's
    ``core/engine/launch.py``); rank 0 also saves the result to ``out``."""
    from dml_pipelines.core.engine.trainer import save_atomic

    state, history = _fit(
        table,
        cache,
        cfg,
        checkpoint_dir,
        recall_at,
        callbacks,
        transforms,
        shard=(rank, world),
        run_files=run_files,
    )
    if rank == 0 and out is not None:
        save_atomic({"state": state, "history": history.to_dict("records")}, out)
    return state, history


def pk_sampler(labels: np.ndarray, cfg: MethodConfig) -> PKSampler:
    """The P×K batch sampler of ``cfg.sampler`` over re-indexed ``labels``,
    seeded by ``training.seed``."""
    s = cfg.sampler
    rf = s.random_factorisation
    return PKSampler(
        labels,
        s.P,
        s.K,
        seed=cfg.training.seed,
        allow_repeated_classes=s.allow_repeated_classes,
        random_factorisation=(rf.batch_size, rf.P_choices) if rf else None,
        order=s.order,
        batches_per_epoch=s.batches_per_epoch,
    )


def _fit(
    table: pd.DataFrame,
    cache: ImageCache,
    cfg: MethodConfig,
    checkpoint_dir: str | Path | None,
    recall_at: tuple[int, ...],
    callbacks: list[Any] | None,
    transforms: Transforms | None = None,
    shard: tuple[int, int] | None = None,
    run_files: list[str | Path] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    train_rows, val_rows = training_rows(table, cfg.training)
    train_rows = train_rows[np.isin(train_rows, cache.row_ids)]
    original = table.loc[train_rows, "label"].to_numpy(np.int64)
    classes, labels = np.unique(original, return_inverse=True)  # re-index 0..C−1
    labels = noisy_labels(
        labels, len(classes), cfg.training.label_noise, cfg.training.seed
    )
    method = build_for_training(cfg, len(classes))
    if cfg.training.init_from:
        warm_start(method, cfg.training.init_from)
    if shard is not None and cfg.training.sync_bn:
        from dml_pipelines.core.engine.distributed import convert_batchnorm

        # the embedder sees each rank's shard; layers after the method's gather
        # already see the global batch
        convert_batchnorm(method.embedder, resolve_device(cfg.training.device))
    sampler = pk_sampler(labels, cfg)
    transforms = transforms if transforms is not None else _transforms(cfg)
    loader = make_loader(
        cache,
        cache.positions_of(train_rows),
        labels.astype(np.int64),
        transforms,
        batch_sampler=sampler,
        train=True,
        num_workers=loader_workers(cfg.training),
        seed=cfg.training.seed,
        shard=shard,
        augment_on=augment_device(cfg.training),
    )
    fingerprint = data_fingerprint(table, train_rows, cache)
    trainer = Trainer(
        method,
        loader,
        transforms.normalize,
        cfg,
        checkpoint_dir=checkpoint_dir,
        validate=_validator(table, cache, val_rows, cfg, recall_at),
        callbacks=list(callbacks or []),
        data_fingerprint=fingerprint,
        run_files=run_files,
    )
    history = trainer.fit()
    state = {
        # the epochs' wall time (training + validation), summed over every
        # process of a resumed run, so a finished run re-scored after a resume
        # keeps the time it took to train
        "wall_time_s": float(sum(r.get("seconds", 0.0) for r in trainer.history)),
        "device": str(trainer.device)
        + (f" x{cfg.training.devices}" if cfg.training.devices > 1 else ""),
        "config": cfg.model_dump(mode="json"),
        "classes": torch.as_tensor(classes),
        "model": method.export_state_dict(),
        "epoch": trainer.epoch,
        "selected_epoch": trainer.best_epoch,
        "fingerprint": trainer.fingerprint,
        "data_fingerprint": fingerprint,
        "code_digest": trainer.code_digest,
        "libraries": library_versions(),
        "method_summary": method_summary(method),
        "cache": cache_record(cache),
    }
    return state, history


def method_summary(method: torch.nn.Module) -> dict[str, Any]:
    """What the method reports of its own run (``summary()``: CCP's instances,
    say), as plain JSON values; empty for methods without one."""
    summary = getattr(method, "summary", None)
    return json.loads(json.dumps(summary(), default=float)) if summary else {}


def method_from_state(
    state: dict[str, Any] | None, cfg: MethodConfig, num_classes: int
):
    """Rebuild the method; load ``state["model"]`` unless ``state`` is None (the
    untrained network, built with the same seed as training)."""
    method = build_for_training(cfg, num_classes)
    if state is not None:
        method.load_export_state_dict(state["model"])
    return method.eval()


def trained_config(state: Mapping[str, Any], cfg: MethodConfig) -> MethodConfig:
    """The resolved config ``state`` (a ``model_state``) was trained with, once
    checked to be the current run's: evaluation, the card and the report read
    it, so a result is never labelled with parameters that did not make it.

    Raises:
        ValueError: the state holds no config, or the current resolved config
            differs from it in a key of the run's identity (one line naming the
            first keys, both values, and the command that re-trains).
    """
    from dml_pipelines.core.engine import launch
    from dml_pipelines.core.identity import identity_differences
    from dml_pipelines.core.methods.configs import parse_method_config

    if launch.current() is not None:  # torchrun trained it on the world's ranks
        cfg = launch.with_world(cfg, launch.current().world_size)
    trained = state.get("config")
    if not isinstance(trained, dict):
        raise ValueError(
            f"{cfg.method}: the model state holds no resolved config; re-train: "
            f"kedro run --pipelines={cfg.method}"
        )
    diff = identity_differences(trained, cfg.model_dump(mode="json"))
    if diff:
        raise ValueError(
            f"{cfg.method}: the parameters differ from those the model was "
            f"trained with ({'; '.join(diff)}); re-train (kedro run "
            f"--pipelines={cfg.method} with the same --params, no --tags) or "
            "restore the parameters"
        )
    return parse_method_config(trained)


def check_trained_data(
    state: Mapping[str, Any],
    dataset: str,
    root: str | None,
    fingerprint: str | None = None,
) -> None:
    """Refuse to score or describe a model with data other than it was trained
    on: another ``datasets.<name>.root``, or (given the current training data's
    ``fingerprint``, ``data_fingerprint``) other training files.

    Raises:
        ValueError: one line naming the key or fingerprint, both values, and the
            fix.
    """
    trained_root = state.get("data_root")
    if trained_root is not None and root is not None and trained_root != root:
        raise ValueError(
            f"datasets.{dataset}.root: {root} now, but the model and its "
            f"embeddings were made from {trained_root}; re-run the run "
            f"(kedro run --pipelines=<method> --params dataset={dataset}) "
            "or restore the root"
        )
    trained = state.get("data_fingerprint")
    if fingerprint and trained and fingerprint != trained:
        raise ValueError(
            f"dataset {dataset}: its training files changed since the model was "
            f"trained (data fingerprint {fingerprint} now, {trained} trained); "
            "re-run the run to train and score on the current files"
        )


def current_data_fingerprint(
    table: pd.DataFrame, cache: ImageCache, cfg: MethodConfig
) -> str:
    """``data_fingerprint`` of the rows ``cfg`` trains on, as training computes it."""
    rows, _ = training_rows(table, cfg.training)
    return data_fingerprint(table, rows[np.isin(rows, cache.row_ids)], cache)


def num_train_classes(table: pd.DataFrame, cfg: MethodConfig) -> int:
    """Number of classes the method is trained on (after any validation hold-out)."""
    rows, _ = training_rows(table, cfg.training)
    return int(table.loc[rows, "label"].nunique())
