"""A partitioned dataset that may be empty: the report runs before any run of a
dataset exists (its tables then show the commands that produce the runs)."""

from __future__ import annotations

from typing import Any

from kedro_datasets.partitions import PartitionedDataset


class OptionalPartitionedDataset(PartitionedDataset):
    """``PartitionedDataset`` whose load returns ``{}`` when the folder holds no
    partition (instead of raising)."""

    def load(self) -> dict[str, Any]:
        self._invalidate_caches()
        if not self._list_partitions():
            return {}
        return super().load()
