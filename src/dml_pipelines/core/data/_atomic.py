"""Folders written atomically: built in a temporary folder beside the destination,
then renamed into place (the prepared cache, the unpacked archives).

A process killed mid-write (``kill -9``, a power cut, a cancelled ``dvc repro``)
cannot clean up after itself and leaves ``.<name>.tmp-*`` (or, killed between the
two renames of a replacement, ``.<name>.old-*``) beside the destination: inside a
DVC output such as ``data/03_primary/<dataset>/``. :func:`staging_dir` removes
these leftovers of ``<name>`` when the next write of it starts. One write of a
destination at a time is assumed (the ``data`` stage of one dataset runs once).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

_LEFTOVER_KINDS = ("tmp", "old")


def leftovers(dest: str | Path) -> list[Path]:
    """The ``.<name>.tmp-*`` and ``.<name>.old-*`` folders beside ``dest``."""
    dest = Path(dest)
    name = glob.escape(dest.name)
    return sorted(
        p
        for kind in _LEFTOVER_KINDS
        for p in dest.parent.glob(f".{name}.{kind}-*")
        if p.is_dir()
    )


def staging_dir(dest: str | Path) -> Path:
    """A new empty ``.<name>.tmp-*`` folder beside ``dest``, after removing the
    leftovers of interrupted writes of ``dest`` (:func:`leftovers`)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in leftovers(dest):
        log.info("removed %s, left by an interrupted write of %s", stale, dest)
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))


def publish(tmp: str | Path, dest: str | Path) -> None:
    """Rename the finished ``tmp`` to ``dest``; a previous ``dest`` is swapped out
    first (renamed into a ``.<name>.old-*`` folder, then deleted)."""
    tmp, dest = Path(tmp), Path(dest)
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, old / "previous")
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
