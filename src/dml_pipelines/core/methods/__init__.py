"""Methods: a model, a criterion and callbacks, built by name
(``build_method(name, config, num_classes)``)."""

from dml_pipelines.core.methods.registry import build_method  # noqa: F401
