"""Evaluation core: embeddings artifact, exact kNN, retrieval and clustering metrics,
and the reporting protocols (docs/protocols.md)."""

from __future__ import annotations

from .embeddings import EmbeddingSet, load_embeddings, save_embeddings
from .protocols import evaluate, evaluate_mlrc

__all__ = [
    "EmbeddingSet",
    "evaluate",
    "evaluate_mlrc",
    "load_embeddings",
    "save_embeddings",
]
