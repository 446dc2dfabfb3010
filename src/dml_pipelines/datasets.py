"""Kedro datasets for the project's artifacts (Kedro layer, not core).

- ``TorchStateDataset``: a dict of tensors and plain values (weights + resolved
  config) saved with ``torch.save``, loaded with ``weights_only=True``.
- ``EmbeddingsDataset``: the embeddings artifact ``.npz``
  (docs/protocols.md#embeddings-artifact-and-metrics-file).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset


class _FileDataset(AbstractDataset):
    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def _exists(self) -> bool:
        return Path(self._filepath).exists()

    def _path(self) -> Path:
        path = Path(self._filepath)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


class TorchStateDataset(_FileDataset):
    """``.pt`` file holding a state dict plus plain metadata."""

    def load(self) -> dict[str, Any]:
        from dml_pipelines.core.engine.trainer import load_checkpoint

        return load_checkpoint(self._filepath)

    def save(self, data: dict[str, Any]) -> None:
        from dml_pipelines.core.engine.trainer import save_atomic

        save_atomic(data, self._path())


class EmbeddingsDataset(_FileDataset):
    """The embeddings artifact (``EmbeddingSet``) as one ``.npz``."""

    def load(self) -> Any:
        from dml_pipelines.core.evaluation import load_embeddings

        return load_embeddings(self._filepath)

    def save(self, data: Any) -> None:
        from dml_pipelines.core.evaluation import save_embeddings

        save_embeddings(self._path(), data)
