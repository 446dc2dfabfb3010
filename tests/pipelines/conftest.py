"""Shared set-up of the pipeline tests: run inside a scratch project copy."""

import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project


@pytest.fixture(autouse=True)
def _in_project(project, monkeypatch):
    # `kedro run` and DVC stages run from the project root; relative paths in
    # parameters (data roots, cache and checkpoint folders) resolve against it.
    monkeypatch.chdir(project)


def run(project, pipeline, params, tags=None):
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        return session.run(pipeline_name=pipeline, tags=tags)
