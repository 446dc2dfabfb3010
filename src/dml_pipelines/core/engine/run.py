"""High-level entry points the Kedro nodes call (and notebooks can too):
``train_model``, ``method_from_state``, ``embedding_set`` and ``data_fingerprint``."""

from __future__ import annotations

import os
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


def loader_workers(training: Any) -> int:
    """``training.num_workers`` as a number: ``auto`` = 0 on a CPU device,
    else min(8, cores // devices − 1) (the rest feed the devices' processes)."""
    if training.num_workers != "auto":
        return int(training.num_workers)
    if resolve_device(training.device).type == "cpu":
        return 0
    cores = os.cpu_count() or 1
    return max(0, min(8, cores // training.devices - 1))


def training_rows(table: pd.DataFrame, training: Any) -> tuple[np.ndarray, np.ndarray]:
    """Row ids to train on and to validate on (empty when not needed).

    ``checkpoint_selection: validation`` holds out the training classes of
    ``fold_block == training.validation_fold`` (MLRC fold F trains on the other
    three quarters); ``test_recall_at_1`` validates on the evaluation split.
    """
    selection = training.checkpoint_selection
    train = table["split"] == "train"
    if selection == "validation":
        block = table["fold_block"] == training.validation_fold
        held = train & block.fillna(False)
        return table.index[train & ~held].to_numpy(), table.index[held].to_numpy()
    if selection == "test_recall_at_1":
        return table.index[train].to_numpy(), table.index[
            table["split"] != "train"
        ].to_numpy()
    return table.index[train].to_numpy(), np.empty(0, dtype=np.int64)


def data_fingerprint(table: pd.DataFrame, rows: np.ndarray, cache: ImageCache) -> str:
    """Fingerprint of the training data: the index rows (path, label, box) and
    the cache's settings, offsets and a strided sample of its pixels (≤ 4 MiB
    hashed, so a dataset swapped under the same file names is noticed)."""
    import hashlib
    import json

    h = hashlib.sha256()
    cols = [c for c in ("path", "label", "x1", "y1", "x2", "y2") if c in table]
    h.update(pd.util.hash_pandas_object(table.loc[rows, cols], index=True).values)
    meta = {k: v for k, v in cache.meta.items() if k not in ("directory",)}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    positions = cache.positions_of(rows)
    h.update(np.ascontiguousarray(positions).tobytes())
    step = max(1, len(positions) // 256)
    for pos in positions[::step]:
        img = cache.image(int(pos))
        h.update(np.ascontiguousarray(img.reshape(-1)[:: max(1, img.size // 16384)]))
    return h.hexdigest()[:16]


def noisy_labels(
    labels: np.ndarray, num_classes: int, fraction: float, seed: int
) -> np.ndarray:
    """``labels`` (N,) with round(fraction·N) entries, chosen by ``seed``,
    moved to another class drawn uniformly among the C − 1 others."""
    if fraction <= 0:
        return labels
    rng = np.random.default_rng([seed, 0x4E015E])
    out = labels.copy()
    idx = rng.choice(len(labels), size=round(fraction * len(labels)), replace=False)
    shift = rng.integers(1, num_classes, size=len(idx))
    out[idx] = (labels[idx] + shift) % num_classes
    return out


def warm_start(method: torch.nn.Module, path: str) -> None:
    """Initialise ``method`` from ``training.init_from``: a project checkpoint
    (``last.pt``/``best.pt``/``model_state.pt``: its ``model`` weights) or a
    torchvision weights file for the backbone (keys of the torchvision model).
    Loaded with ``weights_only=True``; keys that match nothing are an error."""
    from dml_pipelines.core.engine.trainer import load_checkpoint

    if not Path(path).exists():
        raise ValueError(f"training.init_from: {path} does not exist")
    state = load_checkpoint(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        method.load_export_state_dict(state["model"])
        return
    backbone = method.embedder.backbone
    names = getattr(backbone, "child_names", None)
    if not names:
        raise ValueError(
            f"training.init_from: {path} is not a project checkpoint and backbone "
            f"{type(backbone).__name__} takes no torchvision weights file"
        )
    index = {name: str(i) for i, name in enumerate(names)}
    mapped = {}
    for key, value in state.items():
        child, _, rest = key.partition(".")
        if child in index:
            mapped[f"{index[child]}.{rest}"] = value
    missing, _ = backbone.body.load_state_dict(mapped, strict=False)
    if missing:
        raise ValueError(
            f"training.init_from: {path} lacks {len(missing)} backbone weights "
            f"(first: {missing[:3]})"
        )


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
        num_workers=loader_workers(cfg.training),
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
    fold: int | None = None,
) -> EmbeddingSet:
    """The embeddings artifact of index-table ``rows`` (query/gallery flags when
    the rows hold query or gallery images; ``fold``: the MLRC fold model)."""
    split = table.loc[rows, "split"].to_numpy()
    qg = bool(np.isin(split, ["query", "gallery"]).any())
    return EmbeddingSet(
        embeddings=embed_rows(method, cache, rows, cfg),
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
) -> EmbeddingSet:
    """The embeddings artifact of the evaluation splits (test, or query+gallery)."""
    rows = table.index[table["split"].isin(EVAL_SPLITS)].to_numpy()
    rows = rows[np.isin(rows, cache.row_ids)]
    return rows_embedding_set(method, table, cache, rows, cfg, fold=fold)


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
    callbacks: list[Any] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train ``cfg.method`` on the training rows of ``table``; with
    ``training.devices: N > 1`` in N processes on shards of each global batch
    (``core/engine/distributed.py``), rank 0 writing the results.

    Returns:
        ``model_state`` (``config``, ``classes`` = original training labels in
        re-indexed order, ``model`` = the method's inference weights
        (``export_state_dict``), ``epoch``, ``selected_epoch``, ``fingerprint``)
        and the per-epoch history.
    """
    world = cfg.training.devices
    if world == 1:
        return _fit(table, cache, cfg, checkpoint_dir, recall_at, callbacks)
    if callbacks:
        raise ValueError("train_model: extra callbacks need training.devices: 1")
    import tempfile

    from dml_pipelines.core.engine.distributed import spawn
    from dml_pipelines.core.engine.trainer import load_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.pt"
        args = (table, cache, cfg, checkpoint_dir, recall_at, out)
        spawn(_fit_rank, world, args)
        result = load_checkpoint(out)
    return result["state"], pd.DataFrame(result["history"])


def _fit_rank(rank, world, table, cache, cfg, checkpoint_dir, recall_at, out) -> None:
    """One rank of a multi-process run; rank 0 saves the result to ``out``."""
    from dml_pipelines.core.engine.trainer import save_atomic

    state, history = _fit(
        table, cache, cfg, checkpoint_dir, recall_at, None, shard=(rank, world)
    )
    if rank == 0:
        save_atomic({"state": state, "history": history.to_dict("records")}, out)


def _fit(
    table: pd.DataFrame,
    cache: ImageCache,
    cfg: MethodConfig,
    checkpoint_dir: str | Path | None,
    recall_at: tuple[int, ...],
    callbacks: list[Any] | None,
    shard: tuple[int, int] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    train_rows, val_rows = training_rows(table, cfg.training)
    train_rows = train_rows[np.isin(train_rows, cache.row_ids)]
    original = table.loc[train_rows, "label"].to_numpy(np.int64)
    classes, labels = np.unique(original, return_inverse=True)  # re-index 0..C−1
    labels = noisy_labels(
        labels, len(classes), cfg.training.label_noise, cfg.training.seed
    )
    method = build_for_training(cfg, len(classes))
    if cfg.training.init_from:
        warm_start(method, cfg.training.init_from)
    if shard is not None and cfg.training.sync_bn:
        from dml_pipelines.core.engine.distributed import convert_batchnorm

        # the embedder sees each rank's shard; layers after the method's gather
        # already see the global batch
        convert_batchnorm(method.embedder, resolve_device(cfg.training.device))
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
        num_workers=loader_workers(cfg.training),
        seed=cfg.training.seed,
        shard=shard,
    )
    fingerprint = data_fingerprint(table, train_rows, cache)
    trainer = Trainer(
        method,
        loader,
        transforms.normalize,
        cfg,
        checkpoint_dir=checkpoint_dir,
        validate=_validator(table, cache, val_rows, cfg, recall_at),
        callbacks=list(callbacks or []),
        data_fingerprint=fingerprint,
    )
    history = trainer.fit()
    state = {
        # the epochs' wall time (training + validation), summed over every
        # process of a resumed run, so a finished run re-scored after a resume
        # keeps the time it took to train
        "wall_time_s": float(sum(r.get("seconds", 0.0) for r in trainer.history)),
        "device": str(trainer.device)
        + (f" x{cfg.training.devices}" if cfg.training.devices > 1 else ""),
        "config": cfg.model_dump(mode="json"),
        "classes": torch.as_tensor(classes),
        "model": method.export_state_dict(),
        "epoch": trainer.epoch,
        "selected_epoch": trainer.best_epoch,
        "fingerprint": trainer.fingerprint,
        "data_fingerprint": fingerprint,
    }
    return state, history


def method_from_state(
    state: dict[str, Any] | None, cfg: MethodConfig, num_classes: int
):
    """Rebuild the method; load ``state["model"]`` unless ``state`` is None (the
    untrained network, built with the same seed as training)."""
    method = build_for_training(cfg, num_classes)
    if state is not None:
        method.load_export_state_dict(state["model"])
    return method.eval()


def num_train_classes(table: pd.DataFrame, cfg: MethodConfig) -> int:
    """Number of classes the method is trained on (after any validation hold-out)."""
    rows, _ = training_rows(table, cfg.training)
    return int(table.loc[rows, "label"].nunique())
