"""Evaluation core: embeddings artifact, exact kNN, retrieval and clustering metrics,
and the reporting protocols (docs/protocols.md).

The names below load on first use, so that the torch-free ``options`` schema (what
the Kedro nodes hint) imports without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EmbeddingSet": "embeddings",
    "load_embeddings": "embeddings",
    "save_embeddings": "embeddings",
    "evaluate": "protocols",
    "evaluate_mlrc": "protocols",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
