"""``digits``: scikit-learn's bundled 8x8 digits as a smoke-test dataset
(docs/datasets.md#digits).

The 1,797 images (values 0-16) are scaled to 0-255 uint8 (``round(v * 255 / 16)``),
optionally upsampled to ``image_size`` with **nearest-neighbour** resampling (each
source pixel becomes a block; no new grey levels), and written as greyscale PNGs
``root/images/<label>/<sklearn index>.png`` with a ``manifest.json``. Classes 0-4 are
train (901 images), 5-9 test (896 images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from dml_pipelines.core.data.formats import READERS
from dml_pipelines.core.data.formats._embedded import (
    finish_embedded,
    prepare_root,
    reusable,
    write_manifest,
    write_png,
)

DEFAULT_COUNTS = {"train": 901, "test": 896}
TRAIN_CLASSES = range(5)


def images(image_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The digits as uint8 arrays.

    Args:
        image_size: output side; 8 keeps the original, larger sizes upsample with
            nearest-neighbour resampling.

    Returns:
        ``(N, image_size, image_size)`` uint8 images in 0-255 and ``(N,)`` int labels.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = np.round(data.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    if image_size != 8:
        x = np.stack(
            [
                np.asarray(
                    Image.fromarray(img).resize(
                        (image_size, image_size), Image.Resampling.NEAREST
                    )
                )
                for img in x
            ]
        )
    return x, data.target.astype(np.int64)


@READERS.register("digits")
def read(
    root: str | Path,
    *,
    expected_counts: Any = "default",
    on_missing: str = "raise",
    on_error: str = "raise",
    image_size: int = 8,
) -> pd.DataFrame:
    """Materialise the digits under ``root`` and return their index table.

    Args:
        root: folder for ``images/<label>/<n>.png`` and ``manifest.json``; reused
            when its manifest matches ``image_size`` and the images are intact.
        expected_counts: ``"default"`` ({train: 901, test: 896}), a dict split ->
            count, or ``None``.
        on_missing: accepted for the reader interface; missing images are written
            again, never skipped.
        on_error: accepted for the reader interface; the images are written by
            this reader (the cache decode still checks them).
        image_size: side of the written images (``digits.image_size``, >= 1).

    Returns:
        The index table: labels 0-9, classes 0-4 train, 5-9 test.

    Raises:
        ValueError: invalid ``image_size`` or an image-count mismatch.
    """
    del on_missing, on_error
    image_size = int(image_size)
    if image_size < 1:
        raise ValueError(f"digits.image_size: must be >= 1, got {image_size}")
    root = Path(root)
    import sklearn

    params = {"image_size": image_size, "scale": "round(v * 255 / 16)"}
    params["resample"] = "nearest"
    params["sklearn_version"] = sklearn.__version__
    manifest = reusable(root, "digits", params)
    if manifest is None:
        x, y = images(image_size)
        prepare_root(root, "digits")
        paths = [f"images/{label}/{i:04d}.png" for i, label in enumerate(y)]
        for rel, img in zip(paths, x, strict=True):
            write_png(root, rel, img)
        manifest = {"dataset": "digits", "params": params, "paths": paths}
        write_manifest(root, manifest)
    paths = manifest["paths"]
    labels = [int(rel.split("/")[1]) for rel in paths]
    splits = ["train" if lab in TRAIN_CLASSES else "test" for lab in labels]
    return finish_embedded(
        "digits", root, paths, labels, splits, expected_counts, DEFAULT_COUNTS
    )
