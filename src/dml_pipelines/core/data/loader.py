"""Training and evaluation DataLoaders over the prepared-image cache.

The loader yields uint8 batches (B, C, H, W) and int64 labels (B,); normalisation is
the trainer's job on the training device: ``transforms.normalize(x.to(device), train)``.

Determinism: every sample drawn gets its own seed, ``mix(seed, epoch, k)`` with k the
sample's place in the epoch's stream of batches, computed in the main process where
the batch sampler runs. The augmentation of a sample therefore depends on the seed,
the epoch and the batch order only, not on ``num_workers`` or on which worker ran
it, and an image repeated within a batch (P×K fill) is augmented independently.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from dml_pipelines.core.data.cache import ImageCache
from dml_pipelines.core.data.transforms import Transforms

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, k: int) -> int:
    """64-bit seed of the k-th sample drawn in ``epoch`` under ``seed``."""
    return _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ epoch) ^ k)


class CacheDataset(Dataset):
    """Images of an ``ImageCache`` with labels and the per-image transform.

    Args:
        cache: the prepared-image cache.
        positions: (N,) cache positions (``cache.positions_of(row_ids)``).
        labels: (N,) integer labels (already re-indexed for training if needed).
        transforms: the preset; ``train_sample`` if ``train`` else ``test_sample``.
        train: use the random train augmentation.

    Items are addressed by an index i, or by ``(i, seed)`` to draw the augmentation
    from ``torch.Generator().manual_seed(seed)``; an item is ``(uint8 (C, H, W)
    tensor, int label)``, or with ``regions`` (train only) ``(uint8 (C, h, w) crop
    region, parameters, int label)`` from ``Transforms.train_region``, for
    the device to finish (``DeviceAugmentLoader``).
    """

    def __init__(
        self,
        cache: ImageCache,
        positions: Sequence[int] | np.ndarray,
        labels: Sequence[int] | np.ndarray,
        transforms: Transforms,
        train: bool,
        regions: bool = False,
    ) -> None:
        if regions and not train:
            raise ValueError("CacheDataset: regions are for training only")
        self.regions = regions
        self.cache = cache
        self.positions = np.asarray(positions, dtype=np.int64).reshape(-1)
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(self.positions) != len(self.labels):
            raise ValueError(
                f"CacheDataset: {len(self.positions)} positions but "
                f"{len(self.labels)} labels"
            )
        if len(self.positions) and not (
            0 <= self.positions.min() and self.positions.max() < len(cache)
        ):
            raise ValueError(
                f"CacheDataset: positions outside 0..{len(cache) - 1} of {cache}"
            )
        self.transforms = transforms
        self.train = train

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[Any, ...]:
        generator = None
        if isinstance(index, tuple):
            index, seed = index
            generator = torch.Generator().manual_seed(seed)
        pixels = self.cache.image(int(self.positions[index]), readonly=False)
        img = torch.from_numpy(pixels).permute(2, 0, 1)  # zero-copy (C, H, W) view
        if self.regions:
            region, params = self.transforms.train_region(img, generator)
            return region, params, int(self.labels[index])
        if self.train:
            img = self.transforms.train_sample(img, generator)
        else:
            img = self.transforms.test_sample(img)
        return img, int(self.labels[index])


class SeededBatches:
    """Wraps a batch sampler so that each index comes with its sample seed.

    Iterating yields lists of ``(index, seed)``. Each ``iter`` is one epoch; the epoch
    counter starts at 0 and advances by one per iteration, or is set explicitly with
    ``set_epoch`` (e.g. after resuming from a checkpoint), which is forwarded to the
    wrapped sampler if it has ``set_epoch``.
    """

    def __init__(self, batches: Iterable[Sequence[int]], seed: int) -> None:
        self.batches = batches
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration epoch ``epoch``."""
        self.epoch = int(epoch)
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        k = 0
        for batch in self.batches:
            out = []
            for i in batch:
                out.append((int(i), sample_seed(self.seed, epoch, k)))
                k += 1
            yield out

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


def collate_batch(
    samples: list[tuple[torch.Tensor, int]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples into uint8 (B, C, H, W) images and int64 (B,) labels."""
    images, labels = zip(*samples, strict=True)
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise ValueError(
            f"cannot batch images of different sizes {sorted(shapes)}; "
            "set transforms.image_size for this dataset"
        )
    return torch.stack(images).contiguous(), torch.tensor(labels, dtype=torch.int64)


def pack_regions(
    samples: list[tuple[torch.Tensor, tuple[float, ...], int]],
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """Collate crop regions of different sizes without padding.

    Returns:
        ``((buffer, shapes, params), labels)``: uint8 (N,) the regions' pixels one
        after the other, each height × width × channels (the cache's layout, which
        the resize kernels take fastest); int64 (B, 4) channels, height, width
        and offset in ``buffer`` of each; float64 (B, P) their parameters; int64
        (B,) labels. ``Transforms.train_batch`` unpacks them.
    """
    regions, params, labels = zip(*samples, strict=True)
    shapes, offset = [], 0
    for r in regions:
        shapes.append((*r.shape, offset))
        offset += r.numel()
    buffer = torch.empty(offset, dtype=torch.uint8)
    for r, (c, h, w, off) in zip(regions, shapes, strict=True):
        # height × width × channels, the cache's own layout: one copy of whole rows
        buffer[off : off + c * h * w].view(h, w, c).copy_(r.permute(1, 2, 0))
    return (
        (
            buffer,
            torch.tensor(shapes, dtype=torch.int64),
            torch.tensor(params, dtype=torch.float64),
        ),
        torch.tensor(labels, dtype=torch.int64),
    )


class DeviceAugmentLoader:
    """A training loader whose interpolation runs on the training device.

    Wraps a DataLoader of packed crop regions (``pack_regions``): each batch's
    buffer is copied to ``device`` (non-blocking from pinned memory) and resized and
    flipped there (``Transforms.train_batch``). Yields ``(uint8 (B, C, S, S) on
    device, int64 (B,) labels)`` like the loader path; ``batch_sampler``,
    ``num_workers`` and ``dataset`` are the wrapped loader's.
    """

    def __init__(
        self, loader: DataLoader, transforms: Transforms, device: torch.device
    ) -> None:
        self.loader = loader
        self.transforms = transforms
        self.device = torch.device(device)

    @property
    def batch_sampler(self) -> Any:
        return self.loader.batch_sampler

    @property
    def num_workers(self) -> int:
        return self.loader.num_workers

    @property
    def dataset(self) -> Dataset:
        return self.loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for (buffer, shapes, params), labels in self.loader:
            buffer = buffer.to(self.device, non_blocking=True)
            yield self.transforms.train_batch(buffer, shapes, params), labels


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed numpy and ``random`` from the worker's torch seed
    (itself derived from the loader's seeded generator)."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)
    torch.set_num_threads(1)  # no oversubscription: the trainer owns the cores


def make_loader(
    cache: ImageCache,
    positions: Sequence[int] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    transforms: Transforms,
    *,
    batch_sampler: Iterable[Sequence[int]] | None = None,
    batch_size: int | None = None,
    train: bool,
    num_workers: int = 0,
    seed: int = 0,
    shard: tuple[int, int] | None = None,
    augment_on: torch.device | str | None = None,
) -> DataLoader | DeviceAugmentLoader:
    """DataLoader over cached images.

    Args:
        cache, positions, labels, transforms, train: see ``CacheDataset``.
        batch_sampler: iterable of lists of dataset indices (e.g. the P×K sampler);
            every batch is yielded as given, in order.
        batch_size: without a batch sampler: sequential batches of this size, no
            shuffling, the last batch possibly smaller (evaluation).
        num_workers: loader processes (kept alive across epochs); the batches do
            not depend on it.
        seed: seed of the augmentation stream (see the module docstring).
        shard: ``(rank, world_size)``: yield only rank's contiguous slice of
            every batch, with the single-process augmentation seeds.
        augment_on: (training only) a device: the loader only cuts crop regions
            and the resize and flip run on that device (``DeviceAugmentLoader``);
            the same seed gives the same parameters as the loader path.

    Returns:
        A DataLoader (or a ``DeviceAugmentLoader``) yielding ``(uint8 (B, C, H,
        W), int64 (B,))``; its ``batch_sampler`` is a ``SeededBatches``
        (``set_epoch``).

    Raises:
        ValueError: neither or both of ``batch_sampler`` and ``batch_size`` given.
    """
    if augment_on is not None and not train:
        raise ValueError("make_loader: augment_on is for training loaders only")
    regions = augment_on is not None
    dataset = CacheDataset(cache, positions, labels, transforms, train, regions)
    if (batch_sampler is None) == (batch_size is None):
        raise ValueError(
            "make_loader: give exactly one of batch_sampler and batch_size"
        )
    if batch_sampler is None:
        if batch_size < 1:
            raise ValueError(
                f"make_loader: batch_size must be positive, got {batch_size}"
            )
        batch_sampler = BatchSampler(
            SequentialSampler(dataset), batch_size, drop_last=False
        )
    extra: dict[str, Any] = {}
    if num_workers > 0:
        extra = {
            "persistent_workers": True,
            "worker_init_fn": seed_worker,
            "prefetch_factor": 4,
        }
    batches: Any = SeededBatches(batch_sampler, seed)
    if shard is not None:
        from dml_pipelines.core.data.samplers import ShardedBatches

        batches = ShardedBatches(batches, *shard)
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        collate_fn=pack_regions if regions else collate_batch,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator().manual_seed(seed),
        **extra,
    )
    if regions:
        return DeviceAugmentLoader(loader, transforms, augment_on)
    return loader
