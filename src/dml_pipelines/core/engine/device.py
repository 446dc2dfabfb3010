"""The training device and its precision: ``training.device`` and
``training.amp`` turned into a ``torch.device`` and an autocast dtype."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an
    error naming ``training.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "training.device: 'cuda' requested but no CUDA device is available"
        )
    if name not in ("cpu", "cuda"):
        raise ValueError(
            f"training.device: {name!r} is invalid; valid: auto, cpu, cuda"
        )
    return torch.device(name)


def amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype of ``training.amp`` on ``device`` (``None``: float32).

    ``true``/``fp16``: float16 on CUDA, off on a CPU; ``bf16``: bfloat16 on CUDA
    and CPU; ``false``: off."""
    if amp is False:
        return None
    if amp == "bf16":
        return torch.bfloat16
    return torch.float16 if device.type == "cuda" else None
