"""DeepFashion In-Shop Clothes Retrieval reader (specs/datasets.md §5, §10 items 4-5).

``Eval/list_eval_partition.txt`` (a count line, a header line, then
``image_name item_id evaluation_status``) gives the rows and the
train/query/gallery split; ``Anno/list_bbox_inshop.txt`` (two header lines, then
``image_name clothes_type pose_type x_1 y_1 x_2 y_2``) gives the boxes and the
clothes type, joined by image name. Labels are the original item ids
``int(item_id[3:])``, so query and gallery are compared by item id.

Boxes are stored as the annotation file gives them, in pixels of the low-resolution
``img/`` images, also when ``image_root='img_highres'``. The table records this in
``attrs["bbox_image_root"] = "img"``; rescaling them by the measured high- to
low-resolution size ratio (only when ``data.use_bbox`` is on) is left to the
prepared-image cache, which decodes the images anyway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dml_pipelines.core.data.formats import READERS
from dml_pipelines.core.data.formats._common import (
    Source,
    check_options,
    finish,
    read_rows,
    require_files,
)

NAME = "inshop"
PARTITION = "Eval/list_eval_partition.txt"
BBOXES = "Anno/list_bbox_inshop.txt"
IMAGE_ROOTS = ("img", "img_highres")
STATUSES = ("train", "query", "gallery")


def _image_prefix(root: Path, image_root: str) -> str:
    """``"<image_root>/"`` or ``"Img/<image_root>/"``, whichever folder exists."""
    for prefix in (f"{image_root}/", f"Img/{image_root}/"):
        if (root / prefix).is_dir():
            return prefix
    raise FileNotFoundError(
        f"{NAME}: image folder not found: expected {root / image_root} or "
        f"{root / 'Img' / image_root} (inshop.image_root={image_root!r})"
    )


def _label(source: Source, item_id: str, lineno: int) -> int:
    """``int(item_id[3:])`` for item ids like ``id_00000002``."""
    if not item_id.startswith("id_"):
        raise source.error(lineno, f"item_id {item_id!r} does not start with 'id_'")
    return source.int(item_id[3:], lineno, "item_id number")


@READERS.register(NAME)
def read(
    root: Path,
    *,
    expected_counts: Any = "default",
    on_missing: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """Read In-Shop into an index table.

    Args:
        root: the folder holding ``Eval/``, ``Anno/`` and ``img/`` (or ``Img/img/``).
        expected_counts: ``"default"`` (25,882 train / 14,218 query / 12,612
            gallery), a dict split -> count, or ``None``.
        on_missing: ``raise`` or ``skip`` for listed images that are absent.
        **options: ``image_root`` (DEFAULT ``"img"``; or ``"img_highres"``): the
            image folder that replaces the first component of the partition file's
            paths; ``folds`` (DEFAULT 4): number of MLRC class blocks.

    Returns:
        The index table in partition-file order: ``label`` = item id number,
        ``super_label`` = clothes_type, low-resolution boxes, ``path`` =
        ``[Img/]<image_root>/...``.
    """
    root = Path(root)
    opts = check_options(
        NAME,
        options,
        {"image_root": "img"},
        expected_counts=expected_counts,
        on_missing=on_missing,
    )
    image_root = opts["image_root"]
    if image_root not in IMAGE_ROOTS:
        raise ValueError(
            f"{NAME}: image_root {image_root!r} is invalid; "
            f"valid: {', '.join(IMAGE_ROOTS)}"
        )
    partition, bboxes = (
        Source(NAME, p) for p in require_files(NAME, root, (PARTITION, BBOXES))
    )
    prefix = _image_prefix(root, image_root)

    box_of: dict[str, tuple[int, list[str]]] = {}
    for lineno, fields in read_rows(bboxes, 7, skip=2):
        if fields[0] in box_of:
            raise bboxes.error(lineno, f"duplicate image_name {fields[0]}")
        box_of[fields[0]] = (lineno, fields)

    _check_count_line(partition)
    path, label, split, box, clothes = [], [], [], [], []
    for lineno, (name, item_id, status) in read_rows(partition, 3, skip=2):
        if status not in STATUSES:
            raise partition.error(
                lineno, f"evaluation_status {status!r}; valid: {', '.join(STATUSES)}"
            )
        item = _label(partition, item_id, lineno)
        if "/" not in name:
            raise partition.error(lineno, f"image_name {name!r} has no folder")
        if name not in box_of:
            raise partition.error(lineno, f"image {name} has no row in {bboxes.path}")
        box_line, box_fields = box_of[name]
        path.append(prefix + name.split("/", 1)[1])
        label.append(item)
        split.append(status)
        clothes.append(bboxes.int(box_fields[1], box_line, "clothes_type"))
        box.append([bboxes.float(v, box_line, "box value") for v in box_fields[3:]])

    table = finish(
        NAME,
        root,
        path=path,
        label=label,
        split=split,
        boxes=np.asarray(box, float).reshape(-1, 4),
        super_label=clothes,
        source=str(partition.path),
        opts=opts,
        on_missing=on_missing,
    )
    table.attrs["bbox_image_root"] = "img"
    return table


def _check_count_line(source: Source) -> None:
    """The partition file's first line must be an image count (format check)."""
    with open(source.path, encoding="utf-8-sig") as f:
        first = f.readline().strip()
    source.int(first, 1, "image count line")
