"""The method template through Kedro on a tiny subset, and the before-any-work
errors (issue: unknown dataset, unknown method, missing root, invalid value)."""

import json
import subprocess
import sys

import pytest

from tests.pipelines.conftest import run

TINY = {
    "dataset": "digits",
    "contrastive_c1": {"training": {"epochs": 2}, "sampler": {"batches_per_epoch": 3}},
}


def test_method_pipeline_runs_end_to_end_on_a_tiny_subset(project):
    run(project, "contrastive_c1", TINY)
    out = project / "data"
    metrics = json.loads(
        (out / "08_reporting/digits/contrastive_c1/seed0/metrics.json").read_text()
    )
    for key in (
        "recall@1",
        "recall@8",
        "precision@1",
        "r_precision",
        "map@r",
        "nmi",
        "f1",
        "num_lone_queries",
        "dataset",
        "method",
        "protocol",
        "checkpoint_selection",
    ):
        assert key in metrics, key
    assert metrics["dataset"] == "digits" and metrics["method"] == "contrastive_c1"
    assert metrics["num_queries"] == 896
    assert 0 < metrics["untrained"]["recall@1"] <= 1
    assert metrics["map@r"] <= metrics["r_precision"]
    card = json.loads(
        (
            out / "08_reporting/digits/contrastive_c1/seed0/protocol_card.json"
        ).read_text()
    )
    assert metrics["recipe"] == "digits" and card["recipe"] == "digits"
    assert card["batch"] == "5 classes x 12 samples"  # the digits recipe
    assert card["backbone"] == "small_cnn" and card["selected_on"] == "last epoch"
    assert "cache_resize_shorter" in card
    assert (
        card["config"]["method"] == "contrastive_c1" and len(card["params_hash"]) == 12
    )
    assert card["device"] == "cpu" and card["wall_time_s"] > 0
    assert card["git_commit"] and card["epochs_trained"] == 2
    assert card["label_noise"] == 0.0 and len(card["data_fingerprint"]) == 16
    history = (
        out / "07_model_output/digits/contrastive_c1/seed0/training_history.csv"
    ).read_text()
    assert history.splitlines()[0].startswith("epoch,loss")
    assert len(history.splitlines()) == 3
    assert (out / "06_models/digits/contrastive_c1/seed0/checkpoints/last.pt").exists()
    augmentation = json.loads(
        (
            out / "05_model_input/digits/contrastive_c1/seed0/augmentation.json"
        ).read_text()
    )
    assert augmentation["preset"] == "small" and augmentation["seed"] == 0
    per_class = (
        out / "08_reporting/digits/contrastive_c1/seed0/per_class.csv"
    ).read_text()
    assert per_class.splitlines()[0] == "label,num_queries,recall@1,r_precision,map@r"


def test_evaluation_tag_rescores_without_retraining(project):
    run(project, "contrastive_c1", TINY)
    state = project / "data/06_models/digits/contrastive_c1/seed0/model_state.pt"
    mtime = state.stat().st_mtime_ns
    metrics = project / "data/08_reporting/digits/contrastive_c1/seed0/metrics.json"
    metrics.unlink()
    run(
        project,
        "contrastive_c1",
        {**TINY, "evaluation": {"lone_queries": "miss"}},
        tags=["evaluation"],
    )
    assert metrics.exists() and state.stat().st_mtime_ns == mtime


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dataset": "nope"}, "dataset 'nope' is unknown"),
        (
            {"dataset": "cub200"},
            "data root data/01_raw/cub200/CUB_200_2011 for dataset",
        ),
        ({"contrastive_c1": {"sampler": {"P": 0}}}, "contrastive_c1.sampler.P"),
        ({"contrastive_c1": {"lossy": 1}}, "contrastive_c1.lossy: unknown key"),
        (
            {"contrastive_c1": {"loss": {"name": "foo"}}},
            "loss.name: unknown loss 'foo'",
        ),
        (
            {"contrastive_c1": {"training": {"device": "tpu"}}},
            "contrastive_c1.training.device",
        ),
    ],
)
def test_bad_parameters_fail_before_any_work(project, params, message):
    with pytest.raises(Exception, match=message) as info:
        run(project, "contrastive_c1", params)
    # the key and the problem stand together on one line
    assert any(message in line for line in str(info.value).splitlines())
    assert not (project / "data").exists()  # nothing ran


def test_unknown_method_pipeline_is_one_line_error(project):
    proc = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipelines=nomethod"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: unknown pipeline 'nomethod'; valid: ")
    assert "contrastive_c1" in last
    assert not (project / "data").exists()


def test_cli_params_select_dataset(project):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--pipelines=data",
            "--params",
            "dataset=digits",
        ],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (project / "data/02_intermediate/digits/index_table.parquet").exists()


def test_same_seed_twice_gives_identical_metrics(
    project, tmp_path_factory, monkeypatch
):
    import shutil

    run(project, "contrastive_c1", TINY)
    first = (
        project / "data/08_reporting/digits/contrastive_c1/seed0/metrics.json"
    ).read_text()
    other = tmp_path_factory.mktemp("again")
    for name in ("conf", "pyproject.toml", ".telemetry", "src"):
        src = project / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, other / name)
    monkeypatch.chdir(other)
    run(other, "contrastive_c1", TINY)
    second = (
        other / "data/08_reporting/digits/contrastive_c1/seed0/metrics.json"
    ).read_text()
    assert first == second
    assert json.loads(first)["recall@1"] > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("contrastive_c1.sampler.P=0", "contrastive_c1.sampler.P: Input should be"),
        ("dataset=cub200", "data root data/01_raw/cub200/CUB_200_2011 for dataset"),
        # the evaluation block: one schema with evaluate() (core/evaluation/
        # options.py), checked before training, not after it
        ("evaluation.knn_bakend=torch", "evaluation.knn_bakend: unknown key"),
        ("evaluation.seed=-1", "evaluation.seed: Input should be greater than or"),
    ],
)
def test_cli_reports_bad_input_in_one_line_without_traceback(project, params, message):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--pipelines=contrastive_c1",
            "--params",
            params,
        ],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and message in last
    assert not (project / "data").exists()


def test_validation_selection_holds_out_fold_block_3(project):
    params = {
        "dataset": "digits",
        "contrastive_c1": {
            "training": {"epochs": 2, "checkpoint_selection": "validation"},
            "sampler": {"batches_per_epoch": 3},
            "recipes": {"digits": {"sampler": {"P": 3, "K": 12}}},  # 3 classes left
        },
    }
    run(project, "contrastive_c1", params)
    out = project / "data"
    history = (
        out / "07_model_output/digits/contrastive_c1/seed0/training_history.csv"
    ).read_text()
    header = history.splitlines()[0].split(",")
    assert {"val/recall@1", "val/map@r", "val/r_precision"} <= set(header)
    metrics = json.loads(
        (out / "08_reporting/digits/contrastive_c1/seed0/metrics.json").read_text()
    )
    assert metrics["checkpoint_selection"] == "validation"
    card = json.loads(
        (
            out / "08_reporting/digits/contrastive_c1/seed0/protocol_card.json"
        ).read_text()
    )
    assert card["selected_on"] == "held-out training classes (fold_block 3)"
    assert (out / "06_models/digits/contrastive_c1/seed0/checkpoints/best.pt").exists()
