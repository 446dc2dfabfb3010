"""The size of a prepared image cache, as the config names it
(``transforms.source_size``, ``data.cache_size``; docs/datasets.md)."""

from __future__ import annotations

from typing import Any, Literal

SourceSize = int | Literal["dataset", "original"]
"""A cache size: ``dataset`` (the dataset's own, ``datasets.<name>.resize_shorter``),
a shorter side in pixels, or ``original`` (the native size)."""


def check_size(value: Any) -> Any:
    """Validator of a ``SourceSize`` (``"256"`` from the command line -> 256)."""
    if value in ("dataset", "original"):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise ValueError("must be dataset, original or a positive int (pixels)")


def source_size(size: SourceSize, dataset_size: int | None) -> int | None:
    """The shorter side a ``SourceSize`` stands for (``None``: the original
    size), given the dataset's own ``dataset_size``."""
    if size == "dataset":
        return dataset_size
    return None if size == "original" else int(size)
