"""Index table and prepared cache that agree: the rows a ``skip`` policy dropped,
at ingestion or at decoding, leave the index table and are listed together.

``prepare_dataset`` builds the cache of an index table (``build_cache``), then
removes from the table every row the cache could not decode, so that the index
table, the cache and the counts always describe the same images. The rows skipped
at ingestion (``table.attrs["skipped"]``: missing files, unreadable headers) and at
decoding (the cache's ``meta.json``) are returned as one table, written beside the
index table as ``skipped.csv``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dml_pipelines.core.data.cache import ImageCache, build_cache
from dml_pipelines.core.data.index import check_splits_nonempty

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
