"""Index table and prepared cache that agree: the rows a ``skip`` policy dropped,
at ingestion or at decoding, leave the index table and are listed together.

``prepare_dataset`` builds the cache of an index table (``build_cache``), then
removes from the table every row the cache could not decode, so that the index
table, the cache and the counts always describe the same images. The rows skipped
at ingestion (``table.attrs["skipped"]``: missing files, unreadable headers) and at
decoding (the cache's ``meta.json``) are returned as one table, written beside the
index table as ``skipped.csv``.

``prepare_caches`` does the same for caches of several sizes in one folder
(``cache_r256/``, ``cache_original/``; ``cache.cache_path``): it builds the sizes
asked for and removes the caches of other sizes that were built from other source
files, so a stale cache never stays beside the fresh ones.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from dml_pipelines.core.data.cache import (
    ImageCache,
    build_cache,
    cache_path,
    find_caches,
    is_image_cache,
    read_meta,
    size_label,
)
from dml_pipelines.core.data.index import check_splits_nonempty

log = logging.getLogger(__name__)

LEGACY_CACHE = "image_cache"
"""The single-size cache folder of earlier versions (``<folder>/image_cache``),
removed by ``prepare_caches``."""

SKIPPED_COLUMNS = ["path", "label", "split", "stage", "reason"]
"""Columns of ``skipped.csv``: ``stage`` is ``ingest`` (missing file, unreadable
header) or ``decode`` (failed when the cache decoded the pixels)."""


def skipped_rows(table: pd.DataFrame, cache: ImageCache) -> pd.DataFrame:
    """Rows dropped at ingestion (``table.attrs["skipped"]``) and at decoding (the
    cache's ``meta["skipped"]``), as a table with :data:`SKIPPED_COLUMNS`."""
    rows = [{**r, "stage": "ingest"} for r in table.attrs.get("skipped", [])]
    for s in cache.meta.get("skipped", []):
        row = table.loc[s["row_id"]]
        rows.append(
            {
                "path": s["path"],
                "label": int(row["label"]),
                "split": str(row["split"]),
                "stage": "decode",
                "reason": s["reason"],
            }
        )
    return pd.DataFrame(rows, columns=SKIPPED_COLUMNS).astype(
        {"label": "int64", "path": "string", "split": "string"}
    )


def prepare_dataset(
    table: pd.DataFrame,
    root: str | Path,
    directory: str | Path,
    *,
    name: str = "dataset",
    resize_shorter: int | None = None,
    use_bbox: bool = False,
    on_error: str = "raise",
    num_workers: int = 0,
) -> tuple[pd.DataFrame, ImageCache, pd.DataFrame]:
    """Build the prepared cache and the index table restricted to its images.

    Args:
        table: the index table from ``read_index`` (row ids in its index).
        root: dataset root.
        directory: cache directory (see ``build_cache``).
        name: dataset name for error messages.
        resize_shorter, use_bbox, on_error, num_workers: as in ``build_cache``.

    Returns:
        ``(index table, cache, skipped)``: the table without the rows the cache
        skipped (row ids unchanged), the opened cache, and every skipped row
        (ingestion and decoding; :data:`SKIPPED_COLUMNS`).

    Raises:
        ValueError: what ``build_cache`` raises, or a split left empty by the
            skipped images (one line naming the dataset).
    """
    cache = build_cache(
        table,
        root,
        directory,
        resize_shorter=resize_shorter,
        use_bbox=use_bbox,
        on_error=on_error,
        num_workers=num_workers,
    )
    skipped = skipped_rows(table, cache)
    kept = table[table.index.isin(cache.row_ids)].copy()
    kept.attrs = {k: v for k, v in table.attrs.items() if k != "skipped"}
    if len(kept) != len(table):
        check_splits_nonempty(
            kept, name, f"after on_error: skip dropped {len(table) - len(kept)} images"
        )
    return kept, cache, skipped


def prepare_caches(
    table: pd.DataFrame,
    root: str | Path,
    folder: str | Path,
    sizes: Sequence[int | None],
    *,
    name: str = "dataset",
    use_bbox: bool = False,
    on_error: str = "raise",
    num_workers: int = 0,
) -> tuple[pd.DataFrame, dict[int | None, ImageCache], pd.DataFrame]:
    """Build the caches of ``sizes`` in ``folder``, one sub-folder per size.

    Each size goes to ``cache_path(folder, size)`` (``cache_r256``,
    ``cache_original``). Afterwards the folder holds only caches built from the
    same source files (``source_hash``): a cache of another size left by an earlier
    run is kept when its source is unchanged and removed otherwise, as is the
    single-size ``image_cache/`` folder of earlier versions.

    Args:
        table: the index table from ``read_index``.
        root: dataset root.
        folder: the dataset's cache folder.
        sizes: shorter sides to build (``None``: original size), at least one;
            a repeated size is built once.
        name, use_bbox, on_error, num_workers: as in ``prepare_dataset``.

    Returns:
        ``(index table, caches, skipped)``: the table without the rows any of the
        caches skipped, the caches built (size -> cache, in ``sizes`` order) and
        every skipped row.

    Raises:
        ValueError: what ``prepare_dataset`` raises, no size, or ``folder`` being
            itself a cache (the single-size layout).
    """
    folder = Path(folder)
    wanted = list(dict.fromkeys(sizes))
    if not wanted:
        raise ValueError("prepare_caches: no cache size given")
    if is_image_cache(folder):
        raise ValueError(
            f"{name}: the cache folder {folder} is itself an image cache (the "
            "single-size layout); data.cache_dir names the folder that holds one "
            "cache per size (cache_r256/, cache_original/)"
        )
    caches: dict[int | None, ImageCache] = {}
    skipped_parts = []
    kept = table
    for size in wanted:
        kept_size, cache, skipped_size = prepare_dataset(
            table,
            root,
            cache_path(folder, size),
            name=name,
            resize_shorter=size,
            use_bbox=use_bbox,
            on_error=on_error,
            num_workers=num_workers,
        )
        caches[size] = cache
        skipped_parts.append(skipped_size)
        kept = kept[kept.index.isin(kept_size.index)]
    skipped = (
        pd.concat(skipped_parts, ignore_index=True)
        .drop_duplicates(subset=["path", "stage"])
        .reset_index(drop=True)
    )
    kept = kept.copy()
    kept.attrs = {k: v for k, v in table.attrs.items() if k != "skipped"}
    source = caches[wanted[0]].meta.get("source_hash")
    for size, directory in find_caches(folder).items():
        if size in caches:
            continue
        if (read_meta(directory) or {}).get("source_hash") != source:
            log.info(
                "%s: removed the %s cache %s (built from other source files)",
                name,
                size_label(size),
                directory,
            )
            shutil.rmtree(directory)
    legacy = folder / LEGACY_CACHE
    if legacy.is_dir() and is_image_cache(legacy):
        log.info("%s: removed the single-size cache %s", name, legacy)
        shutil.rmtree(legacy)
    return kept, caches, skipped
