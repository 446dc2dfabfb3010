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
    on_error: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """Read a dataset's index table (docs/datasets.md#index-table), dispatching by
    ``name``.

    Args:
        name: one of ``digits, glyphs, glyphs_tune, cub200, cars196, sop, inshop, csv``.
        root: the dataset root; paths in the table are relative to it.
        expected_counts: ``"default"`` (the published counts), a dict of split ->
            image count, or ``None`` to disable the check.
        on_missing: ``raise`` or ``skip`` for images listed but absent.
        on_error: ``raise`` or ``skip`` for files that are not readable images
            (the archive readers open every image header unless the option
            ``verify_images`` is false; embedded datasets are not checked here).
        **options: reader-specific options (e.g. ``image_root`` for In-Shop,
            ``class_split`` for CUB and Cars, ``verify_images``).

    Returns:
        The index table (columns ``index.COLUMNS``); rows dropped by a ``skip``
        policy are listed in ``attrs["skipped"]`` (path, label, split, reason).
    """
    from dml_pipelines.core.data.formats import load_all
    from dml_pipelines.core.data.index import EMBEDDED_DATASETS

    for key, value in (("on_missing", on_missing), ("on_error", on_error)):
        if value not in ("raise", "skip"):
            raise ValueError(f"data.{key}: {value!r} is invalid; valid: raise, skip")
    reader = load_all().get(name, key="dataset")
    root = Path(root)
    if not root.exists() and name not in EMBEDDED_DATASETS:
        raise FileNotFoundError(f"data root {root} does not exist (dataset {name!r})")
    table = reader(
        root,
        expected_counts=expected_counts,
        on_missing=on_missing,
        on_error=on_error,
        **options,
    )
    table.attrs.setdefault("skipped", [])
    return table
