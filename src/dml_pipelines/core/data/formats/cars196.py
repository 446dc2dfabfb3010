"""Cars196 reader (docs/datasets.md#cars196-cars196).

Three layouts are accepted and detected from the files present (option ``layout``
forces one):

- ``original``: ``cars_annos.mat`` (struct array ``annotations`` with
  ``relative_im_path``, ``bbox_x1..bbox_y2``, ``class``, ``test``) + ``car_ims/``;
- ``devkit``: ``devkit/cars_train_annos.mat`` and ``cars_test_annos_withlabels.mat``
  (in the root or in ``devkit/``), fields ``bbox_x1..bbox_y2``, ``class``,
  ``fname``, images in ``cars_train/`` and ``cars_test/``; both classification
  halves are merged;
- ``kaggle``: ``names.csv``, ``anno_train.csv``, ``anno_test.csv``
  (``fname,x1,y1,x2,y2,class``, header line optional), images in
  ``car_data/car_data/{train,test}/<class name, '/' -> '-'>/<fname>``; the label
  comes from the ``class`` column.

In every layout the DML split is by class (1-98 train, 99-196 test; option
``class_split: halves`` splits the classes present in half); the
classification split (``test`` flag, devkit halves, Kaggle train/test folders) is
only used to find the files. ``table.attrs["layout"]`` names the layout read.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dml_pipelines.core.data.formats import READERS
from dml_pipelines.core.data.formats._common import (
    Source,
    check_options,
    class_splitter,
    finish,
    read_rows,
    require_files,
)

NAME = "cars196"
NUM_CLASSES = 196
LAST_TRAIN_CLASS = 98
BOX = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")
TEST_ANNOS = "cars_test_annos_withlabels.mat"
LAYOUTS = {
    "original": ("cars_annos.mat", "car_ims/"),
    "devkit": ("devkit/cars_train_annos.mat", TEST_ANNOS, "cars_train/", "cars_test/"),
    "kaggle": ("names.csv", "anno_train.csv", "anno_test.csv", "car_data/car_data/"),
}
"""Files that identify each layout (the first one decides in auto-detection)."""

Record = tuple[str, int, tuple[float, float, float, float]]
"""(relative path, class id, box) of one image."""


def _mat_records(source: Source, fields: Sequence[str]) -> Iterator[tuple[str, dict]]:
    """Yield ("record i", {field: scalar}) for the ``annotations`` struct array."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(source.path)
    except Exception as e:  # scipy raises several types for a bad file
        raise ValueError(
            f"{NAME}: cannot read {source.path} as a .mat file ({type(e).__name__})"
        ) from None
    ann = mat.get("annotations")
    if ann is None or ann.dtype.names is None:
        raise ValueError(f"{NAME}: {source.path} has no struct array 'annotations'")
    absent = [f for f in fields if f not in ann.dtype.names]
    if absent:
        raise ValueError(
            f"{NAME}: {source.path} 'annotations' lacks field(s) {absent}; "
            f"found {list(ann.dtype.names)}"
        )
    for i, rec in enumerate(ann.ravel(), 1):
        where = f"record {i} of 'annotations'"
        out = {}
        for f in fields:
            value = np.asarray(rec[f]).ravel()
            if value.size != 1:
                raise source.error(where, f"field {f} holds {value.size} values")
            out[f] = value[0].item() if value.dtype.kind != "U" else str(value[0])
        yield where, out


def _mat_record(source: Source, where: str, rec: dict, path: str) -> Record:
    cls = source.int(rec["class"], where, "class")
    box = tuple(source.float(rec[f], where, f) for f in BOX)
    return path, cls, box


def _original(root: Path) -> tuple[list[Record], str]:
    (annos,) = require_files(NAME, root, LAYOUTS["original"][:1])
    source = Source(NAME, annos)
    fields = ("relative_im_path", "class", *BOX)
    records = [
        _mat_record(source, where, rec, rec["relative_im_path"])
        for where, rec in _mat_records(source, fields)
    ]
    return records, str(annos)


def _devkit(root: Path) -> tuple[list[Record], str]:
    test = root / "devkit" / TEST_ANNOS
    if not test.is_file():
        test = root / TEST_ANNOS
    if not test.is_file() or not (root / LAYOUTS["devkit"][0]).is_file():
        raise FileNotFoundError(
            f"{NAME}: devkit layout under {root} needs devkit/cars_train_annos.mat and "
            f"{TEST_ANNOS} (in {root} or {root / 'devkit'}), with images in "
            "cars_train/ and cars_test/"
        )
    records = []
    for annos, folder in (
        (root / LAYOUTS["devkit"][0], "cars_train"),
        (test, "cars_test"),
    ):
        source = Source(NAME, annos)
        for where, rec in _mat_records(source, ("fname", "class", *BOX)):
            records.append(_mat_record(source, where, rec, f"{folder}/{rec['fname']}"))
    return records, f"{root / LAYOUTS['devkit'][0]} + {test}"


def _kaggle(root: Path) -> tuple[list[Record], str]:
    names_f, *annos = require_files(NAME, root, LAYOUTS["kaggle"][:3])
    names = [
        fields[0] for _, fields in read_rows(Source(NAME, names_f), 1, delimiter=",")
    ]
    records = []
    for annos_f, folder in zip(annos, ("train", "test"), strict=True):
        source = Source(NAME, annos_f)
        rows = read_rows(source, 6, delimiter=",")
        if rows and rows[0][0] == 1 and not any(_is_number(v) for v in rows[0][1][1:]):
            rows = rows[1:]  # optional header fname,x1,y1,x2,y2,class
        for lineno, (fname, *box, cls) in rows:
            cls = source.int(cls, lineno, "class")
            if not 1 <= cls <= len(names):
                raise source.error(
                    lineno, f"class {cls} is outside 1..{len(names)} ({names_f.name})"
                )
            folder_name = names[cls - 1].replace("/", "-")
            path = f"car_data/car_data/{folder}/{folder_name}/{fname}"
            records.append(
                (path, cls, tuple(source.float(v, lineno, "box value") for v in box))
            )
    return records, f"{annos[0]} + {annos[1].name}"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


READ_LAYOUT = {"original": _original, "devkit": _devkit, "kaggle": _kaggle}


def detect_layout(root: Path) -> str:
    """Name of the layout found under ``root``.

    Raises:
        FileNotFoundError: no known layout (lists the files of each).
    """
    for layout, files in LAYOUTS.items():
        if (root / files[0]).exists() or (
            layout == "kaggle" and any((root / f).exists() for f in files[1:3])
        ):
            return layout
    expected = "; ".join(f"{k}: {' + '.join(v)}" for k, v in LAYOUTS.items())
    raise FileNotFoundError(
        f"{NAME}: no known Cars196 layout under {root}; expected {expected}"
    )


@READERS.register(NAME)
def read(
    root: Path,
    *,
    expected_counts: Any = "default",
    on_missing: str = "raise",
    on_error: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """Read Cars196 (any of the three layouts) into an index table.

    Args:
        root: the dataset root (see the module docstring for the layouts).
        expected_counts: ``"default"`` (8,054 train / 8,131 test), a dict split ->
            count, or ``None``.
        on_missing: ``raise`` or ``skip`` for listed images that are absent.
        on_error: ``raise`` or ``skip`` for files that are not readable images.
        **options: ``layout`` (DEFAULT ``"auto"``; ``original``, ``devkit``,
            ``kaggle``); ``class_split`` (DEFAULT ``"standard"``: classes 1-98
            train; ``"halves"``: the lower half of the classes present, for a
            partial copy); ``verify_images`` (DEFAULT true); ``folds`` (DEFAULT 4).

    Returns:
        The index table, ``label`` 1-196, boxes from the annotations, rows in
        annotation order (devkit/kaggle: the train file, then the test file).
    """
    root = Path(root)
    opts = check_options(
        NAME,
        options,
        {"layout": "auto", "class_split": "standard"},
        expected_counts=expected_counts,
        on_missing=on_missing,
        on_error=on_error,
    )
    splitter = class_splitter(NAME, opts["class_split"], LAST_TRAIN_CLASS)
    layout = opts["layout"]
    if layout != "auto" and layout not in READ_LAYOUT:
        raise ValueError(
            f"{NAME}: layout {layout!r} is invalid; "
            f"valid: auto, {', '.join(READ_LAYOUT)}"
        )
    if layout == "auto":
        layout = detect_layout(root)
    records, source = READ_LAYOUT[layout](root)
    for path, cls, _ in records:
        if not 1 <= cls <= NUM_CLASSES:
            raise ValueError(
                f"{NAME}: class {cls} of {path} in {source} is outside 1..{NUM_CLASSES}"
            )
    label = [cls for _, cls, _ in records]
    table = finish(
        NAME,
        root,
        path=[path for path, _, _ in records],
        label=label,
        split=splitter,
        boxes=np.asarray([box for _, _, box in records], float).reshape(-1, 4),
        source=source,
        opts=opts,
        on_missing=on_missing,
    )
    table.attrs["layout"] = layout
    return table
