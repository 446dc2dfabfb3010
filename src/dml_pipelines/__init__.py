"""dml_pipelines: reproducible deep metric learning pipelines (Kedro + DVC)."""

__version__ = "0.1.0"
