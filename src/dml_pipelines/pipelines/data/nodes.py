"""Data nodes: thin adapters over ``dml_pipelines.core.data``."""

from typing import Any

import pandas as pd

from dml_pipelines.core.config import DataParams, DatasetTable, resolve_dataset


def ingest_dataset(data: DataParams, datasets: DatasetTable) -> pd.DataFrame:
    """Read (and, for embedded datasets, render) the dataset's listed rows.

    Args:
        data: the run's dataset name and cache folder.
        datasets: every dataset's block (root, reader options, count checks,
            ``on_missing``/``on_error``).

    Returns:
        The index table of specs/datasets.md §1 as read from the archive; rows
        dropped by a ``skip`` policy are in ``attrs["skipped"]``.
    """
    from dml_pipelines.core.data import read_index

    spec = resolve_dataset(data, datasets)
    return read_index(
        spec.name,
        spec.root,
        expected_counts=spec.expected_counts,
        on_missing=spec.on_missing,
        on_error=spec.on_error,
        **spec.options,
    )


def prepare_images(
    listed_index_table: pd.DataFrame, data: DataParams, datasets: DatasetTable
) -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame]:
    """Decode every image once into the uint8 cache; keep the index table to the
    cached images.

    Args:
        listed_index_table: rows to decode (paths relative to the dataset root).
        data: the run's dataset name and cache folder.
        datasets: every dataset's block (root, resize, bbox use, decode errors).

    Returns:
        The index table of the cached images, the cache manifest (directory,
        count, resize, skipped rows) and every skipped row (``skipped.csv``).
    """
    from dml_pipelines.core.data.prepare import prepare_dataset

    spec = resolve_dataset(data, datasets)
    table, cache, skipped = prepare_dataset(
        listed_index_table,
        spec.root,
        spec.cache_dir,
        name=spec.name,
        resize_shorter=spec.resize_shorter,
        use_bbox=spec.use_bbox,
        on_error=spec.on_error,
    )
    return table, cache.manifest(), skipped
