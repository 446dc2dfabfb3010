"""Resume continues an interrupted run and nothing else (through Kedro): other
data under the same dataset name, or another epoch budget, trains afresh; a run
killed in its second epoch resumes and ends where an uninterrupted run ends."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dml_pipelines.core.engine.trainer import Trainer, load_checkpoint
from tests.pipelines.conftest import run

# constant lr: the first epochs of a 3- and a 2-epoch run are then the same
# (a schedule over the budget, like the default cosine, would differ)
# and one compute thread: the automatic thread count follows the machine's load
# at start, and another count sums floats in another order (a 1e-7 difference)
CONSTANT = {"scheduler": None, "num_threads": 1}
BLOCK = {"sampler": {"P": 4, "K": 3}, "training": {"epochs": 3, **CONSTANT}}


def _csv_dataset(root, seed):
    rng = np.random.default_rng(seed)
    rows = ["path,label,split"]
    for c in range(8):
        colour = rng.integers(0, 256, 3)
        for i in range(6):
            img = np.clip(colour + rng.normal(0, 90, (16, 16, 3)), 0, 255)
            rel = f"img/{c}/{i}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.astype("uint8")).save(root / rel)
            rows.append(f"{rel},c{c},{'train' if c < 4 else 'test'}")
    (root / "index.csv").write_text("\n".join(rows) + "\n")


def _params(root, **block):
    return {
        "dataset": "csv",
        "datasets": {"csv": {"root": str(root), "expected_counts": None}},
        "contrastive_c1": {**BLOCK, **block},
    }


def _out(project, kind):
    base = {"metrics": "08_reporting", "history": "07_model_output"}[kind]
    name = {"metrics": "metrics.json", "history": "training_history.csv"}[kind]
    return project / "data" / base / "csv/contrastive_c1/seed0" / name


@pytest.mark.slow
def test_other_data_under_the_same_name_trains_from_scratch(project, caplog):
    first, second = project / "raw_a", project / "raw_b"
    _csv_dataset(first, 0)
    _csv_dataset(second, 1)
    run(project, "contrastive_c1", _params(first))
    m1 = json.loads(_out(project, "metrics").read_text())
    with caplog.at_level("WARNING"):
        run(project, "contrastive_c1", _params(second))
    assert "training from scratch" in caplog.text
    history = pd.read_csv(_out(project, "history"))
    assert history["epoch"].tolist() == [1, 2, 3]  # trained, not resumed
    m2 = json.loads(_out(project, "metrics").read_text())
    assert m2["map@r"] != m1["map@r"]
    card = json.loads(
        _out(project, "metrics").with_name("protocol_card.json").read_text()
    )
    assert card["data_root"] == str(second) and len(card["data_fingerprint"]) == 16


@pytest.mark.slow
def test_a_shorter_budget_after_a_finished_run_is_a_fresh_model(project):
    root = project / "raw"
    _csv_dataset(root, 0)
    run(project, "contrastive_c1", _params(root))
    h3 = pd.read_csv(_out(project, "history"))
    run(project, "contrastive_c1", _params(root, training={"epochs": 2, **CONSTANT}))
    h2 = pd.read_csv(_out(project, "history"))
    assert h2["epoch"].tolist() == [1, 2]
    assert h2["loss"].tolist() == h3["loss"].tolist()[:2]  # the same fresh start
    state = load_checkpoint(
        project / "data/06_models/csv/contrastive_c1/seed0/model_state.pt"
    )
    assert state["epoch"] == 2


@pytest.mark.slow
def test_a_run_killed_in_epoch_two_resumes_to_the_uninterrupted_result(
    project, tmp_path, monkeypatch
):
    root = project / "raw"
    _csv_dataset(root, 0)
    real = Trainer._train_epoch

    class Killed(Exception):
        """Stands for the kill (a KeyboardInterrupt would stop pytest too)."""

    def killed(self, epoch):
        if epoch == 1:
            raise Killed
        return real(self, epoch)

    monkeypatch.setattr(Trainer, "_train_epoch", killed)
    with pytest.raises(Killed):
        run(project, "contrastive_c1", _params(root))
    ckpt = project / "data/06_models/csv/contrastive_c1/seed0/checkpoints/last.pt"
    assert load_checkpoint(ckpt)["epoch"] == 1
    monkeypatch.setattr(Trainer, "_train_epoch", real)
    run(project, "contrastive_c1", _params(root))
    resumed = json.loads(_out(project, "metrics").read_text())
    history = pd.read_csv(_out(project, "history"))
    assert history["epoch"].tolist() == [1, 2, 3]

    ckpt.unlink()  # the same run uninterrupted
    run(project, "contrastive_c1", _params(root))
    fresh = json.loads(_out(project, "metrics").read_text())
    for key in ("recall@1", "map@r", "r_precision"):
        assert resumed[key] == fresh[key], key
