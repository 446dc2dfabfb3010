"""The ``report`` pipeline through Kedro on fabricated runs of the embedded
``digits`` dataset (real ingestion and image cache, no training): the runs
table, the figures, the combined table with seed statistics, and the paper
tables with a dash and the command where the benchmark data is absent."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dml_pipelines.core.evaluation.embeddings import EmbeddingSet, save_embeddings
from tests.pipelines.conftest import run

METHOD = "contrastive_c1"


def _fabricate_runs(project, seeds=(0, 1, 2)):
    data = project / "data"
    table = pd.read_parquet(data / "02_intermediate/digits/index_table.parquet")
    test = table[table["split"] == "test"]
    labels = test["label"].to_numpy()
    rng = np.random.default_rng(0)
    for seed in seeds:
        out = data / f"07_model_output/digits/{METHOD}/seed{seed}"
        rep = data / f"08_reporting/digits/{METHOD}/seed{seed}"
        out.mkdir(parents=True)
        rep.mkdir(parents=True)
        # class centres + noise: mostly correct neighbours, some wrong
        centres = rng.normal(size=(10, 16))
        x = centres[labels] + rng.normal(0, 0.9, (len(labels), 16))
        es = EmbeddingSet(
            embeddings=x.astype(np.float32),
            labels=labels.astype(np.int64),
            index=test.index.to_numpy(np.int64),
            normalization="l2",
        )
        save_embeddings(out / "test_embeddings.npz", es)
        pd.DataFrame({"epoch": [1, 2], "loss": [2.0 - seed / 10, 1.0]}).to_csv(
            out / "training_history.csv", index=False
        )
        metrics = {
            "dataset": "digits",
            "method": METHOD,
            "protocol": "conventional",
            "seed": seed,
            "fold": None,
            "recall@1": 0.80 + seed / 100,
            "recall@2": 0.9,
            "map@r": 0.5,
        }
        card = {
            "dataset": "digits",
            "method": METHOD,
            "fold": None,
            "backbone": "small_cnn",
            "embedding_dim": 16,
            "epochs": 2,
            "checkpoint_selection": "last",
            "seed": seed,
        }
        (rep / "metrics.json").write_text(json.dumps(metrics))
        (rep / "protocol_card.json").write_text(json.dumps(card))


@pytest.mark.slow
def test_report_pipeline_on_fabricated_digits_runs(project):
    run(project, "data", {"dataset": "digits"})
    _fabricate_runs(project, seeds=(0, 1, 2, 7))  # seed 7: a run made by hand
    (project / "conf/grid.yaml").write_text(
        "datasets: [digits]\nmethods: [contrastive_c1, intra_batch]\nseeds: [0, 1, 2]\n"
    )
    run(project, "report", {"dataset": "digits"})
    rep = project / "data/08_reporting/report"
    runs = pd.read_csv(rep / "datasets/digits/runs.csv")
    assert runs["seed"].tolist() == [0, 1, 2, 7]  # listed; not in the figures
    assert set(runs["backbone"]) == {"small_cnn"}

    combined = (rep / "combined.md").read_text()
    # mean ± std [95% CI] over the three seeds (percent)
    assert (
        "| contrastive_c1 | 3 | small_cnn | 16 | 2 | last | 81.00 ± 1.00 [78.52, 83.48]"
        in (combined)
    )
    assert "| intra_batch | 0 |" in combined
    assert "`dvc repro --glob 'run@intra_batch-digits-*'" in combined
    summary = json.loads((rep / "summary.json").read_text())
    assert summary["digits"][METHOD]["recall@1"]["n"] == 3

    papers = (rep / "paper_tables.md").read_text()
    assert (
        "## Generalized Sum Pooling (ICCV 2023): Main results\n\n**not available**"
        in (papers)
    )
    assert (
        "— `for S in 0 1 2; do kedro run --pipelines=intra_batch --params "
        "dataset=cub200,run.seed=$S; done`"
    ) in papers
    rows = pd.read_csv(rep / "paper_tables.csv")
    assert "matched" not in set(rows["status"])

    figures = rep / "datasets/digits"
    for name in ("recall_at_k.png", "training_curves.png", "projection.png"):
        assert 300 < Image.open(figures / name).size[0] <= 2000, name
    sheet = np.asarray(Image.open(figures / f"retrieval/{METHOD}.png").convert("RGB"))
    green = (np.abs(sheet.astype(int) - [0x1A, 0x98, 0x50]).sum(-1) < 30).sum()
    assert green > 500  # frames of correct neighbours are drawn
