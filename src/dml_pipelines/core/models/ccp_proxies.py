"""CCP proxy (re-)selection (docs/methods/ccp.md): a pool of b training
images per class, embedded by the current network in inference mode (raw head
output), and a greedy k-center per class seeded by the previous proxies, batched
over classes (one loop over the M picks, none over the classes): the shared
``core/models/kcenter.py::greedy_k_center``, whose defaults are CCP's (the
method calls it on this module's pool)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch


def draw_pool(
    labels: np.ndarray, num_classes: int, per_class: int, generator: np.random.Generator
) -> np.ndarray:
    """Dataset indices (C, per_class) of each class's pool: a random order of
    the class's items, taken cyclically (without replacement until the class
    runs out), as b passes of one image per class. A class without items is an
    error."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"pool labels must lie in 0..{num_classes - 1}")
    if (counts == 0).any():
        empty = np.flatnonzero(counts == 0)[:5].tolist()
        raise ValueError(f"ccp proxy pool: classes {empty} have no training image")
    order = np.lexsort((generator.random(len(labels)), labels))  # by class, shuffled
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    j = np.arange(per_class)
    return order[start[:, None] + j[None, :] % counts[:, None]]


def pool_loader(
    dataset: Any,
    indices: np.ndarray,
    batch_size: int,
    augment: bool,
    seed: int,
    num_workers: int = 0,
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (uint8 images, labels) of ``dataset`` items ``indices`` (flat, in
    order). A ``CacheDataset`` gives the training augmentation (``augment``) or
    the test transform, each item seeded from ``seed`` and its place; any other
    map-style dataset is read as it is."""
    from torch.utils.data import BatchSampler, DataLoader, Subset

    from dml_pipelines.core.data.loader import CacheDataset, make_loader

    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if isinstance(dataset, CacheDataset):
        return make_loader(
            dataset.cache,
            dataset.positions[indices],
            dataset.labels[indices],
            dataset.transforms,
            batch_sampler=BatchSampler(range(len(indices)), batch_size, False),
            train=augment,
            num_workers=num_workers,
            seed=seed,
        )
    return DataLoader(Subset(dataset, indices.tolist()), batch_size=batch_size)


def dataset_labels(dataset: Any) -> np.ndarray:
    """Training labels (N,) of the loader's dataset (``labels`` of a
    ``CacheDataset``, the second tensor of a ``TensorDataset``)."""
    labels = getattr(dataset, "labels", None)
    if labels is None and getattr(dataset, "tensors", None):
        labels = dataset.tensors[1]
    if labels is None:
        raise ValueError(
            f"ccp: the training dataset {type(dataset).__name__} exposes no labels "
            "(.labels or a TensorDataset) for the proxy pool"
        )
    return np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64)


def to_class_major(proxies: torch.Tensor, num_classes: int) -> torch.Tensor:
    """m-major (C·M, D) (row m·C + c) -> (C, M, D)."""
    return proxies.reshape(-1, num_classes, proxies.shape[1]).transpose(0, 1)


def to_m_major(per_class: torch.Tensor) -> torch.Tensor:
    """(C, M, D) -> m-major (C·M, D) (row m·C + c)."""
    return per_class.transpose(0, 1).reshape(-1, per_class.shape[2])
