"""Helpers shared by the archive readers (``cub200``, ``cars196``, ``sop``,
``inshop``, ``csv``; docs/datasets.md#index-table).

Every reader follows the same steps: validate its options (:func:`check_options`),
find its annotation files (:func:`locate`, :func:`require_files`), parse them with
line numbers (:func:`read_rows`, :class:`Source`), then hand the rows to
:func:`finish`, which checks that the images exist (``on_missing``), opens every
image header (``verify_images``, ``on_error``), checks the per-split counts against
``expected_counts`` (minus the skipped rows), builds the index table and checks
that no split the evaluation needs is empty.

Rows dropped by ``on_missing: skip`` or ``on_error: skip`` are listed in
``table.attrs["skipped"]`` (dicts with ``path``, ``label``, ``split``, ``reason``).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dml_pipelines.core.data.images import describe_bad, verify_images
from dml_pipelines.core.data.index import (
    SOURCE_LINES,
    SPLITS,
    check_splits_nonempty,
    make_index_table,
    validate_index_table,
)

DEFAULT_COUNTS: dict[str, dict[str, int]] = {
    "cub200": {"train": 5864, "test": 5924},
    "cars196": {"train": 8054, "test": 8131},
    "sop": {"train": 59551, "test": 60502},
    "inshop": {"train": 25882, "query": 14218, "gallery": 12612},
}
"""Published DML image counts per split of the full archives
(docs/datasets.md#splits)."""

COMMON_OPTIONS: dict[str, Any] = {"folds": 4, "verify_images": True}
"""Options every archive reader accepts: ``folds`` = number of MLRC class blocks;
``verify_images`` = open every image header at ingestion (DEFAULT on)."""

ERROR_POLICIES = ("raise", "skip")

Row = tuple[int, list[str]]
"""A parsed line: (1-based line number, fields)."""


@dataclass(frozen=True)
class Source:
    """An annotation file being parsed; builds one-line errors that name it.

    Args:
        dataset: reader name used as the message prefix.
        path: the annotation file.
    """

    dataset: str
    path: Path

    def error(self, where: int | str, why: str) -> ValueError:
        """A ``ValueError`` naming the file and ``where`` (a line number or text)."""
        at = f"line {where}" if isinstance(where, int) else where
        return ValueError(f"{self.dataset}: malformed row in {self.path} {at}: {why}")

    def text(self) -> str:
        """The file's text (UTF-8, an optional byte-order mark dropped).

        Raises:
            ValueError: the file is not UTF-8 (e.g. saved as latin-1): one line
                naming the file, the line and the offending byte.
        """
        data = self.path.read_bytes()
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            raise ValueError(
                f"{self.dataset}: {self.path} is not UTF-8 text (byte "
                f"0x{data[e.start]:02x} on line {line}); save it as UTF-8, e.g. "
                f"iconv -f latin1 -t utf-8"
            ) from None

    def lines(self) -> io.StringIO:
        """The file's text as a stream for ``csv.reader`` (see :meth:`text`)."""
        return io.StringIO(self.text(), newline="")

    def int(self, value: Any, where: int | str, what: str) -> int:
        """Parse ``value`` as an integer (a string or an integral number)."""
        try:
            if isinstance(value, str):
                return int(value)
            number = float(value)
            if number.is_integer():
                return int(number)
        except (TypeError, ValueError):
            pass
        raise self.error(where, f"{what} {value!r} is not an integer")

    def float(self, value: Any, where: int | str, what: str) -> float:
        """Parse ``value`` as a finite float."""
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not np.isfinite(number):
            raise self.error(where, f"{what} {value!r} is not a number")
        return number


def check_options(
    dataset: str,
    options: Mapping[str, Any],
    defaults: Mapping[str, Any],
    *,
    expected_counts: Any,
    on_missing: str,
    on_error: str = "raise",
) -> dict[str, Any]:
    """Validate the common arguments and a reader's options.

    Args:
        dataset: reader name.
        options: the ``**options`` a reader received.
        defaults: the reader's own options with their defaults (``folds`` and
            ``verify_images`` are added).
        expected_counts: ``"default"``, a mapping split -> count, or ``None``.
        on_missing: ``raise`` or ``skip``.
        on_error: ``raise`` or ``skip`` for files that are not readable images.

    Returns:
        ``defaults`` updated with ``options``, plus ``expected`` = the resolved
        expected counts (a dict, or ``None`` when the check is disabled) and
        ``on_error``.

    Raises:
        ValueError: one line naming the bad option and the valid values.
    """
    allowed = {**COMMON_OPTIONS, **defaults}
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"{dataset}: unknown option(s) {unknown}; "
            f"valid: {', '.join(sorted(allowed))}"
        )
    for key, value in (("on_missing", on_missing), ("on_error", on_error)):
        if value not in ERROR_POLICIES:
            raise ValueError(
                f"{dataset}: {key} {value!r} is invalid; valid: raise, skip"
            )
    opts = {**allowed, **options}
    folds = opts["folds"]
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ValueError(f"{dataset}: folds must be an integer >= 2, got {folds!r}")
    if not isinstance(opts["verify_images"], bool):
        raise ValueError(
            f"{dataset}: verify_images must be true or false, "
            f"got {opts['verify_images']!r}"
        )
    opts["expected"] = resolve_expected(dataset, expected_counts)
    opts["on_error"] = on_error
    return opts


def resolve_expected(dataset: str, expected_counts: Any) -> dict[str, int] | None:
    """``"default"`` -> :data:`DEFAULT_COUNTS` (``None`` for a dataset without
    published counts); a mapping -> a validated dict; ``None`` -> ``None``."""
    if expected_counts is None:
        return None
    if isinstance(expected_counts, str) and expected_counts == "default":
        return DEFAULT_COUNTS.get(dataset)
    if isinstance(expected_counts, Mapping):
        out = {}
        for split, count in expected_counts.items():
            if split not in SPLITS:
                raise ValueError(
                    f"{dataset}: expected_counts split {split!r} is invalid; "
                    f"valid: {', '.join(SPLITS)}"
                )
            if isinstance(count, bool) or not isinstance(count, int | np.integer):
                raise ValueError(
                    f"{dataset}: expected_counts[{split!r}] must be an integer, "
                    f"got {count!r}"
                )
            out[split] = int(count)
        return out
    raise ValueError(
        f"{dataset}: expected_counts must be 'default', a dict of split -> count or "
        f"None, got {expected_counts!r}"
    )


def locate(root: Path, marker: str, subdir: str) -> Path:
    """The folder holding ``marker``: ``root`` itself, or ``root/subdir`` (the
    folder an archive extracts to) when only that one holds it. Falls back to
    ``root`` so that :func:`require_files` reports the files expected there."""
    if not (root / marker).exists() and (root / subdir / marker).exists():
        return root / subdir
    return root


def require_files(dataset: str, base: Path, names: Sequence[str]) -> list[Path]:
    """Return ``base / name`` for every name; raise if any is missing.

    Raises:
        FileNotFoundError: one line naming the missing path(s) and every file
            expected under ``base``.
    """
    paths = [base / name for name in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{dataset}: annotation file(s) {', '.join(missing)} not found; expected "
            f"under {base}: {', '.join(names)}"
        )
    return paths


def read_rows(
    source: Source,
    ncols: int,
    *,
    skip: int = 0,
    delimiter: str | None = None,
) -> list[Row]:
    """Read a list file into (line number, fields) rows, skipping blank lines.

    Args:
        source: the file (and dataset name for errors).
        ncols: required number of fields per row.
        skip: number of header lines to skip.
        delimiter: ``None`` splits on whitespace; otherwise a CSV delimiter
            (quoted fields allowed, fields stripped).

    Raises:
        ValueError: a row with another number of fields (names file and line).
    """
    rows: list[Row] = []
    for lineno, line in enumerate(source.lines(), 1):
        line = line.rstrip("\r\n")
        if lineno <= skip or not line.strip():
            continue
        if delimiter is None:
            fields = line.split()
        else:
            fields = [s.strip() for s in next(csv.reader([line], delimiter=delimiter))]
        if len(fields) != ncols:
            raise source.error(lineno, f"expected {ncols} columns, found {len(fields)}")
        rows.append((lineno, fields))
    return rows


def by_id(source: Source, rows: Sequence[Row]) -> dict[int, Row]:
    """Key rows by their integer first field (the image id).

    Raises:
        ValueError: a non-integer or duplicate id (names file and line).
    """
    out: dict[int, Row] = {}
    for lineno, fields in rows:
        key = source.int(fields[0], lineno, "image id")
        if key in out:
            raise source.error(lineno, f"duplicate image id {key}")
        out[key] = (lineno, fields)
    return out


def _split_counts(
    expected: Mapping[str, int] | None, found: Counter, skipped: Counter
) -> list[str]:
    """Per-split ``"<split> expected E [- S skipped = E-S], found F"`` phrases."""
    out = []
    names = set(found) | set(skipped) | set(expected or {})
    for split in [s for s in SPLITS if s in names]:
        skip = skipped.get(split, 0)
        if expected is None:
            want = f"{split} listed {found.get(split, 0) + skip}"
            if skip:
                want += f" - {skip} skipped"
        else:
            want = f"{split} expected {expected.get(split, 0)}"
            if skip:
                want += f" - {skip} skipped = {expected.get(split, 0) - skip}"
        out.append(f"{want}, found {found.get(split, 0)}")
    return out


def finish(
    dataset: str,
    root: Path,
    *,
    path: Sequence[str],
    label: Sequence[int],
    split: Sequence[str] | Splitter,
    source: str,
    opts: Mapping[str, Any],
    on_missing: str,
    boxes: np.ndarray | None = None,
    super_label: Sequence[int] | None = None,
    lines: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Check image files and counts, then build the index table.

    Args:
        dataset: reader name.
        root: dataset root; ``path`` entries are relative to it.
        path, label: one entry per listed image, in list-file order.
        split: one split name per listed image, or a :data:`Splitter` (a class
            split rule, see :func:`class_splitter`) applied to the labels of the
            images that remain after the missing and unreadable ones are dropped.
        source: the list file(s) the rows came from, named in messages.
        opts: the output of :func:`check_options` (``folds``, ``expected``,
            ``verify_images``, ``on_error``).
        on_missing: ``raise`` or ``skip``.
        boxes: optional (N, 4) float array x1, y1, x2, y2 (NaN = no box).
        super_label: optional N integers.
        lines: optional N line numbers of the rows in ``source`` (one file):
            named in the messages, and kept for the kept rows in
            ``attrs["source_lines"]`` (``index.row_origin``).

    Returns:
        The index table (RangeIndex 0..N'-1, rows in the given order, skipped
        rows removed and listed in ``attrs["skipped"]``).

    Raises:
        FileNotFoundError: a listed image is missing and ``on_missing='raise'``.
        ValueError: files that are not readable images and ``on_error='raise'``
            (all listed in one line, the first 10 named); per-split counts differ
            from the expected counts (minus the skipped images); train and
            evaluation splits share a label; a split the evaluation needs is empty.
    """
    paths = list(path)
    labels = np.asarray(label, dtype=np.int64)

    def at(i: int) -> str:
        return f"{source} line {lines[i]}" if lines is not None else source

    exists = np.fromiter(
        (os.path.isfile(os.path.join(root, p)) for p in paths), bool, len(paths)
    )
    missing = np.flatnonzero(~exists)
    if missing.size and on_missing == "raise":
        more = f" (and {missing.size - 1} more)" if missing.size > 1 else ""
        raise FileNotFoundError(
            f"{dataset}: image {root / paths[missing[0]]} listed in "
            f"{at(missing[0])} does not exist{more}; set on_missing: skip to drop "
            "missing images"
        )
    reason = {int(i): "missing" for i in missing}
    if opts.get("verify_images", False):
        present = np.flatnonzero(exists)
        bad = verify_images(root, [paths[i] for i in present], desc=dataset)
        if bad and opts.get("on_error", "raise") == "raise":
            raise ValueError(
                f"{dataset}: "
                + describe_bad(
                    [
                        (
                            paths[present[j]],
                            r if lines is None else f"line {lines[present[j]]}: {r}",
                        )
                        for j, r in bad
                    ],
                    present.size,
                )
                + f" (under {root}; set on_error: skip to drop them)"
            )
        reason.update({int(present[j]): r for j, r in bad})
    dropped = np.asarray(sorted(reason), dtype=np.int64)
    keep_mask = np.ones(len(paths), bool)
    keep_mask[dropped] = False
    if callable(split):
        split, rule = split(labels, keep_mask)
    else:
        rule = f"the split listed in {source}"
    splits = np.asarray(list(split), dtype=object)
    skipped = Counter(splits[dropped].tolist())
    found = Counter(splits[keep_mask].tolist())
    expected = opts["expected"]
    if expected is not None and any(
        found.get(s, 0) != expected.get(s, 0) - skipped.get(s, 0)
        for s in set(found) | set(expected) | set(skipped)
    ):
        raise ValueError(
            f"{dataset}: image counts of {source} do not match expected_counts: "
            + "; ".join(_split_counts(expected, found, skipped))
            + " (pass expected_counts for a partial copy, or None to disable)"
        )
    if dropped.size:
        kinds = Counter(
            "missing" if r == "missing" else "unreadable" for r in reason.values()
        )
        warnings.warn(
            f"{dataset}: skipped "
            + " and ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
            + f" image(s) listed in {source} (first: {paths[dropped[0]]}); "
            + "; ".join(_split_counts(expected, found, skipped)),
            stacklevel=3,
        )
    keep = np.flatnonzero(keep_mask)
    table = make_index_table(
        [paths[i] for i in keep],
        labels[keep],
        splits[keep].tolist(),
        boxes=None if boxes is None else np.asarray(boxes, float)[keep],
        super_label=None if super_label is None else [super_label[i] for i in keep],
        folds=opts["folds"],
    )
    validate_index_table(table, dataset)
    check_splits_nonempty(table, dataset, rule)
    table.attrs["skipped"] = [
        {
            "path": paths[i],
            "label": int(labels[i]),
            "split": str(splits[i]),
            "reason": reason[int(i)],
        }
        for i in dropped
    ]
    if lines is not None:
        table.attrs[SOURCE_LINES] = {
            "file": source,
            "lines": [int(lines[i]) for i in keep],
        }
    return table


Splitter = Callable[[np.ndarray, np.ndarray], tuple[list[str], str]]
"""``(labels (N,), kept (N,) bool) -> (split of every row, rule description)``."""


@dataclass(frozen=True)
class ClassSplit:
    """A ``class_split`` rule: the last training class id, from the sorted class
    ids present and the published boundary; and its description."""

    last_train: Callable[[np.ndarray, int], int]
    text: str


CLASS_SPLITS = {
    "standard": ClassSplit(
        lambda classes, published: published,
        "classes <= {last} train, the rest test (the published DML split)",
    ),
    "halves": ClassSplit(
        lambda classes, published: (
            int(classes[(len(classes) + 1) // 2 - 1]) if len(classes) else published
        ),
        "classes <= {last} train, the rest test (the lower half of the class ids "
        "present, the larger half when odd)",
    ),
}
"""``class_split`` rules of the class-split readers (CUB, Cars): ``standard`` =
the published boundary; ``halves`` = split the classes present in half by id, for
partial copies."""


def class_splitter(dataset: str, rule: str, published_last: int) -> Splitter:
    """The :data:`Splitter` of ``rule`` (:data:`CLASS_SPLITS`): ``label <= last``
    is train, ``last`` decided from the classes of the kept rows.

    Raises:
        ValueError: an unknown rule (names the option and the valid rules).
    """
    if rule not in CLASS_SPLITS:
        raise ValueError(
            f"{dataset}: class_split {rule!r} is invalid; "
            f"valid: {', '.join(CLASS_SPLITS)}"
        )
    spec = CLASS_SPLITS[rule]

    def split(labels: np.ndarray, kept: np.ndarray) -> tuple[list[str], str]:
        present = np.unique(labels[kept])
        last = spec.last_train(present, published_last)
        span = f"{present.min()}-{present.max()}" if present.size else "none"
        hint = (
            f"; for a partial copy set datasets.{dataset}.options.class_split: halves"
            if rule == "standard"
            else ""
        )
        text = (
            f"class_split={rule}: {spec.text.format(last=last)}; the copy holds "
            f"{present.size} classes ({span}){hint}"
        )
        return np.where(labels <= last, "train", "test").tolist(), text

    return split
