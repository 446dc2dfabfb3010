"""Embedding index-table rows with a method: the evaluation splits' embeddings
artifact (``embedding_set``) and the per-epoch validation function
(``validator``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.data.cache import ImageCache
from dml_pipelines.core.data.loader import make_loader
from dml_pipelines.core.engine.device import resolve_device
from dml_pipelines.core.engine.distributed import current
from dml_pipelines.core.engine.progress import Progress
from dml_pipelines.core.engine.training_data import (
    check_source_size,
    loader_workers,
    run_transforms,
)
from dml_pipelines.core.evaluation import EmbeddingSet
from dml_pipelines.core.evaluation.report import evaluate_set

EVAL_SPLITS = ("test", "query", "gallery")


def embed_rows(
    method: torch.nn.Module,
    cache: ImageCache,
    rows: np.ndarray,
    cfg: MethodConfig,
    device: torch.device | None = None,
    *,
    desc: str = "embed",
    leave: bool = True,
) -> np.ndarray:
    """Evaluation embeddings (len(rows), D) float32 of index-table ``rows``
    (a progress bar ``desc`` in images on a terminal, rank 0 only: see
    ``core/engine/progress.py``; ``leave=False`` removes it when done)."""
    device = device or resolve_device(cfg.training.device)
    transforms = run_transforms(cfg)
    positions = cache.positions_of(rows)
    loader = make_loader(
        cache,
        positions,
        np.zeros(len(positions), dtype=np.int64),
        transforms,
        batch_size=cfg.training.eval_batch_size,
        train=False,
        num_workers=loader_workers(cfg.training),
    )
    method.to(device).eval()
    out = []
    bar = Progress(len(positions), desc, "img", main=current().is_main, leave=leave)
    with torch.no_grad(), bar:
        for images, _ in loader:
            n = len(images)
            images = transforms.normalize(images.to(device), False)
            out.append(method.embed(images).float().cpu())
            bar.update(n)
    if not out:
        return np.zeros((0, method.embedder.embedding_dim), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def rows_embedding_set(
    method: torch.nn.Module,
    table: pd.DataFrame,
    cache: ImageCache,
    rows: np.ndarray,
    cfg: MethodConfig,
    fold: int | None = None,
    **bar: Any,
) -> EmbeddingSet:
    """The embeddings artifact of index-table ``rows`` (query/gallery flags when
    the rows hold query or gallery images; ``fold``: the MLRC fold model;
    ``bar``: ``desc``/``leave`` of the progress bar, see ``embed_rows``)."""
    split = table.loc[rows, "split"].to_numpy()
    qg = bool(np.isin(split, ["query", "gallery"]).any())
    return EmbeddingSet(
        embeddings=embed_rows(method, cache, rows, cfg, **bar),
        labels=table.loc[rows, "label"].to_numpy(np.int64),
        index=np.asarray(rows, dtype=np.int64),
        normalization=method.normalization,
        is_query=(split == "query") if qg else None,
        is_gallery=(split == "gallery") if qg else None,
        fold=fold,
    )


def embedding_set(
    method: torch.nn.Module,
    table: pd.DataFrame,
    cache: ImageCache,
    cfg: MethodConfig,
    fold: int | None = None,
    **bar: Any,
) -> EmbeddingSet:
    """The embeddings artifact of the evaluation splits (test, or query+gallery);
    ``bar``: ``desc``/``leave`` of the progress bar (``embed_rows``). The cache
    must be of the size ``transforms.source_size`` asks for (``check_source_size``)."""
    check_source_size(cache, cfg)
    rows = table.index[table["split"].isin(EVAL_SPLITS)].to_numpy()
    rows = rows[np.isin(rows, cache.row_ids)]
    return rows_embedding_set(method, table, cache, rows, cfg, fold=fold, **bar)


def validator(
    table: pd.DataFrame,
    cache: ImageCache,
    rows: np.ndarray,
    cfg: MethodConfig,
    recall_at: tuple[int, ...],
) -> Callable[[torch.nn.Module], dict[str, float]] | None:
    """``validate(method) -> {recall@1, r_precision, map@r}`` on ``rows`` (the
    held-out validation rows), or ``None`` when there are none."""
    if len(rows) == 0:
        return None

    def validate(method: torch.nn.Module) -> dict[str, float]:
        es = rows_embedding_set(
            method, table, cache, rows, cfg, desc="validate", leave=False
        )
        metrics = evaluate_set(es, recall_at=tuple(recall_at), clustering=False)
        return {k: metrics[k] for k in ("recall@1", "r_precision", "map@r")}

    return validate
