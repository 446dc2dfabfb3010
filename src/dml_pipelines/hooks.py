"""Project hooks."""

from kedro.framework.hooks import hook_impl


class DataRootCheck:
    """Before any node runs, check the run's dataset block and data root when the
    pipeline ingests data (one-line error naming the key or path)."""

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        if "params:datasets" not in pipeline.inputs() or not any(
            n.name == "ingest_dataset" for n in pipeline.nodes
        ):
            return
        from dml_pipelines.core.config import resolve_dataset

        resolve_dataset(catalog.load("params:data"), catalog.load("params:datasets"))
