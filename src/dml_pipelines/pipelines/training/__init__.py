"""The method template's training half; ``create_method_pipeline(name)`` builds a
method's full pipeline under its namespace."""

from dml_pipelines.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
