"""Dataset readers, one module per dataset name (the module stem is the name)."""

from __future__ import annotations

from dml_pipelines.core.registry import Registry

READERS: Registry = Registry("dataset")
"""name -> ``read(root, *, expected_counts, on_missing, **options) -> DataFrame``"""

FORMAT_MODULES = ("digits", "glyphs", "cub200", "cars196", "sop", "inshop", "csv")


def load_all() -> Registry:
    """Import every reader module so that it registers itself; return the registry."""
    import importlib

    for mod in FORMAT_MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    return READERS
