"""Image-file checks shared by the readers: header verification and sizes.

``verify_images`` opens every image's header (format, mode and size; for PNG the
chunk checksums too) in a thread pool, with a progress bar on a terminal, and
returns the files that cannot be read as images. It does not decode the pixels: a
file truncated inside its pixel data passes and fails later, when the prepared
cache decodes it (``build_cache``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from PIL import Image, UnidentifiedImageError

T = TypeVar("T")

_SERIAL_BELOW = 64  # fewer files than this are checked in the calling thread
_SHOWN = 10  # bad files named in an error message


def _workers() -> int:
    return min(32, (os.cpu_count() or 1) * 4)


def parallel_map(fn: Callable[[str], T], items: Sequence[str], *, desc: str) -> list[T]:
    """``[fn(x) for x in items]`` in a thread pool, order kept; a progress bar is
    shown when stderr is a terminal (tqdm decides)."""
    from tqdm.auto import tqdm

    if len(items) < _SERIAL_BELOW:
        return [fn(x) for x in items]
    with (
        ThreadPoolExecutor(max_workers=_workers()) as pool,
        tqdm(total=len(items), desc=desc, unit="img", disable=None) as bar,
    ):
        out = []
        for result in pool.map(fn, items):
            out.append(result)
            bar.update()
        return out


def header_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as an image (``None`` when its header is fine).

    Opens the file with Pillow (format, mode, size) and runs ``Image.verify``
    (chunk CRCs for PNG); the pixels are not decoded.
    """
    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as img:
            width, height = img.size
            img.verify()
        if width < 1 or height < 1:
            return f"zero-size image {width}x{height}"
    except FileNotFoundError:
        return "file not found"
    except UnidentifiedImageError:
        return "not an image file Pillow can identify"
    except Exception as exc:  # Pillow raises many types for a broken header
        return " ".join(f"{type(exc).__name__}: {exc}".split()).replace(str(path), "")
    return None


def verify_images(
    root: str | Path, paths: Sequence[str], *, desc: str = "verify images"
) -> list[tuple[int, str]]:
    """Open the header of every image.

    Args:
        root: folder the ``paths`` are relative to.
        paths: (N,) relative image paths.
        desc: progress-bar label.

    Returns:
        ``(position in paths, reason)`` of every file that is not a readable image,
        in ``paths`` order.
    """
    root = str(root)
    reasons = parallel_map(
        lambda rel: header_problem(os.path.join(root, rel)), paths, desc=desc
    )
    return [(i, r) for i, r in enumerate(reasons) if r is not None]


def image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from the header, ``None`` if the file is not readable."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError):
        return None


def image_sizes(
    root: str | Path, paths: Sequence[str], *, desc: str = "image sizes"
) -> list[tuple[int, int] | None]:
    """Header sizes (width, height) of ``root / path`` for every path (``None``
    where unreadable), read in parallel."""
    root = str(root)
    return parallel_map(
        lambda rel: image_size(os.path.join(root, rel)), paths, desc=desc
    )


def describe_bad(bad: Sequence[tuple[str, str]], total: int) -> str:
    """``"3 of 120 images ...: a.jpg (reason), ..."`` naming the first 10."""
    shown = ", ".join(f"{p} ({r})" for p, r in bad[:_SHOWN])
    more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    return f"{len(bad)} of {total} images are not readable images: {shown}{more}"
