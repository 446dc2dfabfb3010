"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local/parameters.yml may override single keys (e.g. a data root)
    "merge_strategy": {"parameters": "soft"},
}

from dml_pipelines.hooks import DataRootCheck  # noqa: E402

HOOKS = (DataRootCheck(),)
