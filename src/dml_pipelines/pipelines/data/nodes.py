"""Data nodes: thin adapters over ``dml_pipelines.core.data``."""

from typing import Any

import pandas as pd

from dml_pipelines.params import DataParams, DatasetTable, resolve_dataset


def ingest_dataset(data: DataParams, datasets: DatasetTable) -> pd.DataFrame:
    """Read (and, for embedded datasets, render) the dataset's listed rows.

    Args:
        data: the run's dataset name and cache folder.
        datasets: every dataset's block (root, reader options, count checks,
            ``on_missing``/``on_error``).

    Returns:
        The index table of docs/datasets.md#index-table as read from the archive; rows
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
    """Decode every image once into the uint8 cache(s); keep the index table to
    the cached images.

    The caches live in ``data.cache_dir``, one sub-folder per size
    (``cache_r256/``, ``cache_original/``): the dataset's own size
    (``datasets.<name>.resize_shorter``) is always built, and ``data.cache_size``
    (``--params cache_size=original`` or ``=<N>``) adds another. Caches of other
    sizes built earlier from the same source files stay; stale ones are removed.

    Args:
        listed_index_table: rows to decode (paths relative to the dataset root).
        data: the run's dataset, its cache folder and the extra size.
        datasets: every dataset's block (root, resize, bbox use, decode errors).

    Returns:
        The index table of the cached images; the manifest of the dataset's own
        cache (directory, count, resize, skipped rows, ``source_hash``) with
        ``caches``: every cache now in the folder (name -> directory, size,
        count); and every skipped row (``skipped.csv``).
    """
    from dml_pipelines.core.data.cache import find_caches, read_meta
    from dml_pipelines.core.data.prepare import prepare_caches

    spec = resolve_dataset(data, datasets)
    table, caches, skipped = prepare_caches(
        listed_index_table,
        spec.root,
        spec.cache_dir,
        spec.cache_sizes,
        name=spec.name,
        use_bbox=spec.use_bbox,
        on_error=spec.on_error,
    )
    manifest = caches[spec.resize_shorter].manifest()
    manifest["caches"] = {
        directory.name: {
            "directory": str(directory),
            "resize_shorter": size,
            "count": (read_meta(directory) or {}).get("count"),
        }
        for size, directory in find_caches(spec.cache_dir).items()
    }
    return table, manifest, skipped
