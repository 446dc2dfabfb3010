"""CUB-200-2011 reader (docs/datasets.md#cub-200-2011-cub200).

The root is the extracted ``CUB_200_2011/`` folder or its parent. ``images.txt``,
``image_class_labels.txt`` and ``bounding_boxes.txt`` are joined by image id; the
DML split is by class (1-100 train, 101-200 test; option ``class_split: halves``
splits the classes present in half, for a partial copy). ``train_test_split.txt`` (the
classification split) is never read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dml_pipelines.core.data.formats import READERS
from dml_pipelines.core.data.formats._common import (
    Source,
    by_id,
    check_options,
    class_splitter,
    finish,
    locate,
    read_rows,
    require_files,
)

NAME = "cub200"
FILES = ("images.txt", "image_class_labels.txt", "bounding_boxes.txt")
NUM_CLASSES = 200
LAST_TRAIN_CLASS = 100


@READERS.register(NAME)
def read(
    root: Path,
    *,
    expected_counts: Any = "default",
    on_missing: str = "raise",
    on_error: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """Read CUB-200-2011 into an index table.

    Args:
        root: ``CUB_200_2011/`` or the folder that holds it.
        expected_counts: ``"default"`` (5,864 train / 5,924 test), a dict split ->
            count, or ``None``.
        on_missing: ``raise`` or ``skip`` for listed images that are absent.
        on_error: ``raise`` or ``skip`` for files that are not readable images.
        **options: ``class_split`` (DEFAULT ``"standard"``: classes 1-100 train;
            ``"halves"``: the lower half of the classes present, for a partial
            copy); ``verify_images`` (DEFAULT true): open every image header;
            ``folds`` (DEFAULT 4): number of MLRC class blocks.

    Returns:
        The index table: ``path`` = ``images/<class folder>/<file>`` (prefixed with
        ``CUB_200_2011/`` when ``root`` is the parent), ``label`` 1-200, boxes
        ``(x, y, x + w, y + h)``, rows in ``images.txt`` order.
    """
    root = Path(root)
    opts = check_options(
        NAME,
        options,
        {"class_split": "standard"},
        expected_counts=expected_counts,
        on_missing=on_missing,
        on_error=on_error,
    )
    splitter = class_splitter(NAME, opts["class_split"], LAST_TRAIN_CLASS)
    base = locate(root, FILES[0], "CUB_200_2011")
    prefix = "" if base == root else base.relative_to(root).as_posix() + "/"
    images, labels, boxes = (Source(NAME, p) for p in require_files(NAME, base, FILES))
    label_of = by_id(labels, read_rows(labels, 2))
    box_of = by_id(boxes, read_rows(boxes, 5))

    path, label, box = [], [], []
    for image_id, (lineno, fields) in by_id(images, read_rows(images, 2)).items():
        if image_id not in label_of:
            raise images.error(
                lineno, f"image id {image_id} has no row in {labels.path}"
            )
        if image_id not in box_of:
            raise images.error(
                lineno, f"image id {image_id} has no row in {boxes.path}"
            )
        lab_line, lab_fields = label_of[image_id]
        cls = labels.int(lab_fields[1], lab_line, "class id")
        if not 1 <= cls <= NUM_CLASSES:
            raise labels.error(lab_line, f"class id {cls} is outside 1..{NUM_CLASSES}")
        box_line, box_fields = box_of[image_id]
        x, y, w, h = (boxes.float(v, box_line, "box value") for v in box_fields[1:])
        path.append(f"{prefix}images/{fields[1]}")
        label.append(cls)
        box.append((x, y, x + w, y + h))

    return finish(
        NAME,
        root,
        path=path,
        label=label,
        split=splitter,
        boxes=np.asarray(box, float).reshape(-1, 4),
        source=str(images.path),
        opts=opts,
        on_missing=on_missing,
    )
