"""Checkpoint files: the resume key, atomic saves and ``weights_only`` loads
(``last.pt``/``best.pt`` are written by the ``Trainer``, ``core/engine/trainer.py``;
docs/architecture.md "Checkpoints")."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dml_pipelines.core.identity import config_hash

CHECKPOINT_FORMAT = 2


def config_fingerprint(
    config: dict[str, Any], data_fingerprint: str = "", code: str = ""
) -> str:
    """Resume key: hash of the run's identity — the resolved config without the
    settings that cannot change a result (``run_identity``), the training data's
    fingerprint and the digest of the code training imports
    (``core/provenance.py``). A checkpoint is resumed only under the same key,
    so a run is never continued into one with other parameters, data or code."""
    return config_hash(config, data_fingerprint, code, length=16)


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename (a kill never leaves a
    truncated checkpoint)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; one-line error naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or not a checkpoint
        raise ValueError(
            f"checkpoint {path} cannot be loaded: {exc}".splitlines()[0]
        ) from None
