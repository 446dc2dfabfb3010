"""The embeddings artifact and embedding normalisation (docs/protocols.md,
"Embeddings artifact and metrics file" and "What is ranked").

One ``.npz`` per model: ``embeddings`` (float32, N×D), ``labels`` (int64, N),
``index`` (int64, N, row ids into the index table), ``normalization`` (str), and
optionally ``is_query`` / ``is_gallery`` (bool, N) and ``fold`` (int).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dml_pipelines.core.normalization import get_normalization

_REQUIRED = ("embeddings", "labels", "index")


def normalize(x: np.ndarray, mode: str, *, inplace: bool = False) -> np.ndarray:
    """Apply an embedding normalisation before ranking
    (docs/protocols.md#what-is-ranked; the registry ``core/normalization.py``).

    Args:
        x: (N, D) float array.
        mode: ``l2`` (v / ||v||), ``lipschitz`` (v / max(1, ||v||), CCP's clip to the
            unit ball) or ``none``.
        inplace: divide ``x`` itself when it is a float32 array (for fresh copies:
            saves one N×D array).

    Returns:
        (N, D) float32 array (a new array unless ``mode`` is ``none`` and ``x`` is
        already float32, or ``inplace``).
    """
    return get_normalization(mode).array(x, inplace=inplace)


@dataclass
class EmbeddingSet:
    """One model's embeddings of one evaluation set.

    Attributes:
        embeddings: (N, D) float32, the method's output embeddings.
        labels: (N,) int64, original class ids.
        index: (N,) int64, row ids into the index table.
        normalization: ``l2`` (default), ``lipschitz`` or ``none``; applied by
            ``evaluate()`` before ranking.
        is_query: (N,) bool for query → gallery datasets, else None.
        is_gallery: (N,) bool for query → gallery datasets, else None.
        fold: MLRC fold model that produced the embeddings, or None.
    """

    embeddings: np.ndarray
    labels: np.ndarray
    index: np.ndarray
    normalization: str = "l2"
    is_query: np.ndarray | None = None
    is_gallery: np.ndarray | None = None
    fold: int | None = None

    def __post_init__(self) -> None:
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.index = np.asarray(self.index, dtype=np.int64)
        if self.embeddings.ndim != 2:
            raise ValueError(
                f"embeddings must be 2-D (N, D), got shape {self.embeddings.shape}"
            )
        n = self.embeddings.shape[0]
        for name in ("labels", "index", "is_query", "is_gallery"):
            value = getattr(self, name)
            if value is None:
                continue
            if name.startswith("is_"):
                value = np.asarray(value, dtype=bool)
                setattr(self, name, value)
            if value.shape != (n,):
                raise ValueError(
                    f"{name} has shape {value.shape}, expected ({n},) to match "
                    f"embeddings {self.embeddings.shape}"
                )
        if (self.is_query is None) != (self.is_gallery is None):
            raise ValueError("is_query and is_gallery must be given together")
        get_normalization(self.normalization)
        if self.fold is not None:
            self.fold = int(self.fold)


def save_embeddings(path: str | Path, es: EmbeddingSet) -> None:
    """Write ``es`` to one uncompressed ``.npz`` at exactly ``path``.

    Optional fields that are None are not written.
    """
    arrays: dict[str, np.ndarray] = {
        "embeddings": es.embeddings,
        "labels": es.labels,
        "index": es.index,
        "normalization": np.asarray(es.normalization),
    }
    if es.is_query is not None:
        arrays["is_query"] = es.is_query
        arrays["is_gallery"] = es.is_gallery
    if es.fold is not None:
        arrays["fold"] = np.asarray(es.fold, dtype=np.int64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load_embeddings(path: str | Path) -> EmbeddingSet:
    """Read and validate an embeddings artifact written by ``save_embeddings``.

    Raises:
        ValueError: one line naming the file, on a truncated or unreadable
            file, a missing key, a shape mismatch or an invalid ``normalization``.
    """
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in _REQUIRED if k not in data.files]
            if missing:
                raise ValueError(
                    f"{path}: missing key(s) {missing}; an embeddings artifact "
                    f"needs {list(_REQUIRED)}"
                )
            fields = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        # truncated or not an .npz: one line, not numpy's traceback
        raise ValueError(
            f"{path}: not a readable embeddings artifact ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'truncated'}); re-create "
            "it by re-running the run's embedding (extract_embeddings)"
        ) from None
    unknown = sorted(
        set(fields)
        - set(_REQUIRED)
        - {"normalization", "is_query", "is_gallery", "fold"}
    )
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {unknown}")
    normalization = str(fields.pop("normalization", "l2"))
    fold = fields.pop("fold", None)
    try:
        return EmbeddingSet(
            normalization=normalization,
            fold=None if fold is None else int(fold),
            **fields,
        )
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
