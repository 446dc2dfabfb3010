"""Project hooks."""

import logging

from kedro.framework.hooks import hook_impl

log = logging.getLogger(__name__)


class RunParameters:
    """Before any node runs: every ``--params`` key must be read by the pipeline
    being run (a key of another method's block is an error, not silently
    ignored), and the method blocks the pipeline reads log the settings that
    their recipe, conf/local and the command line made (``config_loader.py``)."""

    #: blocks that hooks read for every pipeline (``run_summary.ComputeSettings``)
    HOOK_BLOCKS = ("compute",)

    def __init__(self) -> None:
        self._loader = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._loader = context.config_loader

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        from dml_pipelines.core.layers import flatten

        read = {
            i.split(":", 1)[1].split(".")[0]
            for n in pipeline.nodes
            for i in n.inputs
            if i.startswith("params:")
        } | set(self.HOOK_BLOCKS)
        # a method's block belongs to every pipeline of that method (its MLRC
        # evaluation, a --tags subset): those nodes live in its namespace
        read |= {n.namespace.split(".")[0] for n in pipeline.nodes if n.namespace}
        loader = self._loader
        resolver = loader.resolver_keys() if hasattr(loader, "resolver_keys") else set()
        runtime = run_params.get("runtime_params") or {}
        names = ", ".join(run_params.get("pipeline_names") or ["__default__"])
        for key in flatten(runtime):
            top = key.split(".")[0]
            if key not in resolver and top not in read:
                which = f"pipeline being run ({names}"
                if run_params.get("tags") or run_params.get("node_names"):
                    which += ", with its --tags/--nodes filter"
                fix = (
                    f"run the pipeline that does (kedro run --pipelines={top}) "
                    if top in (getattr(loader, "provenance", None) or {})
                    else ""
                )
                raise ValueError(
                    f"--params {key}: the {which}) reads no parameter {top!r}; "
                    f"{fix}or drop the key"
                )
        for name, settings in (getattr(loader, "provenance", None) or {}).items():
            if name not in read:
                continue
            changed = [s for s in settings if s.value != s.base]
            if changed:
                log.info(
                    "%s (dataset %s): %s",
                    name,
                    loader.dataset,
                    "; ".join(f"{s.key}={s.value!r} [{s.source}]" for s in changed),
                )


class DataRootCheck:
    """Before any node runs, check the run's dataset block and data root when the
    pipeline ingests data (one-line error naming the key or path)."""

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        if "params:datasets" not in pipeline.inputs() or not any(
            n.name == "ingest_dataset" for n in pipeline.nodes
        ):
            return
        from dml_pipelines.params import resolve_dataset

        resolve_dataset(catalog.load("params:data"), catalog.load("params:datasets"))
