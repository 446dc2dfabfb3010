"""The method template's evaluation half (retrieval, clustering, metrics file)."""

from dml_pipelines.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
