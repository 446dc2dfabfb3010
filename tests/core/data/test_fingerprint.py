"""The training data's fingerprint (issue 24 point 5; core/data/fingerprint.py,
docs/protocols.md "Data fingerprint") through ``train_model``: it covers every
training file's bytes, so images changed under the same names start a new run,
while a cache rebuilt from the same bytes resumes the old one."""

from __future__ import annotations

import logging
import os
import shutil
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dml_pipelines.core.data.cache import DIGESTS, ImageCache, build_cache
from dml_pipelines.core.data.fingerprint import data_fingerprint
from dml_pipelines.core.engine.run import train_model
from tests.core.engine.conftest import make_cfg

TRAIN_CLASSES, TEST_CLASSES, PER_CLASS = 4, 2, 200
"""800 training images: the former fingerprint hashed every third one only."""


def _write(root, rel: str, rng: np.random.Generator, colour: np.ndarray) -> None:
    pixels = np.clip(colour + rng.normal(0, 30, (4, 4, 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(root / rel)


def _dataset(root) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for c in range(TRAIN_CLASSES + TEST_CLASSES):
        colour = rng.integers(0, 256, 3)
        n = PER_CLASS if c < TRAIN_CLASSES else 3
        for i in range(n):
            rel = f"img/{c}_{i}.png"
            _write(root, rel, rng, colour)
            split = "train" if c < TRAIN_CLASSES else "test"
            rows.append({"path": rel, "label": c, "split": split})
    return pd.DataFrame(rows)


def _cfg():
    return make_cfg(
        backbone={"args": {"channels": [4, 8]}},
        embedding_dim=4,
        sampler={"P": 2, "K": 2, "batches_per_epoch": 1},
        transforms={"preset": "small"},
        training={"epochs": 1, "amp": False},
    )


def _touch_all(root) -> None:
    """New modification times for every file (a restored copy of the bytes)."""
    later = time.time_ns() + 10**9
    for path in (root / "img").iterdir():
        os.utime(path, ns=(later, later))


def test_images_changed_under_the_same_names_start_a_new_run(tmp_path, caplog):
    root = tmp_path / "raw"
    table = _dataset(root)
    train = table.index[table["split"] == "train"].to_numpy()
    checkpoints = tmp_path / "checkpoints"
    cache = build_cache(table, root, tmp_path / "cache")
    first, _ = train_model(table, cache, _cfg(), checkpoint_dir=checkpoints)

    # a restored copy of the same bytes (other mtimes), cache rebuilt: resumed
    _touch_all(root)
    again = build_cache(table, root, tmp_path / "cache")
    assert again.meta["source_hash"] != cache.meta["source_hash"]  # mtimes moved
    with caplog.at_level(logging.WARNING):
        resumed, _ = train_model(table, again, _cfg(), checkpoint_dir=checkpoints)
    assert resumed["data_fingerprint"] == first["data_fingerprint"]
    assert resumed["fingerprint"] == first["fingerprint"]  # the resume key
    assert "training from scratch" not in caplog.text

    # two thirds of the training images rewritten under the same names
    rng = np.random.default_rng(1)
    changed = [p for i, p in enumerate(table.loc[train, "path"]) if i % 3]
    for rel in changed:
        _write(root, rel, rng, rng.integers(0, 256, 3))
    swapped = build_cache(table, root, tmp_path / "cache")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        fresh, _ = train_model(table, swapped, _cfg(), checkpoint_dir=checkpoints)
    assert fresh["data_fingerprint"] != first["data_fingerprint"]
    assert fresh["fingerprint"] != first["fingerprint"]
    assert "other parameters, data or code" in caplog.text
    assert "training from scratch" in caplog.text

    # one image's bytes changed is enough (every file is covered)
    _write(root, changed[-1], rng, np.zeros(3))
    one = build_cache(table, root, tmp_path / "cache")
    assert data_fingerprint(table, train, one) != fresh["data_fingerprint"]


def test_a_cache_without_digests_is_refused_with_one_line(tmp_path):
    root = tmp_path / "raw"
    table = _dataset(root)
    cache = build_cache(table, root, tmp_path / "cache")
    np.testing.assert_array_equal(cache.digests.shape, (len(table), 16))
    (tmp_path / "cache" / DIGESTS).unlink()  # a cache built before the digests
    old = ImageCache.open(tmp_path / "cache")
    assert old.digests is None
    with pytest.raises(ValueError) as err:
        train_model(table, old, _cfg(), checkpoint_dir=None)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"image cache {tmp_path / 'cache'} has no per-image")
    assert msg.endswith(
        "rebuild it: kedro run --pipelines=data --params dataset=<dataset>"
    )


def test_the_digests_are_of_the_file_bytes_and_survive_a_copy(tmp_path):
    """Same bytes give the same digests wherever the cache and the data live;
    a digest array of the wrong shape is a broken cache."""
    root = tmp_path / "raw"
    table = _dataset(root)
    cache = build_cache(table, root, tmp_path / "a", num_workers=2)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)  # new mtimes
    other = build_cache(table, copy, tmp_path / "b")
    np.testing.assert_array_equal(cache.digests, other.digests)
    rows = table.index.to_numpy()
    assert data_fingerprint(table, rows, cache) == data_fingerprint(table, rows, other)
    np.save(tmp_path / "b" / DIGESTS, np.zeros((3, 16), np.uint8))
    with pytest.raises(ValueError, match=r"digests.npy has shape \(3, 16\)"):
        ImageCache.open(tmp_path / "b")
