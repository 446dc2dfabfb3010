"""The prepared-image cache: decode and resize every image once, read it fast later.

``build_cache`` decodes each row of an index table once with Pillow as RGB (EXIF
orientation applied; CMYK, palette, grey and 16-bit images converted), optionally crops
it to its box (docs/datasets.md#bounding-boxes), resizes its shorter side exactly as
``torchvision.transforms.Resize(size)`` does on a PIL image (bilinear, antialiased, long
side ``int(size * long / short)``), and appends the uint8 pixels (H, W, 3) to one flat
file. ``ImageCache`` maps that file and hands out zero-copy (H, W, 3) views.

Directory layout (``FORMAT_VERSION`` 1)::

    pixels.u8     raw uint8 bytes, every image in HWC order, back to back
    offsets.npy   int64 (N, 4): byte offset, height, width, channels
    row_ids.npy   int64 (N,): the index-table row id of each cached image
    digests.npy   uint8 (N, 16): BLAKE2b-128 of each image file's raw bytes, read
                  once for the decode (what the data fingerprint identifies the
                  training images by; docs/protocols.md "Data fingerprint")
    meta.json     format, version, count, resize_shorter, use_bbox, skipped rows,
                  source_hash

Caches written before the digests were recorded lack ``digests.npy``; they still
open (``ImageCache.digests`` is ``None``), but training refuses them until they are
rebuilt (``dml_pipelines.core.data.fingerprint.data_fingerprint``).

The training augmentation crops from these already-resized images, so the cache's
``resize_shorter`` belongs in the protocol card (``ImageCache.manifest``).

Caches of several sizes of one dataset live side by side in one folder, each in a
sub-folder named after its size (:func:`cache_path`): ``cache_r256/`` (shorter side
256) or ``cache_original/`` (native size). :func:`find_caches` lists them and
:func:`open_sized_cache` opens the one of a given size, refusing a missing,
mislabelled or stale one with a one-line error. ``source_hash`` (the listed rows and
their files' sizes and modification times, :func:`source_hash`) tells whether two
caches were built from the same source files.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from dml_pipelines.core.data._atomic import publish, staging_dir
from dml_pipelines.core.data.index import row_origin

FORMAT = "dml_pipelines.image_cache"
FORMAT_VERSION = 1
FILES = ("pixels.u8", "offsets.npy", "row_ids.npy", "meta.json")
DIGESTS = "digests.npy"
DIGEST_SIZE = 16  # bytes of BLAKE2b per image file
BOX_COLUMNS = ("x1", "y1", "x2", "y2")
_CHUNK = 16  # rows per worker task
_WARN_LIST = 5  # skipped files named in the warning

# (row_id, relative path, absolute path, box or None, resize_shorter)
_Task = tuple[int, str, str, "tuple[float, float, float, float] | None", "int | None"]
# (row_id, relative path, pixels or None, reason or None, file digest or None)
_Result = tuple[int, str, "np.ndarray | None", "str | None", "bytes | None"]


def resized_size(width: int, height: int, shorter: int) -> tuple[int, int]:
    """Output (width, height) of resizing the shorter side to ``shorter``, with
    torchvision's rounding (long side truncated: ``int(shorter * long / short)``).
    """
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


_WIDE_MODES = {"I;16": 257.0, "I;16B": 257.0, "I;16L": 257.0, "I;16N": 257.0}
"""Pillow modes of 16-bit greyscale images -> divisor to 0-255 (65535 / 255)."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded image to 8-bit RGB.

    16-bit greyscale (modes ``I;16*``, and ``I`` holding values above 255, as
    Pillow opens 16-bit PNG and TIFF files) is scaled by 255/65535 instead of
    being clipped at 255; every other mode (CMYK, palette, grey, alpha) goes
    through Pillow's ``convert("RGB")``.
    """
    divisor = _WIDE_MODES.get(img.mode)
    if divisor is None and img.mode == "I":
        divisor = 257.0 if np.asarray(img).max(initial=0) > 255 else 1.0
    if divisor is not None:
        grey = np.asarray(img, dtype=np.float64) / divisor
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return img.convert("RGB")


def decode_image(
    path: str | Path,
    box: Sequence[float] | None = None,
    resize_shorter: int | None = None,
) -> np.ndarray:
    """Decode one image as RGB, crop it to ``box`` and resize its shorter side.

    The EXIF orientation tag is applied first (``ImageOps.exif_transpose``), so a
    photo stored sideways with an orientation tag is decoded upright; CMYK,
    palette, grey, alpha and 16-bit images are converted to 8-bit RGB
    (:func:`to_rgb`).

    Args:
        path: image file.
        box: ``(x1, y1, x2, y2)`` in pixels of the decoded (upright) image, or
            ``None``. It is clipped to the image; ``x1, y1`` are floored and
            ``x2, y2`` ceiled so that every partly covered pixel is kept.
        resize_shorter: target shorter side (bilinear, antialiased), or ``None`` for
            the native size.

    Returns:
        uint8 array (H, W, 3), C-contiguous.

    Raises:
        OSError, ValueError: the file is missing, empty, not an image, truncated, or
            the box is empty after clipping (``build_cache`` reports these per file).
    """
    return _decode_bytes(Path(path).read_bytes(), box, resize_shorter)


def file_digest(data: bytes) -> bytes:
    """BLAKE2b-128 of an image file's raw bytes (``digests.npy``)."""
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest()


def _decode_bytes(
    data: bytes, box: Sequence[float] | None, resize_shorter: int | None
) -> np.ndarray:
    """``decode_image`` of a file's bytes."""
    if not data:
        raise ValueError("empty file (0 bytes)")
    with Image.open(io.BytesIO(data)) as img:
        img.load()  # the full decode; truncation raises here
        img = to_rgb(ImageOps.exif_transpose(img))
    if box is not None:
        w, h = img.size
        x1 = max(0, math.floor(box[0]))
        y1 = max(0, math.floor(box[1]))
        x2 = min(w, math.ceil(box[2]))
        y2 = min(h, math.ceil(box[3]))
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"box {tuple(box)} is empty inside the {w}x{h} image")
        img = img.crop((x1, y1, x2, y2))
    if img.width == 0 or img.height == 0:
        raise ValueError(f"zero-size image {img.width}x{img.height}")
    if resize_shorter is not None:
        size = resized_size(img.width, img.height, resize_shorter)
        if size != img.size:
            img = img.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8).copy(order="C")


def _decode_task(task: _Task) -> _Result:
    """Read one file once: its digest and its decoded pixels (or why not)."""
    row_id, rel, full, box, resize = task
    try:
        data = Path(full).read_bytes()
        return row_id, rel, _decode_bytes(data, box, resize), None, file_digest(data)
    except FileNotFoundError:
        return row_id, rel, None, "file not found", None
    except Exception as exc:  # any decoder failure is reported per file
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        return row_id, rel, None, reason.replace(full, rel), None  # no machine paths


def _decode_chunk(tasks: list[_Task]) -> list[_Result]:
    return [_decode_task(t) for t in tasks]


def _decoded(tasks: list[_Task], num_workers: int) -> Iterator[_Result]:
    """Decode ``tasks`` in order; with workers, keep a bounded window of chunks."""
    if num_workers <= 0:
        yield from map(_decode_task, tasks)
        return
    chunks = iter([tasks[i : i + _CHUNK] for i in range(0, len(tasks), _CHUNK)])
    pool = ProcessPoolExecutor(max_workers=num_workers)
    try:
        pending = deque(
            pool.submit(_decode_chunk, c) for c in islice(chunks, 4 * num_workers)
        )
        while pending:
            results = pending.popleft().result()
            nxt = next(chunks, None)
            if nxt is not None:
                pending.append(pool.submit(_decode_chunk, nxt))
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _tasks(
    table: pd.DataFrame, root: Path, resize_shorter: int | None, use_bbox: bool
) -> tuple[list[_Task], int]:
    if "path" not in table.columns:
        raise ValueError("build_cache: the index table has no 'path' column")
    if not pd.api.types.is_integer_dtype(table.index) or not table.index.is_unique:
        raise ValueError(
            "build_cache: the index table's row ids (its index) must be unique ints"
        )
    if use_bbox:
        missing = [c for c in BOX_COLUMNS if c not in table.columns]
        if missing:
            raise ValueError(
                f"build_cache: use_bbox is set but the table lacks {missing}"
            )
        boxes = table[list(BOX_COLUMNS)].astype(float).to_numpy()
    else:
        boxes = np.full((len(table), 4), np.nan)
    tasks: list[_Task] = []
    no_box = 0
    for row_id, rel, b in zip(
        table.index, table["path"].astype(str), boxes, strict=True
    ):
        nan = np.isnan(b)
        if nan.all():
            box = None
            no_box += 1
        elif nan.any():
            raise ValueError(
                f"build_cache: row {row_id} ({rel}) has a partial box {b.tolist()}; "
                "x1, y1, x2, y2 must all be set or all null"
            )
        else:
            box = tuple(float(v) for v in b)
        tasks.append((int(row_id), rel, str(root / rel), box, resize_shorter))
    return tasks, no_box


def _claim(directory: Path) -> None:
    """Refuse to replace an existing directory that is not an image cache."""
    if not directory.exists():
        return
    if not directory.is_dir():
        raise ValueError(f"build_cache: {directory} exists and is not a directory")
    if not any(directory.iterdir()):
        return
    try:
        fmt = json.loads((directory / "meta.json").read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        fmt = None
    if fmt != FORMAT:
        raise ValueError(
            f"build_cache: {directory} exists and is not an image cache; "
            "refusing to overwrite it (use an empty or new directory)"
        )


def build_cache(
    table: pd.DataFrame,
    root: str | Path,
    directory: str | Path,
    *,
    resize_shorter: int | None = None,
    use_bbox: bool = False,
    on_error: str = "raise",
    num_workers: int = 0,
) -> ImageCache:
    """Decode every row of ``table`` once into a uint8 cache at ``directory``.

    Images are decoded as RGB (grey, palette, CMYK, 16-bit and RGBA are
    converted; alpha is dropped) with their EXIF orientation applied, cropped to
    their box if ``use_bbox`` (rows without a box keep the whole image), then
    resized (shorter side, see ``decode_image``). Each file is read once: its bytes
    are decoded and digested (``digests.npy``, BLAKE2b-128). The cache is written
    to a temporary directory beside ``directory`` and renamed into place, so a
    failed build leaves the previous cache (if any) untouched; the temporary
    folders an interrupted (killed) build left there are removed first.

    Args:
        table: index table (docs/datasets.md#index-table); its index holds the row
            ids, its ``path`` column paths relative to ``root``, ``x1..y2`` the boxes.
        root: dataset root.
        directory: output directory (created; a previous cache there is replaced).
        resize_shorter: shorter side in pixels, or ``None`` for the native size.
        use_bbox: crop each image to its box (clipped to the image) before resizing.
        on_error: ``raise`` (DEFAULT) fails on the first unreadable image with a
            one-line ``ValueError`` naming the file and the row id; ``skip`` leaves it
            out, warns once with the count and file names, and records it in
            ``meta.json`` (``skipped``).
        num_workers: decoding processes (0 = in this process). The output order is
            the table's row order whatever the number of workers.

    Returns:
        The opened ``ImageCache``; images are in table order.

    Raises:
        ValueError: invalid option, malformed table, an unreadable image (``raise``),
            every image unreadable (``skip``), or ``directory`` holding something
            other than an image cache.
        FileNotFoundError: ``root`` does not exist.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(
            f"build_cache: on_error {on_error!r} is invalid; valid: raise, skip"
        )
    if resize_shorter is not None and (
        isinstance(resize_shorter, bool)
        or int(resize_shorter) != resize_shorter
        or resize_shorter < 1
    ):
        raise ValueError(
            "build_cache: resize_shorter must be a positive int or None, "
            f"got {resize_shorter!r}"
        )
    root, directory = Path(root), Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"build_cache: data root {root} does not exist")
    resize_shorter = None if resize_shorter is None else int(resize_shorter)
    tasks, no_box = _tasks(table, root, resize_shorter, use_bbox)
    source = source_hash(table, root, use_bbox=use_bbox)
    _claim(directory)
    tmp = staging_dir(directory)
    try:
        offsets: list[tuple[int, int, int, int]] = []
        row_ids: list[int] = []
        digests: list[bytes] = []
        skipped: list[dict[str, Any]] = []
        offset = 0
        with (
            open(tmp / "pixels.u8", "wb") as f,
            closing(_decoded(tasks, num_workers)) as results,
        ):
            for row_id, rel, pixels, reason, digest in results:
                if pixels is None:
                    if on_error == "raise":
                        raise ValueError(
                            f"cannot decode image {rel} "
                            f"({row_origin(table, row_id)}): {reason}"
                        )
                    skipped.append({"row_id": row_id, "path": rel, "reason": reason})
                    continue
                f.write(memoryview(pixels).cast("B"))
                h, w, c = pixels.shape
                offsets.append((offset, h, w, c))
                row_ids.append(row_id)
                digests.append(digest)
                offset += pixels.nbytes
        if skipped and not row_ids:
            raise ValueError(
                f"build_cache: none of the {len(tasks)} images could be decoded "
                f"(first: {skipped[0]['path']}: {skipped[0]['reason']})"
            )
        np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64).reshape(-1, 4))
        np.save(tmp / "row_ids.npy", np.asarray(row_ids, dtype=np.int64))
        np.save(
            tmp / DIGESTS,
            np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, DIGEST_SIZE),
        )
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "count": len(row_ids),
            "resize_shorter": resize_shorter,
            "use_bbox": bool(use_bbox),
            "rows_without_box": no_box if use_bbox else None,
            "total_bytes": offset,
            "skipped": skipped,
            "source_hash": source,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        publish(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if skipped:
        names = ", ".join(f"{s['path']} ({s['reason']})" for s in skipped[:_WARN_LIST])
        more = (
            f" and {len(skipped) - _WARN_LIST} more"
            if len(skipped) > _WARN_LIST
            else ""
        )
        warnings.warn(
            f"build_cache: skipped {len(skipped)} of {len(tasks)} images that could "
            f"not be decoded: {names}{more} (listed in {directory / 'meta.json'})",
            stacklevel=2,
        )
    return ImageCache.open(directory)


class ImageCache:
    """Read-only access to a cache written by ``build_cache``.

    Use ``ImageCache.open(directory)``. The pixel file is memory-mapped privately
    (copy-on-write): nothing is read until an image is accessed and nothing is ever
    written back. Pickling stores only the directory (DataLoader workers reopen it).
    """

    def __init__(
        self,
        directory: Path,
        pixels: np.ndarray,
        offsets: np.ndarray,
        row_ids: np.ndarray,
        meta: dict[str, Any],
        digests: np.ndarray | None = None,
    ) -> None:
        self.directory = directory
        self._pixels = pixels
        self._offsets = offsets
        self._row_ids = row_ids
        self._meta = meta
        self._digests = digests
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def open(cls, directory: str | Path) -> ImageCache:
        """Open a cache directory and check that its files agree.

        Raises:
            FileNotFoundError: ``directory`` does not exist.
            ValueError: a file is missing, unreadable or inconsistent with the others
                (one line naming the directory; rebuild with ``build_cache``).
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"image cache {directory} does not exist")
        missing = [n for n in FILES if not (directory / n).is_file()]
        if missing:
            raise ValueError(
                f"image cache {directory} is incomplete: missing {missing}; rebuild it"
            )

        def broken(why: str) -> ValueError:
            return ValueError(
                f"image cache {directory} is inconsistent: {why}; rebuild it"
            )

        try:
            meta = json.loads((directory / "meta.json").read_text())
            offsets = np.load(directory / "offsets.npy", allow_pickle=False)
            row_ids = np.load(directory / "row_ids.npy", allow_pickle=False)
            digests = (
                np.load(directory / DIGESTS, allow_pickle=False)
                if (directory / DIGESTS).is_file()
                else None
            )
        except (OSError, ValueError) as exc:
            raise broken(" ".join(f"{type(exc).__name__}: {exc}".split())) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise broken("meta.json does not describe an image cache")
        if meta.get("format_version") != FORMAT_VERSION:
            raise broken(
                f"format_version {meta.get('format_version')!r}, "
                f"expected {FORMAT_VERSION}"
            )
        n = meta.get("count")
        if offsets.dtype != np.int64 or offsets.ndim != 2 or offsets.shape[1] != 4:
            raise broken(
                f"offsets.npy has shape {offsets.shape} dtype {offsets.dtype}, "
                "expected int64 (N, 4)"
            )
        if row_ids.dtype != np.int64 or row_ids.shape != (offsets.shape[0],):
            raise broken(
                f"row_ids.npy has shape {row_ids.shape}, offsets.npy {offsets.shape}"
            )
        if n != len(row_ids):
            raise broken(f"meta.json count {n} but {len(row_ids)} row ids")
        if digests is not None and (
            digests.dtype != np.uint8 or digests.shape != (len(row_ids), DIGEST_SIZE)
        ):
            raise broken(
                f"{DIGESTS} has shape {digests.shape} dtype {digests.dtype}, "
                f"expected uint8 ({len(row_ids)}, {DIGEST_SIZE})"
            )
        sizes = offsets[:, 1] * offsets[:, 2] * offsets[:, 3]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if n else sizes
        if (
            (offsets[:, 3] != 3).any()
            or (offsets[:, 1:3] < 1).any()
            or (offsets[:, 0] != starts).any()
        ):
            raise broken("offsets.npy holds invalid shapes or non-contiguous offsets")
        total = int(sizes.sum())
        found = (directory / "pixels.u8").stat().st_size
        if found != total:
            raise broken(
                f"pixels.u8 holds {found} bytes, offsets.npy describes {total}"
            )
        if total:
            pixels = np.memmap(
                directory / "pixels.u8", dtype=np.uint8, mode="c", shape=(total,)
            )
        else:
            pixels = np.empty(0, dtype=np.uint8)
        return cls(directory, pixels, offsets, row_ids, meta, digests)

    def __len__(self) -> int:
        return len(self._row_ids)

    def __repr__(self) -> str:
        return f"ImageCache({str(self.directory)!r}, count={len(self)})"

    def __getstate__(self) -> dict[str, Any]:
        return {"directory": str(self.directory)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(ImageCache.open(state["directory"]).__dict__)

    @property
    def row_ids(self) -> np.ndarray:
        """int64 (N,): index-table row id of each cached image, in cache order."""
        return self._row_ids

    @property
    def shapes(self) -> np.ndarray:
        """int64 (N, 3): height, width, channels of each cached image."""
        return self._offsets[:, 1:]

    @property
    def digests(self) -> np.ndarray | None:
        """uint8 (N, 16): BLAKE2b-128 of each cached image's file bytes, in cache
        order; ``None`` for a cache built before they were recorded."""
        return self._digests

    @property
    def meta(self) -> dict[str, Any]:
        """The parsed ``meta.json``."""
        return self._meta

    def image(self, position: int, *, readonly: bool = True) -> np.ndarray:
        """The image at cache ``position`` as a zero-copy view.

        Args:
            position: 0..N−1 (negative positions count from the end).
            readonly: ``False`` returns a writable view for zero-copy
                ``torch.from_numpy``; the mapping is private, so writes never reach
                the file (they would only change this process's copy of the pages).

        Returns:
            uint8 array (H, W, 3).
        """
        n = len(self)
        if not -n <= position < n:
            raise IndexError(
                f"image cache {self.directory}: position {position} "
                f"out of range 0..{n - 1}"
            )
        off, h, w, c = (int(v) for v in self._offsets[position])
        view = self._pixels[off : off + h * w * c].reshape(h, w, c)
        if readonly:
            view = view.view()
            view.flags.writeable = False
        return view

    def positions_of(self, row_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Cache positions of index-table ``row_ids``.

        Args:
            row_ids: (M,) row ids.

        Returns:
            int64 (M,) positions.

        Raises:
            KeyError: some row ids are not cached (names them, and why if skipped).
        """
        if self._lookup is None:
            order = np.argsort(self._row_ids, kind="stable")
            self._lookup = (self._row_ids[order], order)
        ids, order = self._lookup
        query = np.asarray(row_ids, dtype=np.int64).reshape(-1)
        at = np.minimum(np.searchsorted(ids, query), max(len(ids) - 1, 0))
        found = (ids[at] == query) if len(ids) else np.zeros(len(query), bool)
        if not found.all():
            missing = query[~found]
            skipped = {s["row_id"]: s["reason"] for s in self._meta.get("skipped", [])}
            shown = ", ".join(
                f"{r} (skipped at build: {skipped[r]})" if r in skipped else str(r)
                for r in missing[:10].tolist()
            )
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise KeyError(
                f"image cache {self.directory}: {len(missing)} row ids not cached: "
                f"{shown}{more}"
            )
        return order[at].astype(np.int64)

    def manifest(self) -> dict[str, Any]:
        """JSON-serialisable summary for the protocol card."""
        m = self._meta
        return {
            "directory": str(self.directory),
            "count": len(self),
            "resize_shorter": m.get("resize_shorter"),
            "use_bbox": m.get("use_bbox"),
            "rows_without_box": m.get("rows_without_box"),
            "skipped": list(m.get("skipped", [])),
            "format_version": m.get("format_version"),
            "source_hash": m.get("source_hash"),
        }


# --- caches of several sizes side by side -------------------------------------

CACHE_PREFIX = "cache_"


def size_label(resize_shorter: int | None) -> str:
    """``"original"`` (native size) or the shorter side as text (``"256"``): the
    value of ``transforms.source_size`` and of the ``cache_size`` parameter."""
    return "original" if resize_shorter is None else str(int(resize_shorter))


def describe_size(resize_shorter: int | None) -> str:
    """``"the original size"`` or ``"shorter side 256"`` (error messages)."""
    if resize_shorter is None:
        return "the original size"
    return f"shorter side {int(resize_shorter)}"


def cache_name(resize_shorter: int | None) -> str:
    """Folder name of the cache of one size: ``cache_r256`` or ``cache_original``."""
    if resize_shorter is None:
        return f"{CACHE_PREFIX}original"
    return f"{CACHE_PREFIX}r{int(resize_shorter)}"


def cache_path(folder: str | Path, resize_shorter: int | None) -> Path:
    """``<folder>/cache_r<N>`` or ``<folder>/cache_original``."""
    return Path(folder) / cache_name(resize_shorter)


def read_meta(directory: str | Path) -> dict[str, Any] | None:
    """The ``meta.json`` of the cache in ``directory``, or ``None`` when it holds
    none (no cache, or an unreadable ``meta.json``)."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def is_image_cache(directory: str | Path) -> bool:
    """Whether ``directory`` holds a cache (its ``meta.json`` says so)."""
    return read_meta(Path(directory)) is not None


def find_caches(folder: str | Path) -> dict[int | None, Path]:
    """The caches in ``folder``: shorter side (``None``: original) -> directory.

    Only sub-folders named after the size their ``meta.json`` records count
    (``cache_r256`` holding a 256 cache); anything else is ignored.
    """
    folder = Path(folder)
    found: dict[int | None, Path] = {}
    if not folder.is_dir():
        return found
    for directory in sorted(folder.glob(f"{CACHE_PREFIX}*")):
        meta = read_meta(directory) if directory.is_dir() else None
        if meta is None:
            continue
        size = meta.get("resize_shorter")
        if directory.name == cache_name(size):
            found[size] = directory
    return found


def _sizes_text(found: dict[int | None, Path]) -> str:
    if not found:
        return "no image cache"
    items = sorted(found.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    return "only " + ", ".join(
        f"{describe_size(size)} ({path.name})" for size, path in items
    )


def source_hash(table: pd.DataFrame, root: str | Path, *, use_bbox: bool) -> str:
    """Hash of what a cache is built from, whatever its size: the row ids, paths
    and (with ``use_bbox``) boxes of ``table``, and each listed file's size and
    modification time (one ``stat`` per file; a missing file counts as absent).
    Two caches with the same hash were decoded from the same files."""
    root = Path(root)
    h = hashlib.sha256(f"use_bbox={bool(use_bbox)}\n".encode())
    boxes = (
        table[list(BOX_COLUMNS)].astype(float).to_numpy()
        if use_bbox and all(c in table.columns for c in BOX_COLUMNS)
        else None
    )
    for i, (row_id, rel) in enumerate(
        zip(table.index, table["path"].astype(str), strict=True)
    ):
        try:
            st = os.stat(root / rel)
            stat = f"{st.st_size}\0{st.st_mtime_ns}"
        except OSError:
            stat = "absent"
        box = "" if boxes is None else ",".join(repr(float(v)) for v in boxes[i])
        h.update(f"{int(row_id)}\0{rel}\0{box}\0{stat}\n".encode())
    return h.hexdigest()[:16]


def open_sized_cache(
    folder: str | Path,
    resize_shorter: int | None,
    *,
    source_hash: str | None = None,
    wanted_by: str = "the run",
    fix: str = "build it",
) -> ImageCache:
    """Open the cache of one size in ``folder`` (``cache_path``).

    Args:
        folder: the dataset's cache folder.
        resize_shorter: the shorter side wanted, or ``None`` for the original size.
        source_hash: when given, the cache must have been built from these source
            files (its ``meta.json`` ``source_hash``), e.g. those of the dataset's
            latest ``data`` run.
        wanted_by: what asks for this size (the config key and its value), first
            in the error message.
        fix: how to build the missing cache (the exact command), last in it.

    Returns:
        The opened ``ImageCache``.

    Raises:
        FileNotFoundError: no cache of that size in ``folder`` (one line:
            ``wanted_by``, the size wanted, the sizes available, ``fix``).
        ValueError: the cache of that size was built from other source files.
    """
    folder = Path(folder)
    found = find_caches(folder)
    directory = found.get(resize_shorter)
    if directory is None:
        raise FileNotFoundError(
            f"{wanted_by} wants the image cache at {describe_size(resize_shorter)}, "
            f"but {folder} holds {_sizes_text(found)}; {fix}"
        )
    cache = ImageCache.open(directory)
    built = cache.meta.get("source_hash")
    if source_hash is not None and built != source_hash:
        raise ValueError(
            f"{wanted_by} wants the image cache at {describe_size(resize_shorter)}, "
            f"but {directory} was built from other source files than the dataset's "
            f"latest data run (source_hash {built} vs {source_hash}); {fix}"
        )
    return cache
