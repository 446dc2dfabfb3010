"""Fitting one process's run: the data (``training_data``), the run built once
(``build_run``), ``Trainer(run).fit()`` and the ``model_state`` it returns;
``fit_rank`` is one rank of a multi-process run (``spawn`` or torchrun)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.data.cache import ImageCache
from dml_pipelines.core.data.transforms import Transforms
from dml_pipelines.core.engine.assemble import build_run
from dml_pipelines.core.engine.checkpoints import save_atomic
from dml_pipelines.core.engine.trainer import Trainer
from dml_pipelines.core.engine.training_data import cache_record, training_data
from dml_pipelines.core.provenance import library_versions


def method_summary(method: torch.nn.Module) -> dict[str, Any]:
    """What the method reports of its own run (``summary()``: CCP's instances,
    say), as plain JSON values; empty for methods without one."""
    summary = getattr(method, "summary", None)
    return json.loads(json.dumps(summary(), default=float)) if summary else {}


def fit_rank(
    rank,
    world,
    table,
    cache,
    cfg,
    checkpoint_dir,
    recall_at,
    transforms,
    out=None,
    callbacks=None,
    run_files=None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One rank of a multi-process run (``spawn`` or torchrun's
    ``core/engine/launch.py``); rank 0 also saves the result to ``out``."""
    state, history = fit(
        table,
        cache,
        cfg,
        checkpoint_dir,
        recall_at,
        callbacks,
        transforms,
        shard=(rank, world),
        run_files=run_files,
    )
    if rank == 0 and out is not None:
        save_atomic({"state": state, "history": history.to_dict("records")}, out)
    return state, history


def fit(
    table: pd.DataFrame,
    cache: ImageCache,
    cfg: MethodConfig,
    checkpoint_dir: str | Path | None,
    recall_at: tuple[int, ...],
    callbacks: list[Any] | None,
    transforms: Transforms | None = None,
    shard: tuple[int, int] | None = None,
    run_files: list[str | Path] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Build the run (``build_run``), fit it (``Trainer``) and return the
    ``model_state`` (see ``train_model``) and the per-epoch history;
    ``shard``: (rank, world) of a multi-process run."""
    data = training_data(table, cache, cfg)
    run = build_run(
        cfg,
        data,
        checkpoint_dir=checkpoint_dir,
        recall_at=recall_at,
        callbacks=list(callbacks or []),
        transforms=transforms,
        shard=shard,
        run_files=run_files,
    )
    trainer = Trainer(run)
    history = trainer.fit()
    devices = cfg.training.devices
    state = {
        # the epochs' wall time (training + validation), summed over every
        # process of a resumed run, so a finished run re-scored after a resume
        # keeps the time it took to train
        "wall_time_s": float(sum(r.get("seconds", 0.0) for r in trainer.history)),
        "device": str(run.device) + (f" x{devices}" if devices > 1 else ""),
        "config": run.checkpoints.config,
        "classes": torch.as_tensor(data.classes),
        "model": run.method.export_state_dict(),
        "epoch": trainer.epoch,
        "selected_epoch": trainer.best_epoch,
        "fingerprint": run.checkpoints.key,
        "data_fingerprint": data.fingerprint,
        "code_digest": run.checkpoints.code_digest,
        "libraries": library_versions(),
        "method_summary": method_summary(run.method),
        "cache": cache_record(cache),
    }
    return state, history
