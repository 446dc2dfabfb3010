"""Data nodes: thin adapters over ``dml_pipelines.core.data``."""

from typing import Any

import pandas as pd

from dml_pipelines.core.config import DataParams


def ingest_dataset(data: DataParams) -> pd.DataFrame:
    """Read (and, for embedded datasets, render) the dataset's index table.

    Args:
        data: the dataset block (name, root, reader options, count checks).

    Returns:
        The index table of specs/datasets.md §1.
    """
    from dml_pipelines.core.data import read_index

    counts = data.expected_counts
    return read_index(
        data.name,
        data.root,
        expected_counts=counts,
        on_missing=data.on_missing,
        **data.options,
    )


def prepare_images(index_table: pd.DataFrame, data: DataParams) -> dict[str, Any]:
    """Decode every image once into the uint8 cache.

    Args:
        index_table: rows to decode (paths relative to ``data.root``).
        data: the dataset block (root, cache directory, resize, bbox use).

    Returns:
        The cache manifest (directory, count, resize, skipped rows).
    """
    from dml_pipelines.core.data.cache import build_cache

    cache = build_cache(
        index_table,
        data.root,
        data.cache_dir,
        resize_shorter=data.resize_shorter,
        use_bbox=data.use_bbox,
        on_error=data.on_error,
    )
    return cache.manifest()
