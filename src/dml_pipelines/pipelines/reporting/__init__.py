"""The ``report`` pipeline: runs tables, figures, reported-vs-reproduced and
combined tables."""

from dml_pipelines.pipelines.reporting.pipeline import create_pipeline

__all__ = ["create_pipeline"]
