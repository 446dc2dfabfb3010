"""Stanford Online Products reader (docs/datasets.md#stanford-online-products-sop).

``Ebay_train.txt`` gives the train split and ``Ebay_test.txt`` the test split; each
starts with the header ``image_id class_id super_class_id path``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from dml_pipelines.core.data.formats import READERS
from dml_pipelines.core.data.formats._common import (
    Source,
    by_id,
    check_options,
    finish,
    locate,
    read_rows,
    require_files,
)

NAME = "sop"
FILES = ("Ebay_train.txt", "Ebay_test.txt")


@READERS.register(NAME)
def read(
    root: Path,
    *,
    expected_counts: Any = "default",
    on_missing: str = "raise",
    on_error: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """Read Stanford Online Products into an index table.

    Args:
        root: ``Stanford_Online_Products/`` or the folder that holds it.
        expected_counts: ``"default"`` (59,551 train / 60,502 test), a dict split
            -> count, or ``None``.
        on_missing: ``raise`` or ``skip`` for listed images that are absent.
        on_error: ``raise`` or ``skip`` for files that are not readable images
            (checked when the option ``verify_images`` is true, the DEFAULT).
        **options: ``verify_images`` (DEFAULT true): open every image header;
            ``folds`` (DEFAULT 4): number of MLRC class blocks.

    Returns:
        The index table: ``label`` = class_id, ``super_label`` = super_class_id,
        ``path`` = the list file's path column (prefixed with
        ``Stanford_Online_Products/`` when ``root`` is the parent); train rows
        first, each file in its own order.
    """
    root = Path(root)
    opts = check_options(
        NAME,
        options,
        {},
        expected_counts=expected_counts,
        on_missing=on_missing,
        on_error=on_error,
    )
    base = locate(root, FILES[0], "Stanford_Online_Products")
    prefix = "" if base == root else base.relative_to(root).as_posix() + "/"

    path, label, split, super_label = [], [], [], []
    for file, name in zip(
        require_files(NAME, base, FILES), ("train", "test"), strict=True
    ):
        source = Source(NAME, file)
        rows = read_rows(source, 4)
        if rows and rows[0][0] == 1 and not rows[0][1][0].isdigit():
            rows = rows[1:]  # the header line
        for lineno, fields in by_id(source, rows).values():
            label.append(source.int(fields[1], lineno, "class_id"))
            super_label.append(source.int(fields[2], lineno, "super_class_id"))
            path.append(prefix + fields[3])
            split.append(name)

    return finish(
        NAME,
        root,
        path=path,
        label=label,
        split=split,
        super_label=super_label,
        source=f"{base / FILES[0]} + {FILES[1]}",
        opts=opts,
        on_missing=on_missing,
    )
