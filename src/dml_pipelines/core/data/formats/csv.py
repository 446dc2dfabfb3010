"""Generic CSV reader (docs/datasets.md#generic-csv-csv): a user's own data as one CSV
file.

A header line is required, with the columns ``path,label,split`` and optionally
``x1,y1,x2,y2`` (all four; empty cells = no box). ``path`` is relative to the
folder that holds the CSV file. Integer labels are kept; otherwise every label is
taken as a string and mapped to ``0..K-1`` in sorted string order, the mapping
(string -> int) stored in ``table.attrs["label_mapping"]``.

The contract is checked row by row, each breach a one-line ``ValueError`` naming
the file and the line(s): the file must be UTF-8; a file (path, after ``./`` and
``a//b`` are normalised) is listed once, so a repeated row and the same file in
two splits are refused; labels that are the same number written two ways (``6``
and ``6.0``, ``06``) are refused rather than made two classes; integer labels must
fit int64. The row's line is kept for later messages
(``attrs["source_lines"]``: an image that fails to decode names it).
"""

from __future__ import annotations

import csv
import os
import posixpath
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pandas as pd

from dml_pipelines.core.data.formats import READERS
from dml_pipelines.core.data.formats._common import Source, check_options, finish
from dml_pipelines.core.data.index import SPLITS

NAME = "csv"
REQUIRED = ("path", "label", "split")
BOX = ("x1", "y1", "x2", "y2")


def _locate(root: Path, file: str) -> Path:
    """The CSV file: ``root`` itself when it is a file, else ``root / file``."""
    path = root if root.is_file() else root / file
    if not path.is_file():
        raise FileNotFoundError(
            f"{NAME}: index file {path} not found; expected a CSV file with columns "
            f"{','.join(REQUIRED)}[,{','.join(BOX)}] (option file, DEFAULT index.csv)"
        )
    return path


def _parse(source: Source) -> tuple[list[int], dict[str, list]]:
    """Rows of the CSV as (line numbers, column -> values); validates the header."""
    with source.lines() as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        columns = set(header)
        valid = REQUIRED + BOX
        if (
            not set(REQUIRED) <= columns
            or len(columns) != len(header)
            or not columns <= set(valid)
            or (columns & set(BOX) and not set(BOX) <= columns)
        ):
            raise ValueError(
                f"{NAME}: {source.path} line 1 must be a header with columns "
                f"{','.join(REQUIRED)} and optionally {','.join(BOX)} (all four), "
                f"each once; found {','.join(header) or '(empty file)'}"
            )
        lines, values = [], {name: [] for name in header}
        for fields in reader:
            if not any(s.strip() for s in fields):
                continue
            if len(fields) != len(header):
                raise source.error(
                    reader.line_num,
                    f"expected {len(header)} columns, found {len(fields)}",
                )
            lines.append(reader.line_num)
            for name, value in zip(header, fields, strict=True):
                values[name].append(value.strip())
    return lines, values


INT64 = (-(2**63), 2**63 - 1)


def _number(value: str) -> Decimal | None:
    """The finite number ``value`` writes, or ``None`` (not a number)."""
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _labels(
    source: Source, lines: list[int], raw: list[str]
) -> tuple[list[int], dict | None]:
    """Integer labels, or strings mapped to 0..K-1 in sorted order (+ the mapping).

    Raises:
        ValueError: an empty label, an integer label beyond int64, or two labels
            that write the same number differently (``6`` and ``6.0``).
    """
    first: dict[Decimal, tuple[str, int]] = {}
    for lineno, value in zip(lines, raw, strict=True):
        if not value:
            raise source.error(lineno, "empty label")
        number = _number(value)
        if number is None:
            continue
        seen, seen_line = first.setdefault(number, (value, lineno))
        if seen != value:
            raise source.error(
                lineno,
                f"label {value!r} and label {seen!r} on line {seen_line} are the "
                "same number written differently (they would be two classes); "
                "write each label one way",
            )
    try:
        labels = [int(v) for v in raw]
    except ValueError:
        mapping = {name: i for i, name in enumerate(sorted(set(raw)))}
        return [mapping[v] for v in raw], mapping
    for lineno, label in zip(lines, labels, strict=True):
        if not INT64[0] <= label <= INT64[1]:
            raise source.error(
                lineno,
                f"label {label} is beyond int64 ({INT64[0]}..{INT64[1]}); "
                "use smaller ids or names",
            )
    return labels, None


def _check_unique(source: Source, lines: list[int], values: dict[str, list]) -> None:
    """Each file listed once: a repeated row, the same file in two splits, or
    with two labels or boxes is a one-line error naming both lines."""
    columns = list(values)
    first: dict[str, tuple[int, tuple]] = {}
    for i, lineno in enumerate(lines):
        row = tuple(values[c][i] for c in columns)
        path = values["path"][i]
        key = posixpath.normpath(path.replace("\\", "/"))
        if key not in first:
            first[key] = (lineno, row)
            continue
        seen_line, seen = first[key]
        split, seen_split = values["split"][i], seen[columns.index("split")]
        if row == seen:
            why = f"duplicate row: repeats line {seen_line} ({path})"
        elif split != seen_split:
            why = (
                f"{path} is in split {split} here and in split {seen_split} on "
                f"line {seen_line}; a file belongs to one split"
            )
        else:
            why = (
                f"{path} is listed already on line {seen_line} with another "
                "label or box; list each file once"
            )
        raise source.error(lineno, why)


def _boxes(
    source: Source, lines: list[int], values: dict[str, list]
) -> np.ndarray | None:
    """(N, 4) boxes; a row with all four cells empty has no box (NaN)."""
    if BOX[0] not in values:
        return None
    out = np.full((len(lines), 4), np.nan)
    for i, lineno in enumerate(lines):
        cells = [values[c][i] for c in BOX]
        if all(cells):
            out[i] = [
                source.float(v, lineno, c) for v, c in zip(cells, BOX, strict=True)
            ]
        elif any(cells):
            raise source.error(lineno, "a box needs all of x1,y1,x2,y2 or none")
    return out


@READERS.register(NAME)
def read(
    root: Path,
    *,
    expected_counts: Any = "default",
    on_missing: str = "raise",
    on_error: str = "raise",
    **options: Any,
) -> pd.DataFrame:
    """Read a generic CSV index into an index table.

    Args:
        root: the folder holding the CSV file, or the CSV file itself.
        expected_counts: a dict split -> count, or ``None``/``"default"`` (no
            published counts: no check).
        on_missing: ``raise`` or ``skip`` for listed images that are absent.
        on_error: ``raise`` or ``skip`` for files that are not readable images
            (checked when the option ``verify_images`` is true, the DEFAULT).
        **options: ``file`` (DEFAULT ``"index.csv"``): the CSV's name inside
            ``root`` (ignored when ``root`` is a file); ``verify_images`` (DEFAULT
            true): open every image header; ``folds`` (DEFAULT 4).

    Returns:
        The index table in file order, ``path`` relative to ``root`` (to the CSV's
        folder when ``root`` is the CSV file itself);
        ``attrs["label_mapping"]`` (str -> int) when the labels were strings.
    """
    root = Path(root)
    opts = check_options(
        NAME,
        options,
        {"file": "index.csv"},
        expected_counts=expected_counts,
        on_missing=on_missing,
        on_error=on_error,
    )
    source = Source(NAME, _locate(root, opts["file"]))
    lines, values = _parse(source)
    for lineno, path, split in zip(lines, values["path"], values["split"], strict=True):
        if not path:
            raise source.error(lineno, "empty path")
        if PurePosixPath(path).is_absolute() or PureWindowsPath(path).is_absolute():
            raise source.error(
                lineno, f"path {path!r} must be relative to the CSV folder"
            )
        if split not in SPLITS:
            raise source.error(
                lineno, f"split {split!r} is invalid; valid: {', '.join(SPLITS)}"
            )
    label, mapping = _labels(source, lines, values["label"])
    boxes = _boxes(source, lines, values)
    _check_unique(source, lines, values)
    base = root if root.is_dir() else root.parent
    prefix = Path(os.path.relpath(source.path.parent, base)).as_posix() + "/"
    prefix = "" if prefix == "./" else prefix

    table = finish(
        NAME,
        base,
        path=[prefix + p for p in values["path"]],
        label=label,
        split=values["split"],
        boxes=boxes,
        source=str(source.path),
        opts=opts,
        on_missing=on_missing,
        lines=lines,
    )
    if mapping is not None:
        table.attrs["label_mapping"] = mapping
    return table
