"""``training.devices: 2`` through Kedro: two gloo processes train the method,
rank 0 alone writes, and the artifacts are those of a single-process run."""

import json

import pytest

from tests.pipelines.conftest import run


@pytest.mark.slow
def test_two_process_run_writes_one_checkpoint_and_the_usual_artifacts(project):
    block = {
        "training": {"epochs": 1, "devices": 2, "device": "cpu"},
        "sampler": {"batches_per_epoch": 3},
    }
    run(project, "contrastive_c1", {"dataset": "digits", "contrastive_c1": block})
    models = project / "data/06_models/digits/contrastive_c1/seed0"
    assert sorted(p.name for p in (models / "checkpoints").iterdir()) == ["last.pt"]
    assert (models / "model_state.pt").exists()
    rep = project / "data/08_reporting/digits/contrastive_c1/seed0"
    metrics = json.loads((rep / "metrics.json").read_text())
    assert 0 < metrics["recall@1"] <= 1
    history = (
        project / "data/07_model_output/digits/contrastive_c1/seed0"
        "/training_history.csv"
    ).read_text()
    assert len(history.splitlines()) == 2  # header + one epoch
