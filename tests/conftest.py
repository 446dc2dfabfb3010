import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")


def minimal_block(method: str = "contrastive_c1", **over: Any) -> dict[str, Any]:
    """The smallest block of ``method`` that builds and trains a step on a CPU,
    as the raw dict a parameters file holds: a two-layer ``small_cnn``, 8-d
    embeddings, ``training.device: cpu``, and for a baseline its loss. ``over``
    replaces whole top-level keys (``training={...}`` restates ``device``)."""
    from dml_pipelines.core.methods.baselines_config import BASELINES

    raw: dict[str, Any] = {
        "method": method,
        "backbone": {"name": "small_cnn", "args": {"channels": [8, 16]}},
        "embedding_dim": 8,
        "training": {"device": "cpu"},
    }
    if method in BASELINES:
        raw["loss"] = {"name": method}
    return {**raw, **over}


@pytest.fixture
def project(tmp_path):
    """A scratch copy of the Kedro project (conf + pyproject; the package itself
    is installed), so runs write their data/ under tmp_path."""
    for name in ("conf", "pyproject.toml", ".telemetry", "dvc.yaml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(
                src, tmp_path / name, ignore=shutil.ignore_patterns("local")
            )
        else:
            shutil.copy(src, tmp_path / name)
    (tmp_path / "conf" / "local").mkdir(exist_ok=True)
    (tmp_path / "src").mkdir()
    return tmp_path


def colour_classes(root: Path, shape, per_class: int, seed: int = 0) -> pd.DataFrame:
    """Write a 4-class train / 2-class test set of noisy class-coloured PNGs of
    ``shape`` (height, width) under ``root/img``; returns its index table."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(6):
        colour = rng.integers(0, 256, 3)
        for i in range(per_class):
            rel = f"img/{c}_{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            pixels = np.clip(colour + rng.normal(0, 30, (*shape, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / rel)
            rows.append(
                {"path": rel, "label": c, "split": "train" if c < 4 else "test"}
            )
    return pd.DataFrame(rows)


def two_shape_cache(tmp: Path, n: int, resize_shorter: int | None):
    """An ``ImageCache`` of ``n`` random PNGs, 44×33 and 30×40 in turn (labels
    i // 3), built at ``resize_shorter`` (``None``: their own size)."""
    from dml_pipelines.core.data.cache import build_cache

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        h, w = (30, 40) if i % 2 else (44, 33)
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp / f"{i}.png")
        paths.append(f"{i}.png")
    table = pd.DataFrame({"path": paths, "label": np.arange(n) // 3, "split": "train"})
    return build_cache(table, tmp, tmp / "cache", resize_shorter=resize_shorter)
