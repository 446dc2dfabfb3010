"""DeepFashion In-Shop Clothes Retrieval reader
(docs/datasets.md#in-shop-clothes-retrieval-inshop).

``Eval/list_eval_partition.txt`` (a count line, a header line, then
``image_name item_id evaluation_status``) gives the rows and the
train/query/gallery split; ``Anno/list_bbox_inshop.txt`` (two header lines, then
``image_name clothes_type pose_type x_1 y_1 x_2 y_2``) gives the boxes and the
clothes type, joined by image name. Labels are the original item ids
``int(item_id[3:])``, so query and gallery are compared by item id.

The annotation file gives boxes in pixels of the low-resolution ``img/`` images.
With ``image_root='img_highres'`` every box is rescaled by the measured size ratio
(width and height, read from the image headers) of its high-resolution image to
its low-resolution one, so the table's boxes are in pixels of the images it
points at. When the low-resolution folder is absent (or one of the two images is
unreadable) the ratio cannot be measured: those boxes become null, with a warning.
``attrs["bbox_image_root"]`` names the folder whose pixels the boxes are in.
"""

from __future__ import annotations

import warnings
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
    on_error: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """Read In-Shop into an index table.

    Args:
        root: the folder holding ``Eval/``, ``Anno/`` and ``img/`` (or ``Img/img/``).
        expected_counts: ``"default"`` (25,882 train / 14,218 query / 12,612
            gallery), a dict split -> count, or ``None``.
        on_missing: ``raise`` or ``skip`` for listed images that are absent.
        on_error: ``raise`` or ``skip`` for files that are not readable images
            (checked when the option ``verify_images`` is true, the DEFAULT).
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
        on_error=on_error,
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
    if image_root != "img":
        _rescale_boxes(root, table, prefix, image_root)
    return table


def _rescale_boxes(root: Path, table: pd.DataFrame, prefix: str, image_root: str):
    """Rescale the low-resolution boxes of ``table`` (in place) to the images under
    ``prefix`` by the measured per-image size ratio; null where not measurable."""
    from dml_pipelines.core.data.images import image_sizes

    box = ["x1", "y1", "x2", "y2"]
    rel = table["path"].str.slice(len(prefix)).tolist()
    try:
        low = prefix[: -len(image_root) - 1] + "img/"
        if not (root / low).is_dir():
            low = _image_prefix(root, "img")
    except FileNotFoundError:
        table[box] = np.nan
        table.attrs["bbox_image_root"] = image_root
        warnings.warn(
            f"{NAME}: boxes cleared: the low-resolution folder {root / 'img'} is "
            f"needed to rescale the boxes to {image_root} images",
            stacklevel=3,
        )
        return
    high_size = image_sizes(root, table["path"].tolist(), desc=f"{NAME} sizes")
    low_size = image_sizes(root, [low + r for r in rel], desc=f"{NAME} img sizes")
    scale = np.full((len(table), 4), np.nan)
    for i, (hi, lo) in enumerate(zip(high_size, low_size, strict=True)):
        if hi is not None and lo is not None:
            sx, sy = hi[0] / lo[0], hi[1] / lo[1]
            scale[i] = (sx, sy, sx, sy)
    table[box] = table[box].to_numpy(float) * scale
    table.attrs["bbox_image_root"] = image_root
    unmeasured = int(np.isnan(scale[:, 0]).sum())
    if unmeasured:
        warnings.warn(
            f"{NAME}: {unmeasured} box(es) cleared: the {image_root} or the img "
            f"image is unreadable, so the size ratio cannot be measured",
            stacklevel=3,
        )


def _check_count_line(source: Source) -> None:
    """The partition file's first line must be an image count (format check)."""
    first = source.lines().readline().strip()
    source.int(first, 1, "image count line")
