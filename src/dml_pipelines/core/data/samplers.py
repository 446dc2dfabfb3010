"""P×K class-balanced batch sampler (docs/datasets.md#pk-batch-sampler).

Every batch holds P classes × K samples (P·K indices), every batch is full, and the
order is a pure function of ``(seed, epoch)``: resuming at epoch e replays it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


class PKSampler:
    """Yields lists of dataset positions.

    Args:
        labels: (N,) integer class of each position.
        P: classes per batch; K: samples per class.
        seed: base seed; epoch e uses ``default_rng([seed, e])``.
        allow_repeated_classes: a class may fill two K-chunks of one batch
            (Intra-Batch ``CombineSampler``); otherwise the P classes are distinct.
        random_factorisation: ``(batch_size, P_choices)``: every epoch draws P from
            ``P_choices`` and sets K = batch_size // P.
        order: ``grouped`` (each class's K samples adjacent) or ``interleaved``
            (s_{c1,1}, s_{c2,1}, …, s_{c1,2}, …).
        batches_per_epoch: default ``N // (P·K)`` (about every sample once).
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        P: int,
        K: int,
        *,
        seed: int = 0,
        allow_repeated_classes: bool = False,
        random_factorisation: tuple[int, Sequence[int]] | None = None,
        order: str = "grouped",
        batches_per_epoch: int | None = None,
    ) -> None:
        self.labels = np.asarray(labels)
        self.classes, inverse = np.unique(self.labels, return_inverse=True)
        self.members = [np.flatnonzero(inverse == c) for c in range(len(self.classes))]
        if order not in ("grouped", "interleaved"):
            raise ValueError(
                f"sampler.order: {order!r} is invalid; valid: grouped, interleaved"
            )
        self.P, self.K = P, K
        self.seed = seed
        self.allow_repeated_classes = allow_repeated_classes
        self.random_factorisation = random_factorisation
        self.order = order
        self.epoch = 0
        batch = P * K if random_factorisation is None else random_factorisation[0]
        p_max = P if random_factorisation is None else max(random_factorisation[1])
        if not allow_repeated_classes and p_max > len(self.classes):
            raise ValueError(
                f"sampler.P = {p_max} exceeds the {len(self.classes)} training classes "
                "(set sampler.allow_repeated_classes: true or lower sampler.P)"
            )
        self.batches_per_epoch = batches_per_epoch or max(1, len(self.labels) // batch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches ``__iter__`` yields."""
        self.epoch = epoch

    def factorisation(self, epoch: int | None = None) -> tuple[int, int]:
        """(P, K) used in ``epoch`` (drawn when ``random_factorisation`` is set)."""
        if self.random_factorisation is None:
            return self.P, self.K
        rng = np.random.default_rng(
            [self.seed, self.epoch if epoch is None else epoch, 1]
        )
        size, choices = self.random_factorisation
        p = int(rng.choice(np.asarray(choices)))
        return p, size // p

    def __len__(self) -> int:
        return self.batches_per_epoch

    def _chunk_stream(
        self, c: int, K: int, rng: np.random.Generator
    ) -> Iterator[np.ndarray]:
        """Endless K-chunks of class c: shuffled, padded with its own repeats."""
        idx = self.members[c]
        while True:
            perm = rng.permutation(idx)
            pad = (-len(perm)) % K
            if pad:
                perm = np.concatenate(
                    [perm, rng.choice(idx, pad, replace=len(idx) < pad)]
                )
            yield from perm.reshape(-1, K)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        P, K = self.factorisation()
        n_classes = len(self.classes)
        streams = [self._chunk_stream(c, K, rng) for c in range(n_classes)]
        class_order: list[int] = []
        for _ in range(self.batches_per_epoch):
            if self.allow_repeated_classes:
                chosen = rng.integers(0, n_classes, size=P).tolist()
            else:
                # visit every class once before any repeats; no class twice per batch
                chosen = []
                while len(chosen) < P:
                    if not class_order:
                        class_order = rng.permutation(n_classes).tolist()
                    c = class_order.pop()
                    if c in chosen:
                        class_order.insert(0, c)
                        continue
                    chosen.append(c)
            chunks = np.stack([next(streams[c]) for c in chosen])  # (P, K)
            if self.order == "interleaved":
                chunks = chunks.T
            yield chunks.reshape(-1).tolist()


class ShardedBatches:
    """Rank ``rank``'s contiguous slice of every global batch of ``batches``.

    Raises:
        ValueError: a global batch not divisible by ``world_size``.
    """

    def __init__(self, batches: Any, rank: int, world_size: int) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[Any]]:
        for batch in self.batches:
            batch = list(batch)
            if len(batch) % self.world_size:
                raise ValueError(
                    f"training.devices: the global batch of {len(batch)} is not "
                    f"divisible by {self.world_size} devices (change sampler.P/K)"
                )
            b = len(batch) // self.world_size
            yield batch[self.rank * b : (self.rank + 1) * b]

    def __len__(self) -> int:
        return len(self.batches)
