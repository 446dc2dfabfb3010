"""The index-table contract shared by every dataset reader
(docs/datasets.md#index-table).

One row per image. Columns: ``path`` (str, relative to the dataset root), ``label``
(int, original class id), ``split`` (train/test/query/gallery), ``x1,y1,x2,y2``
(float or null), ``fold_block`` (nullable int, MLRC block of training rows),
``super_label`` (nullable int), ``noisy_label`` (nullable int).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = [
    "path",
    "label",
    "split",
    "x1",
    "y1",
    "x2",
    "y2",
    "fold_block",
    "super_label",
    "noisy_label",
]
SPLITS = ("train", "test", "query", "gallery")
#: the datasets whose reader builds the images itself (no data root needed)
EMBEDDED_DATASETS = ("digits", "glyphs", "glyphs_tune")


def fold_edges(num_train_classes: int, folds: int = 4) -> np.ndarray:
    """MLRC block edges ``linspace(0, C_train, folds + 1).astype(int)``
    (docs/datasets.md#mlrc-fold-blocks)."""
    return np.linspace(0, num_train_classes, folds + 1).astype(int)


def assign_fold_blocks(table: pd.DataFrame, folds: int = 4) -> pd.Series:
    """Block index of every training row (contiguous blocks of the sorted training
    class ids); null for every other row."""
    train = table["split"] == "train"
    classes = np.sort(table.loc[train, "label"].unique())
    edges = fold_edges(len(classes), folds)
    rank = {c: i for i, c in enumerate(classes)}
    block_of_rank = np.searchsorted(edges, np.arange(len(classes)), side="right") - 1
    out = pd.Series(pd.NA, index=table.index, dtype="Int64")
    out[train] = [int(block_of_rank[rank[c]]) for c in table.loc[train, "label"]]
    return out


def make_index_table(
    path,
    label,
    split,
    *,
    boxes=None,
    super_label=None,
    noisy_label=None,
    folds: int = 4,
) -> pd.DataFrame:
    """Build a table in the contract's column order and dtypes, with ``fold_block``
    computed from the training classes.

    Args:
        path: sequence of N relative paths.
        label: sequence of N integer class ids (original numbering).
        split: sequence of N split names.
        boxes: optional (N, 4) array-like of x1, y1, x2, y2 (NaN = no box).
        super_label, noisy_label: optional sequences of N ints.
        folds: number of MLRC class blocks.
    """
    n = len(path)
    table = pd.DataFrame(
        {
            "path": pd.Series(list(path), dtype="string"),
            "label": pd.Series(np.asarray(label, dtype=np.int64)),
            "split": pd.Series(list(split), dtype="string"),
        }
    )
    bad = set(table["split"].unique()) - set(SPLITS)
    if bad:
        raise ValueError(f"split values {sorted(bad)} are invalid; valid: {SPLITS}")
    box = np.full((n, 4), np.nan) if boxes is None else np.asarray(boxes, float)
    for j, col in enumerate(("x1", "y1", "x2", "y2")):
        table[col] = box[:, j]
    table["fold_block"] = assign_fold_blocks(table, folds)
    for col, values in (("super_label", super_label), ("noisy_label", noisy_label)):
        table[col] = pd.Series(
            [pd.NA] * n if values is None else list(values), dtype="Int64"
        )
    return table[COLUMNS]


def validate_index_table(table: pd.DataFrame, name: str = "index table") -> None:
    """Raise ``ValueError`` (one line) if ``table`` breaks the contract."""
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing columns {missing}")
    bad = set(table["split"].unique()) - set(SPLITS)
    if bad:
        raise ValueError(f"{name}: invalid split values {sorted(bad)}")
    train = set(table.loc[table["split"] == "train", "label"])
    other = set(table.loc[table["split"] != "train", "label"])
    if train & other:
        raise ValueError(
            f"{name}: {len(train & other)} labels appear in train and in evaluation "
            "splits; the DML split must be class-disjoint"
        )


def check_splits_nonempty(table: pd.DataFrame, name: str, rule: str) -> None:
    """Raise a one-line ``ValueError`` when a split the evaluation needs is empty.

    A table needs training rows, and either ``test`` rows (leave-one-out) or both
    ``query`` and ``gallery`` rows; a ``query`` split without a ``gallery`` (or the
    reverse) is an error too.

    Args:
        table: the index table.
        name: dataset name, the message prefix.
        rule: how the split was decided (e.g. ``class_split=standard: ...``),
            named in the message.
    """
    counts = table["split"].value_counts()
    has = {s: int(counts.get(s, 0)) > 0 for s in SPLITS}
    if has["query"] or has["gallery"]:
        needed = ("train", "query", "gallery")
    else:
        needed = ("train", "test")
    empty = [s for s in needed if not has[s]]
    if empty:
        found = ", ".join(f"{s} {int(counts.get(s, 0))}" for s in SPLITS)
        what = "split is" if len(empty) == 1 else "splits are"
        raise ValueError(
            f"{name}: the {' and '.join(empty)} {what} empty ({found} images; {rule})"
        )


SOURCE_LINES = "source_lines"
"""``table.attrs`` key of a reader that knows each row's line in its list file:
``{"file": <path>, "lines": [line of row id 0, line of row id 1, ...]}`` (row ids
are the reader's 0..N-1 and are kept when rows are dropped later)."""


def row_origin(table: pd.DataFrame, row_id: int) -> str:
    """``"row 11"``, or ``"row 11, <file> line 13"`` when the reader recorded
    the row's line (:data:`SOURCE_LINES`); for error messages."""
    source = table.attrs.get(SOURCE_LINES)
    try:
        lines = source["lines"]
        if 0 <= int(row_id) < len(lines):
            return f"row {row_id}, {source['file']} line {lines[int(row_id)]}"
    except (TypeError, KeyError, ValueError):
        pass
    return f"row {row_id}"
