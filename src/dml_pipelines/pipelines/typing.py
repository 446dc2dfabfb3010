"""Per-method parameter typing for the shared template's node functions, and
the one place that resolves the config a run uses."""

import functools

from dml_pipelines.core.config import MethodConfig
from dml_pipelines.params import DataParams, RunParams


def resolve(params: MethodConfig, data: DataParams, run: RunParams) -> MethodConfig:
    """The config of this run: the dataset's recipe, then the run axes (seed,
    MLRC fold). Every node uses it, so all agree on one config."""
    return run.apply(params.for_dataset(data.name))


def typed(func, config_cls):
    """``func`` with its ``params`` argument annotated as ``config_cls`` (the
    method's own config model), so Kedro validates that block before any node
    runs and its unknown keys fail."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    wrapper.__annotations__ = {**func.__annotations__, "params": config_cls}
    return wrapper
