"""Shared helpers of the embedded readers (``digits``, ``glyphs``, ``glyphs_tune``).

An embedded reader materialises its images as PNG files under ``root/images/`` plus a
``root/manifest.json`` (docs/datasets.md#embedded-datasets). A later call with the same
parameters reuses the files when the manifest matches and the images' combined SHA-256
still agrees; otherwise the images are rendered again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MANIFEST = "manifest.json"
IMAGE_DIR = "images"


def images_digest(root: Path, paths: Iterable[str]) -> str:
    """SHA-256 over the bytes of ``paths`` (relative to ``root``), in the given order.

    Raises:
        FileNotFoundError: a listed file is absent.
    """
    h = hashlib.sha256()
    for rel in paths:
        h.update(rel.encode())
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def reusable(root: Path, dataset: str, params: Mapping[str, Any]) -> dict | None:
    """Return the stored manifest if ``root`` holds ``dataset`` rendered with exactly
    ``params`` and its images are intact; ``None`` otherwise."""
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        if manifest.get("dataset") != dataset:
            return None
        if manifest.get("params") != json.loads(json.dumps(dict(params))):
            return None
        digest = images_digest(root, manifest["paths"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest if digest == manifest.get("images_sha256") else None


def prepare_root(root: Path, dataset: str) -> None:
    """Create ``root`` and clear a previous rendering of ``dataset`` in it.

    ``root/images`` is only deleted when ``root/manifest.json`` says this reader
    wrote it; foreign files in ``root/images`` raise instead of being overwritten.

    Raises:
        ValueError: ``root/images`` exists but was not written by this reader.
    """
    root.mkdir(parents=True, exist_ok=True)
    images = root / IMAGE_DIR
    if not images.exists():
        return
    owner = None
    try:
        owner = json.loads((root / MANIFEST).read_text()).get("dataset")
    except (OSError, ValueError, AttributeError):
        pass
    if owner != dataset:
        raise ValueError(
            f"{images} exists but {root / MANIFEST} does not name dataset {dataset!r}; "
            "refusing to overwrite it (use an empty root)"
        )
    (root / MANIFEST).unlink(missing_ok=True)
    shutil.rmtree(images)


def write_png(root: Path, rel: str, pixels: np.ndarray) -> None:
    """Write an (H, W) uint8 array as a greyscale PNG at ``root/rel``."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(path)


def write_manifest(root: Path, manifest: dict) -> None:
    """Write ``manifest`` (must hold ``paths``) with the images' combined SHA-256."""
    manifest = dict(manifest)
    manifest["images_sha256"] = images_digest(root, manifest["paths"])
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


def finish_embedded(
    dataset: str,
    root: Path,
    paths: Sequence[str],
    labels: Sequence[int],
    splits: Sequence[str],
    expected_counts: Any,
    default_counts: Mapping[str, int],
) -> Any:
    """The index table of a materialised dataset, with the shared count check of
    the readers (``expected_counts="default"`` means ``default_counts``)."""
    from dml_pipelines.core.data.formats._common import finish, resolve_expected

    if isinstance(expected_counts, str) and expected_counts == "default":
        expected = dict(default_counts)
    else:
        expected = resolve_expected(dataset, expected_counts)
    return finish(
        dataset,
        root,
        path=paths,
        label=labels,
        split=splits,
        source=f"{root / MANIFEST}",
        opts={"folds": 4, "expected": expected, "verify_images": False},
        on_missing="raise",
    )
