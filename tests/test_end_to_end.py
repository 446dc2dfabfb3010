"""Slow end-to-end runs (CI runs them): the glyphs learning bar and the DVC DAG."""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
BIN = Path(sys.executable).parent


def sh(args, cwd, check=True):
    proc = subprocess.run(
        args,
        cwd=cwd,
        env={**ENV, "PATH": f"{BIN}:{ENV['PATH']}"},
        capture_output=True,
        text=True,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.mark.slow
def test_contrastive_c1_learns_on_glyphs(project):
    """Issue acceptance: small CNN, 64-d, 16 × 4, 20 epochs: test Recall@1 at
    least 30 points above the untrained network's, recorded beside it."""
    sh([sys.executable, "-m", "kedro", "run", "--pipelines=contrastive_c1"], project)
    m = json.loads(
        (
            project / "data/08_reporting/glyphs/contrastive_c1/seed0/metrics.json"
        ).read_text()
    )
    assert m["dataset"] == "glyphs" and m["num_queries"] == 2400
    assert m["recall@1"] >= m["untrained"]["recall@1"] + 0.30, m
    assert m["map@r"] > m["untrained"]["map@r"] + 0.2, m
    assert m["map@r"] < 0.95  # not saturated


def make_dvc_repo(tmp_path, grid):
    """A git + DVC copy of the project with the given grid and a one-epoch budget."""
    for name in (
        "conf",
        "dvc.yaml",
        "pyproject.toml",
        ".telemetry",
        ".dvcignore",
        ".gitignore",
    ):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    shutil.copytree(
        ROOT / ".dvc", tmp_path / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache")
    )
    # dvc.yaml deps name the source folders (the installed package is what runs)
    shutil.copytree(
        ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__")
    )
    grid = {"seeds": [0], "mlrc_methods": [], **grid}
    (tmp_path / "conf/grid.yaml").write_text(yaml.safe_dump(grid))
    params = tmp_path / "conf/base/parameters_contrastive_c1.yml"
    params.write_text(params.read_text().replace("epochs: 20", "epochs: 1"))
    sh(["git", "init", "-q"], tmp_path)
    sh(["git", "add", "-A"], tmp_path)
    sh(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
        tmp_path,
    )
    return tmp_path


@pytest.fixture
def dvc_repo(tmp_path):
    """The digits smoke test as the whole grid."""
    grid = {
        "embedded_datasets": ["digits"],
        "external_datasets": [],
        "datasets": ["digits"],
        "methods": ["contrastive_c1"],
    }
    return make_dvc_repo(tmp_path, grid)


@pytest.mark.slow
def test_dvc_repro_caches_and_reruns_only_what_changed(dvc_repo):
    first = sh(["dvc", "repro"], dvc_repo)
    out = first.stdout
    assert "epoch 1:" in first.stdout + first.stderr  # (the log line checked below)
    for stage in (
        "data@digits",
        "run@contrastive_c1-digits-0",
    ):
        assert f"Running stage '{stage}'" in out, out
    metrics = sh(["dvc", "metrics", "show", "--json"], dvc_repo).stdout
    assert "recall@1" in metrics and "map@r" in metrics

    start = time.perf_counter()
    again = sh(["dvc", "repro"], dvc_repo).stdout
    elapsed = time.perf_counter() - start
    # only the root-params.yaml check runs again (always_changed, < 1 s)
    ran = re.findall(r"Running stage '([^']+)'", again)
    assert ran == ["params_guard"] and "didn't change" in again, again
    assert elapsed <= 5.0, f"second dvc repro took {elapsed:.1f} s"

    # a metric option change re-runs the run stage, which resumes the finished
    # checkpoint (no epoch trained again: same weights) and re-scores it
    model = dvc_repo / "data/06_models/digits/contrastive_c1/seed0/model_state.pt"
    before = model.read_bytes()
    params = dvc_repo / "conf/base/parameters.yml"
    params.write_text(
        params.read_text().replace("lone_queries: drop", "lone_queries: miss")
    )
    res = sh(["dvc", "repro"], dvc_repo)
    out = res.stdout + res.stderr
    assert "Running stage 'run@contrastive_c1-digits-0'" in out
    assert "Running stage 'data@" not in out
    assert "resumed from" in out and "epoch 1:" not in out, out
    import torch

    old = torch.load(io.BytesIO(before), weights_only=True)
    new = torch.load(model, weights_only=True)
    assert old["wall_time_s"] == new["wall_time_s"] > 0
    for key, value in old["model"].items():
        assert torch.equal(value, new["model"][key]), key

    # an experiment on one method's parameter re-runs that method, not the data
    out = sh(
        [
            "dvc",
            "exp",
            "run",
            "-S",
            "conf/base/parameters_contrastive_c1.yml:contrastive_c1.optimizer.lr=0.0005",
        ],
        dvc_repo,
    ).stdout
    assert "Running stage 'run@contrastive_c1-digits-0'" in out
    assert "Running stage 'data@" not in out
    # every plot is an image (vega plots would load their scripts from a CDN)
    shown = json.loads(sh(["dvc", "plots", "show", "--json"], dvc_repo).stdout)
    plots = shown["data"]
    assert any(k.endswith("training_curves.png") for k in plots), plots
    assert {p["type"] for v in plots.values() for p in v} == {"image"}, plots


@pytest.mark.slow
def test_a_csv_dataset_runs_through_dvc_like_the_embedded_ones(tmp_path):
    """Issue 3: a user's dataset brought through the generic CSV contract."""
    import numpy as np
    from PIL import Image

    grid = {
        "embedded_datasets": [],
        "external_datasets": ["csv"],
        "datasets": ["csv"],
        "methods": ["contrastive_c1"],
    }
    repo = make_dvc_repo(tmp_path, grid)
    root = repo / "data/01_raw/csv"
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for c in range(12):
        colour = rng.integers(0, 256, 3)
        for i in range(6):
            img = np.clip(colour + rng.normal(0, 20, (16, 16, 3)), 0, 255).astype(
                "uint8"
            )
            rel = f"img/{c}/{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / rel)
            rows.append(f"{rel},class_{c:02d},{'train' if c < 6 else 'test'}")
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    params = repo / "conf/base/parameters_contrastive_c1.yml"
    params.write_text(params.read_text().replace("{P: 16, K: 4", "{P: 4, K: 3"))
    out = sh(["dvc", "repro"], repo).stdout
    assert "Running stage 'data_external@csv'" in out
    assert "Running stage 'run@contrastive_c1-csv-0'" in out
    m = json.loads(
        (repo / "data/08_reporting/csv/contrastive_c1/seed0/metrics.json").read_text()
    )
    assert m["dataset"] == "csv" and m["num_queries"] == 36
    assert "didn't change" in sh(["dvc", "repro"], repo).stdout


@pytest.mark.slow
def test_kedro_viz_builds_the_pipeline_graph(project):
    sh([sys.executable, "-m", "kedro", "viz", "build"], project)
    api = project / "build" / "api" / "pipelines"
    assert (api / "contrastive_c1").exists() and (api / "data").exists()
    graph = json.loads((api / "contrastive_c1").read_text())
    names = {n["name"] for n in graph["nodes"]}
    assert {"train_method", "extract_embeddings", "report_metrics"} <= {
        n.split(".")[-1] for n in names
    }
