"""The ``intra_batch`` pipeline through Kedro on a tiny digits subset."""

import json

from tests.pipelines.conftest import run


def test_intra_batch_pipeline_runs_with_an_lr_drop(project):
    params = {
        "dataset": "digits",
        "intra_batch": {
            "training": {"epochs": 2},
            "sampler": {"batches_per_epoch": 3},
            "lr_drops": [{"epoch": 2, "factor": 0.1}],
        },
    }
    run(project, "intra_batch", params)
    out = project / "data"
    metrics = json.loads(
        (out / "08_reporting/digits/intra_batch/seed0/metrics.json").read_text()
    )
    assert metrics["method"] == "intra_batch" and 0 < metrics["recall@1"] <= 1
    card = json.loads(
        (out / "08_reporting/digits/intra_batch/seed0/protocol_card.json").read_text()
    )
    assert card["batch"] == "5 classes x 12 samples" and metrics["recipe"] == "digits"
    history = out / "07_model_output/digits/intra_batch/seed0/training_history.csv"
    rows = [r.split(",") for r in history.read_text().splitlines()[1:]]
    assert [float(r[2]) for r in rows] == [1e-3, 1e-4]
