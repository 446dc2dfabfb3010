"""The ``data`` pipeline: ingestion and prepared-image cache."""

from dml_pipelines.pipelines.data.pipeline import create_pipeline

__all__ = ["create_pipeline"]
