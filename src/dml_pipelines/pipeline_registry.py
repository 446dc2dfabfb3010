"""Project pipelines: ``data``, one per method and baseline (the method template
under a namespace equal to its name), ``<method>_mlrc`` (MLRC evaluation over
the fold models), ``report``, and ``__default__``: the whole lineage of the grid
(``data``, every method of ``conf/grid.yaml`` ``methods``, then ``report``,
which waits for the methods' runs).

Kedro 1.7's ``find_pipelines`` loads a requested pipeline from the folder of the
same name (``kedro run --pipelines=ccp`` looks for ``pipelines/ccp``), which
cannot serve namespaced instances of one shared template; so the registry is
explicit, and ``tests/test_project_structure.py`` checks that every folder under
``pipelines/`` exposes a ``create_pipeline`` returning a ``Pipeline``.
"""

import logging
from pathlib import Path

from kedro.pipeline import Pipeline

log = logging.getLogger(__name__)

GRID = Path("conf") / "grid.yaml"


def grid_methods(known: list[str]) -> list[str]:
    """``methods`` of ``conf/grid.yaml`` (the project root is the working
    directory of ``kedro run``/``kedro viz``; else next to the package), in
    order; names that are not registered methods are left out with a warning.
    Without a grid file: every registered method."""
    import yaml

    here = Path(__file__).resolve().parents[2] / GRID
    path = next((p for p in (Path.cwd() / GRID, here) if p.is_file()), None)
    if path is None:
        return list(known)
    methods = (yaml.safe_load(path.read_text()) or {}).get("methods") or []
    unknown = [m for m in methods if m not in known]
    if unknown:
        log.warning("%s: methods %s are not registered; left out", path, unknown)
    return [m for m in methods if m in known]


def register_pipelines() -> dict[str, Pipeline]:
    from dml_pipelines.core.methods.configs import method_configs
    from dml_pipelines.pipelines.data import create_pipeline as data_pipeline
    from dml_pipelines.pipelines.reporting import create_pipeline as report_pipeline
    from dml_pipelines.pipelines.reporting.pipeline import create_gated_pipeline
    from dml_pipelines.pipelines.training.pipeline import create_method_pipelines

    pipelines: dict[str, Pipeline] = {"data": data_pipeline()}
    pipelines.update(create_method_pipelines())
    pipelines["report"] = report_pipeline()
    grid = grid_methods(list(method_configs()))
    default = pipelines["data"]
    for m in grid:
        default += pipelines[m]
    pipelines["__default__"] = default + create_gated_pipeline(grid)
    return pipelines
