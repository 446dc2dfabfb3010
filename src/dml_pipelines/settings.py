"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from dml_pipelines.core.config import run_directory

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local/parameters.yml may override single keys (e.g. a data root)
    "merge_strategy": {"parameters": "soft"},
    # catalog paths: seed<S> or seed<S>/fold<F> (core.config.run_directory)
    "custom_resolvers": {"run_dir": run_directory},
}

from dml_pipelines.hooks import DataRootCheck  # noqa: E402

HOOKS = (DataRootCheck(),)

# `kedro viz ...` only: kedro-viz opens on the expanded lineage and its server
# process exits with its parent (dml_pipelines/viz.py); other commands untouched
from dml_pipelines.viz import install as _install_viz  # noqa: E402

_install_viz()
