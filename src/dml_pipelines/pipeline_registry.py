"""Project pipelines: ``data``, one per method and baseline (the method template
under a namespace equal to its name) and ``<method>_mlrc`` (MLRC evaluation over
the fold models).

Kedro 1.7's ``find_pipelines`` loads a requested pipeline from the folder of the
same name (``kedro run --pipelines=ccp`` looks for ``pipelines/ccp``), which
cannot serve namespaced instances of one shared template; so the registry is
explicit, and ``tests/test_project_structure.py`` checks that every folder under
``pipelines/`` exposes a ``create_pipeline`` returning a ``Pipeline``.
"""

from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    from dml_pipelines.pipelines.data import create_pipeline as data_pipeline
    from dml_pipelines.pipelines.reporting import create_pipeline as report_pipeline
    from dml_pipelines.pipelines.training.pipeline import create_method_pipelines

    pipelines: dict[str, Pipeline] = {"data": data_pipeline()}
    pipelines.update(create_method_pipelines())
    pipelines["report"] = report_pipeline()
    pipelines["__default__"] = pipelines["contrastive_c1"]
    return pipelines
