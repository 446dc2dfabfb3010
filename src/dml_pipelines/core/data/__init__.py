"""Datasets: the index-table contract, readers, the prepared-image cache, samplers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd


def read_index(
    name: str,
    root: str | Path,
    *,
    expected_counts: Any = "default",
    on_missing: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """Read a dataset's index table (specs/datasets.md §1), dispatching by ``name``.

    Args:
        name: one of ``digits, glyphs, cub200, cars196, sop, inshop, csv``.
        root: the dataset root; paths in the table are relative to it.
        expected_counts: ``"default"`` (the published counts), a dict of split ->
            image count, or ``None`` to disable the check.
        on_missing: ``raise`` or ``skip`` for images listed but absent.
        **options: reader-specific options (e.g. ``image_root`` for In-Shop).

    Returns:
        The index table (columns ``index.COLUMNS``).
    """
    from dml_pipelines.core.data.formats import load_all

    if on_missing not in ("raise", "skip"):
        raise ValueError(
            f"data.on_missing: {on_missing!r} is invalid; valid: raise, skip"
        )
    reader = load_all().get(name, key="dataset")
    root = Path(root)
    if not root.exists() and name not in ("digits", "glyphs"):
        raise FileNotFoundError(f"data root {root} does not exist (dataset {name!r})")
    return reader(
        root, expected_counts=expected_counts, on_missing=on_missing, **options
    )
