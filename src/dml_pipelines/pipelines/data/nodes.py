"""Data nodes: thin adapters over ``dml_pipelines.core.data``."""

from typing import Any

import pandas as pd

from dml_pipelines.core.config import DataParams, DatasetTable, resolve_dataset


def ingest_dataset(data: DataParams, datasets: DatasetTable) -> pd.DataFrame:
    """Read (and, for embedded datasets, render) the dataset's index table.

    Args:
        data: the run's dataset name and cache folder.
        datasets: every dataset's block (root, reader options, count checks).

    Returns:
        The index table of specs/datasets.md §1.
    """
    from dml_pipelines.core.data import read_index

    spec = resolve_dataset(data, datasets)
    return read_index(
        spec.name,
        spec.root,
        expected_counts=spec.expected_counts,
        on_missing=spec.on_missing,
        **spec.options,
    )


def prepare_images(
    index_table: pd.DataFrame, data: DataParams, datasets: DatasetTable
) -> dict[str, Any]:
    """Decode every image once into the uint8 cache.

    Args:
        index_table: rows to decode (paths relative to the dataset root).
        data: the run's dataset name and cache folder.
        datasets: every dataset's block (root, resize, bbox use, decode errors).

    Returns:
        The cache manifest (directory, count, resize, skipped rows).
    """
    from dml_pipelines.core.data.cache import build_cache

    spec = resolve_dataset(data, datasets)
    cache = build_cache(
        index_table,
        spec.root,
        spec.cache_dir,
        resize_shorter=spec.resize_shorter,
        use_bbox=spec.use_bbox,
        on_error=spec.on_error,
    )
    return cache.manifest()
