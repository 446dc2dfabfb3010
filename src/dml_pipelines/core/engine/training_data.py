"""What a run trains on, from its resolved config: the training and validation
rows of the index table, the re-indexed (and optionally noisy) labels, the P×K
sampler, the transforms and their ``augmentation`` description, the loader's
workers and the cache checks (``train_model``, ``core/engine/run.py``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.data.cache import ImageCache
from dml_pipelines.core.data.fingerprint import data_fingerprint
from dml_pipelines.core.data.samplers import PKSampler
from dml_pipelines.core.data.transforms import Transforms, build_transforms
from dml_pipelines.core.engine.device import resolve_device
from dml_pipelines.core.engine.threads import configured_workers


def run_transforms(cfg: MethodConfig) -> Transforms:
    """The ``Transforms`` preset ``cfg.transforms`` resolves to."""
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
        "transforms": run_transforms(cfg).describe(),
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


def _rows(
    table: pd.DataFrame, cache: ImageCache, cfg: MethodConfig
) -> tuple[np.ndarray, np.ndarray]:
    """``training_rows`` with the training rows limited to those in ``cache``."""
    train, val = training_rows(table, cfg.training)
    return train[np.isin(train, cache.row_ids)], val


@dataclass(frozen=True)
class TrainingData:
    """The data of one run, as ``training_data`` selects it.

    ``train_rows``/``val_rows``: index-table row ids; ``classes``: the original
    training labels in re-indexed order; ``labels``: the training rows' labels
    re-indexed to 0..C−1 (``training.label_noise`` applied); ``fingerprint``:
    ``data_fingerprint`` of the training rows (part of the resume key)."""

    table: pd.DataFrame
    cache: ImageCache
    train_rows: np.ndarray
    val_rows: np.ndarray
    classes: np.ndarray
    labels: np.ndarray
    fingerprint: str


def training_data(
    table: pd.DataFrame, cache: ImageCache, cfg: MethodConfig
) -> TrainingData:
    """The rows, re-indexed labels and fingerprint ``cfg`` trains on."""
    train_rows, val_rows = _rows(table, cache, cfg)
    original = table.loc[train_rows, "label"].to_numpy(np.int64)
    classes, labels = np.unique(original, return_inverse=True)  # re-index 0..C−1
    t = cfg.training
    return TrainingData(
        table,
        cache,
        train_rows,
        val_rows,
        classes,
        noisy_labels(labels, len(classes), t.label_noise, t.seed),
        data_fingerprint(table, train_rows, cache),
    )


def current_data_fingerprint(
    table: pd.DataFrame, cache: ImageCache, cfg: MethodConfig
) -> str:
    """``data_fingerprint`` of the rows ``cfg`` trains on, as training computes it."""
    return data_fingerprint(table, _rows(table, cache, cfg)[0], cache)


def num_train_classes(table: pd.DataFrame, cfg: MethodConfig) -> int:
    """Number of classes the method is trained on (after any validation hold-out)."""
    rows, _ = training_rows(table, cfg.training)
    return int(table.loc[rows, "label"].nunique())
