"""Cheap fingerprints of a dataset's files (docs/protocols.md "Data fingerprint").

``source_fingerprint`` walks the data root and hashes every file's relative path,
size and modification time (nanoseconds), so that it changes when a file is added,
removed, replaced or rewritten, at the cost of one ``stat`` per file (about a
second for the 120k files of SOP) instead of reading the images. The ``extract``
DVC stage records it, so the data stage re-runs when a file under the root changed.

``data_fingerprint`` identifies the training data of a run (part of its resume
key): every training row (path, label, box), the cache's settings, and the
content digest of every training image file, which ``build_cache`` computed from
the bytes it read to decode them (``digests.npy``). No image is read again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from dml_pipelines.core.data.cache import ImageCache

VERSION = 2
"""Version of ``data_fingerprint``'s recipe (1: a strided sample of ~256 cached
images' pixels; 2: every training file's content digest)."""
ROW_COLUMNS = ("path", "label", "x1", "y1", "x2", "y2")
"""Index-table columns of a training row that the fingerprint covers."""
_NOT_HASHED = ("directory", "source_hash")
"""Cache ``meta.json`` keys left out: where the cache lives, and the files'
modification times (the content digests identify the files instead)."""


def source_fingerprint(root: str | Path) -> dict[str, Any]:
    """Fingerprint of the files under ``root``.

    Args:
        root: the data root (a folder; for a file, e.g. a CSV index, its folder).

    Returns:
        ``{"files": N, "bytes": total size, "sha256": hex digest}``; the digest
        covers every file's relative path, size and ``st_mtime_ns`` in sorted
        path order.

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data root {root} does not exist")
    base = root if root.is_dir() else root.parent
    entries = []
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        for name in files:
            path = os.path.join(folder, name)
            st = os.stat(path)
            rel = os.path.relpath(path, base).replace(os.sep, "/")
            entries.append((rel, st.st_size, st.st_mtime_ns))
    entries.sort()
    h = hashlib.sha256()
    for rel, size, mtime in entries:
        h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return {
        "files": len(entries),
        "bytes": sum(e[1] for e in entries),
        "sha256": h.hexdigest(),
    }


def data_fingerprint(table: pd.DataFrame, rows: np.ndarray, cache: ImageCache) -> str:
    """Fingerprint of the training data, part of a run's resume key.

    Covers every training row: its row id, ``path``, ``label`` and box (the index
    table), its cache position and decoded shape, and the BLAKE2b digest of its
    image file's bytes (``cache.digests``, computed when the cache was built), plus
    the cache's settings (``meta.json`` without ``directory`` and ``source_hash``:
    size, bbox use, counts, skipped rows). Modification times are left out: every
    training image has a content digest, so a restored copy of the same bytes
    keeps its fingerprint, and the same names with other bytes change it. Costs
    one hash over ~40 bytes per row (no image is read).

    Args:
        table: the index table (row ids in its index).
        rows: (M,) the training row ids.
        cache: the prepared cache the run trains on.

    Returns:
        16 hex characters.

    Raises:
        ValueError: the cache has no content digests (built before they were
            recorded): one line asking to rebuild it.
        KeyError: some rows are not cached (``ImageCache.positions_of``).
    """
    digests = cache.digests
    if digests is None:
        raise ValueError(
            f"image cache {cache.directory} has no per-image content digests "
            "(built before they were recorded), so the training data cannot be "
            "fingerprinted; rebuild it: kedro run --pipelines=data --params "
            "dataset=<dataset>"
        )
    h = hashlib.sha256(f"data_fingerprint v{VERSION}\n".encode())
    cols = [c for c in ROW_COLUMNS if c in table]
    h.update(pd.util.hash_pandas_object(table.loc[rows, cols], index=True).values)
    meta = {k: v for k, v in cache.meta.items() if k not in _NOT_HASHED}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    positions = cache.positions_of(rows)
    h.update(np.ascontiguousarray(positions).tobytes())
    h.update(np.ascontiguousarray(cache.shapes[positions]).tobytes())
    h.update(np.ascontiguousarray(digests[positions]).tobytes())
    return h.hexdigest()[:16]
