"""Progress bars of the training loop (one per epoch) and of the embedding pass.

Shown on stderr when it is a terminal, and not when

* ``DML_QUIET`` is set to a true value (``1``, ``true``, ``yes``; the switch for
  ``kedro run``, which takes no extra flags),
* ``CI`` is set (CI logs are files, not terminals), or
* this process is not rank 0 of a multi-process run (the caller passes
  ``main=False``).

``DML_PROGRESS=1`` forces the bars on (e.g. into a log file); ``DML_QUIET``
still wins. A bar only reads counters and clocks: it never changes a result.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

_TRUE = ("1", "true", "yes", "on")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def _ci() -> bool:
    value = os.environ.get("CI", "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def progress_enabled(stream: TextIO | None = None, *, main: bool = True) -> bool:
    """Whether a bar is drawn on ``stream`` (default ``sys.stderr``).

    Order: not rank 0 → off; ``DML_QUIET`` → off; ``DML_PROGRESS`` → on;
    ``CI`` → off; else on when ``stream`` is a terminal.
    """
    if not main or _flag("DML_QUIET"):
        return False
    if _flag("DML_PROGRESS"):
        return True
    if _ci():
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False


class Progress:
    """One bar: ``update(n, images=..., loss=...)`` advances it; the postfix
    shows the running mean loss and the images per second so far. A no-op
    object when the bar is off.

    Args:
        total: number of updates expected (``None``: unknown).
        desc: label (e.g. ``epoch 3/30``).
        unit: what one update counts (``step``, ``img``).
        main: this process is rank 0 (other ranks draw nothing).
        leave: keep the finished bar on screen.
        file: stream (default ``sys.stderr``).
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        *,
        main: bool = True,
        leave: bool = True,
        file: TextIO | None = None,
    ) -> None:
        self.enabled = progress_enabled(file, main=main)
        self._bar: Any = None
        self._start = time.perf_counter()
        self._images = 0
        self._loss_sum = 0.0
        self._loss_count = 0
        if self.enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit=unit,
                leave=leave,
                file=file if file is not None else sys.stderr,
                dynamic_ncols=True,
                mininterval=0.5,
            )

    def update(self, n: int = 1, *, images: int = 0, loss: float | None = None) -> None:
        """Advance by ``n``; ``images`` processed and the step's ``loss``
        (a Python float already on the host) feed the postfix."""
        if self._bar is None:
            return
        self._images += images
        postfix = {}
        if loss is not None:
            self._loss_sum += loss
            self._loss_count += 1
            postfix["loss"] = f"{self._loss_sum / self._loss_count:.4f}"
        if self._images:
            elapsed = max(time.perf_counter() - self._start, 1e-9)
            postfix["img/s"] = f"{self._images / elapsed:.1f}"
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
