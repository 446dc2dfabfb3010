"""The lineage through Kedro: the augmentation node's file is what training
uses (an edited file stops training), and ``kedro run`` with no pipeline runs
the grid's methods and then reports them."""

import json

import pytest
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

TINY = {
    "dataset": "digits",
    "contrastive_c1": {"training": {"epochs": 1}, "sampler": {"batches_per_epoch": 2}},
}
AUG = "data/05_model_input/digits/contrastive_c1/seed0/augmentation.json"
STATE = "data/06_models/digits/contrastive_c1/seed0/model_state.pt"


def _run(project, params, pipeline=None, **filters):
    bootstrap_project(project)
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        return session.run(pipeline_names=[pipeline] if pipeline else None, **filters)


def test_training_uses_the_augmentation_file_and_refuses_an_edited_one(project):
    _run(
        project,
        TINY,
        "contrastive_c1",
        to_nodes=["contrastive_c1.build_augmentation"],
    )
    desc = json.loads((project / AUG).read_text())
    assert desc["preset"] == "small" and desc["seed"] == 0
    assert desc["transforms"]["geometry"] == "affine"
    assert desc["transforms"]["degrees"] == 10.0
    assert not (project / STATE).exists()  # training did not run yet

    desc["transforms"]["degrees"] = 30.0  # not what the config says
    (project / AUG).write_text(json.dumps(desc))
    with pytest.raises(ValueError, match="augmentation: .*transforms.degrees"):
        _run(
            project, TINY, "contrastive_c1", node_names=["contrastive_c1.train_method"]
        )
    assert not (project / STATE).exists()


def test_kedro_run_alone_runs_the_grid_then_reports_it(project):
    grid = yaml.safe_load((project / "conf/grid.yaml").read_text())
    grid["methods"] = ["contrastive_c1"]
    (project / "conf/grid.yaml").write_text(yaml.safe_dump(grid))
    _run(project, TINY)  # __default__
    data = project / "data"
    assert (data / AUG.removeprefix("data/")).exists()
    assert (data / "08_reporting/digits/contrastive_c1/seed0/metrics.json").exists()
    combined = (data / "08_reporting/report/combined.csv").read_text()
    assert "contrastive_c1" in combined  # the report saw the run it came after
    runs = (data / "08_reporting/report/datasets/digits/runs.csv").read_text()
    assert "contrastive_c1" in runs
    assert (data / "08_reporting/report/datasets/digits/training_curves.png").exists()
    assert (data / "08_reporting/report/paper_tables.md").exists()
