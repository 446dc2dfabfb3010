"""High-level entry points the Kedro nodes call (and notebooks can too):
``train_model``, ``embed_split`` and ``untrained_state``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.data.cache import ImageCache
from dml_pipelines.core.data.loader import make_loader
from dml_pipelines.core.data.samplers import PKSampler
from dml_pipelines.core.data.transforms import build_transforms
from dml_pipelines.core.engine.trainer import Trainer, resolve_device
from dml_pipelines.core.evaluation import EmbeddingSet
from dml_pipelines.core.evaluation.report import evaluate_set
from dml_pipelines.core.methods.registry import build_method

EVAL_SPLITS = ("test", "query", "gallery")


def _transforms(cfg: MethodConfig):
    t = cfg.transforms
    return build_transforms(
        t.preset, image_size=t.image_size, normalize_std=t.normalize_std
    )


def training_rows(table: pd.DataFrame, selection: str) -> tuple[np.ndarray, np.ndarray]:
    """Row ids to train on and to validate on (empty when not needed).

    ``validation`` holds out the training classes of ``fold_block == 3``
    (specs/metrics.md §7); ``test_recall_at_1`` validates on the evaluation split.
    """
    train = table["split"] == "train"
    if selection == "validation":
        held = train & (table["fold_block"] == 3).fillna(False)
        return table.index[train & ~held].to_numpy(), table.index[held].to_numpy()
    if selection == "test_recall_at_1":
        return table.index[train].to_numpy(), table.index[
            table["split"] != "train"
        ].to_numpy()
    return table.index[train].to_numpy(), np.empty(0, dtype=np.int64)


def build_for_training(cfg: MethodConfig, num_classes: int) -> torch.nn.Module:
    """Seed, then build the method (the untrained network is this same model)."""
    torch.manual_seed(cfg.training.seed)
    return build_method(cfg, num_classes)


def embed_rows(
    method: torch.nn.Module,
    cache: ImageCache,
    rows: np.ndarray,
    cfg: MethodConfig,
    device: torch.device | None = None,
) -> np.ndarray:
    """Evaluation embeddings (len(rows), D) float32 of index-table ``rows``."""
    device = device or resolve_device(cfg.training.device)
    transforms = _transforms(cfg)
    positions = cache.positions_of(rows)
    loader = make_loader(
        cache,
        positions,
        np.zeros(len(positions), dtype=np.int64),
        transforms,
        batch_size=cfg.training.eval_batch_size,
        train=False,
        num_workers=cfg.training.num_workers,
    )
    method.to(device).eval()
    out = []
    with torch.no_grad():
        for images, _ in loader:
            images = transforms.normalize(images.to(device), False)
            out.append(method.embed(images).float().cpu())
    if not out:
        return np.zeros((0, method.embedder.embedding_dim), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def rows_embedding_set(
    method: torch.nn.Module,
    table: pd.DataFrame,
    cache: ImageCache,
    rows: np.ndarray,
    cfg: MethodConfig,
) -> EmbeddingSet:
    """The embeddings artifact of index-table ``rows`` (query/gallery flags when
    the rows hold query or gallery images)."""
    split = table.loc[rows, "split"].to_numpy()
    qg = bool(np.isin(split, ["query", "gallery"]).any())
    return EmbeddingSet(
        embeddings=embed_rows(method, cache, rows, cfg),
        labels=table.loc[rows, "label"].to_numpy(np.int64),
        index=np.asarray(rows, dtype=np.int64),
        normalization=method.normalization,
        is_query=(split == "query") if qg else None,
        is_gallery=(split == "gallery") if qg else None,
    )


def embedding_set(
    method: torch.nn.Module, table: pd.DataFrame, cache: ImageCache, cfg: MethodConfig
) -> EmbeddingSet:
    """The embeddings artifact of the evaluation splits (test, or query+gallery)."""
    rows = table.index[table["split"].isin(EVAL_SPLITS)].to_numpy()
    return rows_embedding_set(
        method, table, cache, rows[np.isin(rows, cache.row_ids)], cfg
    )


def _validator(table, cache, rows, cfg, recall_at):
    if len(rows) == 0:
        return None

    def validate(method: torch.nn.Module) -> dict[str, float]:
        es = rows_embedding_set(method, table, cache, rows, cfg)
        metrics = evaluate_set(es, recall_at=tuple(recall_at), clustering=False)
        return {k: metrics[k] for k in ("recall@1", "r_precision", "map@r")}

    return validate


def train_model(
    table: pd.DataFrame,
    cache: ImageCache,
    cfg: MethodConfig,
    *,
    checkpoint_dir: str | Path | None,
    recall_at: tuple[int, ...] = (1, 2, 4, 8),
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train ``cfg.method`` on the training rows of ``table``.

    Returns:
        ``model_state`` (``config``, ``classes`` = original training labels in
        re-indexed order, ``model`` state dict, ``epoch``, ``selected_epoch``)
        and the per-epoch history.
    """
    train_rows, val_rows = training_rows(table, cfg.training.checkpoint_selection)
    train_rows = train_rows[np.isin(train_rows, cache.row_ids)]
    original = table.loc[train_rows, "label"].to_numpy(np.int64)
    classes, labels = np.unique(original, return_inverse=True)  # re-index 0..C−1
    method = build_for_training(cfg, len(classes))
    s = cfg.sampler
    rf = s.random_factorisation
    sampler = PKSampler(
        labels,
        s.P,
        s.K,
        seed=cfg.training.seed,
        allow_repeated_classes=s.allow_repeated_classes,
        random_factorisation=(rf.batch_size, rf.P_choices) if rf else None,
        order=s.order,
        batches_per_epoch=s.batches_per_epoch,
    )
    transforms = _transforms(cfg)
    loader = make_loader(
        cache,
        cache.positions_of(train_rows),
        labels.astype(np.int64),
        transforms,
        batch_sampler=sampler,
        train=True,
        num_workers=cfg.training.num_workers,
        seed=cfg.training.seed,
    )
    trainer = Trainer(
        method,
        loader,
        transforms.normalize,
        cfg,
        checkpoint_dir=checkpoint_dir,
        validate=_validator(table, cache, val_rows, cfg, recall_at),
    )
    history = trainer.fit()
    state = {
        "config": cfg.model_dump(mode="json"),
        "classes": torch.as_tensor(classes),
        "model": {k: v.detach().cpu() for k, v in method.state_dict().items()},
        "epoch": trainer.epoch,
        "selected_epoch": trainer.best_epoch
        if trainer.selection_key
        else trainer.epoch,
    }
    return state, history


def method_from_state(
    state: dict[str, Any] | None, cfg: MethodConfig, num_classes: int
):
    """Rebuild the method; load ``state["model"]`` unless ``state`` is None (the
    untrained network, built with the same seed as training)."""
    method = build_for_training(cfg, num_classes)
    if state is not None:
        method.load_state_dict(state["model"])
    return method.eval()


def num_train_classes(table: pd.DataFrame, cfg: MethodConfig) -> int:
    """Number of classes the method is trained on (after any validation hold-out)."""
    rows, _ = training_rows(table, cfg.training.checkpoint_selection)
    return int(table.loc[rows, "label"].nunique())
