"""Training entry point the Kedro nodes call (and notebooks can too):
``train_model`` — in one process, in ``training.devices`` spawned processes, or
under torchrun — returning the run's ``model_state`` and history.

Each process fits its run with ``core/engine/fit.py``: built once by
``build_run`` (``core/engine/assemble.py``), fitted by ``Trainer(run)``
(``core/engine/trainer.py``). The data a run trains on is
``core/engine/training_data.py``'s, embedding and validation
``core/engine/embed.py``'s, the model-state checks ``core/engine/model_state.py``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.core.data.cache import ImageCache
from dml_pipelines.core.data.transforms import Transforms
from dml_pipelines.core.engine.checkpoints import load_checkpoint
from dml_pipelines.core.engine.fit import fit, fit_rank
from dml_pipelines.core.engine.training_data import check_source_size, run_transforms


def train_model(
    table: pd.DataFrame,
    cache: ImageCache,
    cfg: MethodConfig,
    *,
    checkpoint_dir: str | Path | None,
    recall_at: tuple[int, ...] = (1, 2, 4, 8),
    callbacks: list[Any] | None = None,
    transforms: Transforms | None = None,
    run_files: list[str | Path] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train ``cfg.method`` on the training rows of ``table``; with
    ``training.devices: N > 1`` in N processes on shards of each global batch
    (``core/engine/distributed.py``), rank 0 writing the results; under
    ``torchrun`` (``python -m dml_pipelines.train``) in torchrun's processes
    (``core/engine/launch.py``, ``docs/distributed.md``).

    ``transforms``: the training preset to use (the Kedro node passes the one
    rebuilt from the run's ``augmentation`` dataset); it must be the one
    ``cfg.transforms`` resolves to (the resume key holds the config), which is
    the default. ``run_files``: the run's other files (its ``model_state.pt``),
    moved aside with the checkpoints when the run is replaced (``Trainer``).

    Returns:
        ``model_state`` (``config``, ``classes`` = original training labels in
        re-indexed order, ``model`` = the method's inference weights
        (``export_state_dict``), ``epoch``, ``selected_epoch``, ``fingerprint``,
        ``cache`` = the cache trained on, ``cache_record``; ``code_digest``,
        ``libraries``, ``method_summary`` = the method's ``summary()``) and the
        per-epoch history.

    Raises:
        ValueError: ``cache`` is not of the size ``transforms.source_size`` asks
            for (``check_source_size``), or ``transforms`` is not the config's.
    """
    check_source_size(cache, cfg)
    if transforms is not None and transforms != run_transforms(cfg):
        raise ValueError(
            "train_model: transforms differ from the preset cfg.transforms "
            f"resolves to ({transforms.preset!r} with other fields)"
        )
    from dml_pipelines.core.engine import launch

    if launch.current() is not None:  # rank 0 under torchrun (docs/distributed.md)
        if callbacks:
            raise ValueError("train_model: extra callbacks need one process")
        return launch.lead(
            table, cache, cfg, checkpoint_dir, recall_at, transforms, run_files
        )
    world = cfg.training.devices
    if world == 1:
        return fit(
            table,
            cache,
            cfg,
            checkpoint_dir,
            recall_at,
            callbacks,
            transforms,
            run_files=run_files,
        )
    if callbacks:
        raise ValueError("train_model: extra callbacks need training.devices: 1")
    import tempfile

    from dml_pipelines.core.engine.distributed import spawn

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.pt"
        args = (
            table,
            cache,
            cfg,
            checkpoint_dir,
            recall_at,
            transforms,
            out,
            None,
            run_files,
        )
        spawn(fit_rank, world, args)
        result = load_checkpoint(out)
    return result["state"], pd.DataFrame(result["history"])
