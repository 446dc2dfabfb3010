"""Kedro project settings."""

from dml_pipelines.config_loader import ProjectConfigLoader
from dml_pipelines.params import run_directory

# block < recipe < conf/local < --params for method blocks; unknown --params fail
CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local/parameters.yml may override single keys (e.g. a data root)
    "merge_strategy": {"parameters": "soft"},
    # catalog paths: seed<S> or seed<S>/fold<F> (params.run_directory)
    "custom_resolvers": {"run_dir": run_directory},
}

from dml_pipelines.hooks import DataRootCheck, RunParameters  # noqa: E402
from dml_pipelines.run_summary import ComputeSettings, RunSummary  # noqa: E402

HOOKS = (RunParameters(), DataRootCheck(), ComputeSettings(), RunSummary())

# `kedro viz ...` only: kedro-viz opens on the expanded lineage and its server
# process exits with its parent (dml_pipelines/viz.py); other commands untouched
from dml_pipelines.viz import install as _install_viz  # noqa: E402

_install_viz()
