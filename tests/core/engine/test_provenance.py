"""A run's identity (docs/protocols.md, "What identifies a run") through the
real trainer: code, config and data changes re-train and keep the replaced run;
threads and workers do not; a non-finite step never reaches a checkpoint."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from dml_pipelines.core.engine.callbacks import Callback
from dml_pipelines.core.engine.trainer import load_checkpoint, save_atomic
from dml_pipelines.core.evaluation.embeddings import load_embeddings
from dml_pipelines.core.identity import run_identity
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.provenance import code_digest, training_sources

from .conftest import make_cfg, make_trainer, same_weights, weights

SRC = Path(__file__).resolve().parents[3] / "src" / "dml_pipelines"


def _trainer(cfg, ckpt, callbacks=None, run_files=None):
    return make_trainer(cfg, ckpt, callbacks=callbacks, run_files=run_files)


def test_code_digest_covers_the_losses_training_imports_and_not_the_report(tmp_path):
    copy = tmp_path / "dml_pipelines"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__"))
    files = {str(p.relative_to(copy)) for p in training_sources(copy)}
    # the entry point, every loss and method (registry-discovered), the trainer
    assert {"core/engine/run.py", "core/engine/trainer.py"} <= files
    assert "core/losses/contrastive_c1.py" in files
    assert "core/methods/ccp.py" in files and "core/models/embedder.py" in files
    assert "core/reporting/plots.py" not in files
    before = code_digest(copy)
    assert before == code_digest(copy) and len(before) == 16
    plots = copy / "core/reporting/plots.py"
    plots.write_text(plots.read_text() + "\n# a report change\n")
    from dml_pipelines.core import provenance

    provenance._digest.cache_clear()
    assert code_digest(copy) == before  # the report is not training code
    loss = copy / "core/losses/contrastive_c1.py"
    loss.write_text(
        loss.read_text().replace("margin: float = 0.5", "margin: float = 0.4")
    )
    provenance._digest.cache_clear()
    assert code_digest(copy) != before


RETRAIN = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, {tests!r})
    from core.engine.conftest import make_cfg, make_trainer
    cfg = make_cfg(training={{"epochs": 2}})
    t = make_trainer(cfg, {ckpt!r})
    h = t.fit()
    print("EPOCHS", h["epoch"].tolist(), "RESUMED", t.resumed)
    """
)


def _train_in(src: Path, ckpt: Path, tests: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
    script = RETRAIN.format(tests=str(tests), ckpt=str(ckpt))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_a_changed_loss_retrains_instead_of_resuming_the_old_model(tmp_path):
    """Issue: after a loss changed, training resumed the old model's last.pt."""
    src = tmp_path / "src"
    shutil.copytree(
        SRC, src / "dml_pipelines", ignore=shutil.ignore_patterns("__pycache__")
    )
    tests = Path(__file__).resolve().parents[2]
    ckpt = tmp_path / "ckpt"
    out = _train_in(src, ckpt, tests)
    assert "EPOCHS [1, 2] RESUMED False" in out
    out = _train_in(src, ckpt, tests)  # same code: resumes the finished run
    assert "EPOCHS [1, 2] RESUMED True" in out
    loss = src / "dml_pipelines/core/losses/contrastive_c1.py"
    loss.write_text(
        loss.read_text().replace("margin: float = 0.5", "margin: float = 0.4")
    )
    out = _train_in(src, ckpt, tests)
    assert "EPOCHS [1, 2] RESUMED False" in out
    assert "other parameters, data or code" in out


def test_a_replaced_run_is_kept_aside_and_the_warning_says_where(tmp_path, caplog):
    ckpt = tmp_path / "seed0" / "checkpoints"
    state_file = tmp_path / "seed0" / "model_state.pt"
    first = _trainer(make_cfg(training={"epochs": 1}), ckpt, run_files=[state_file])
    first.fit()
    save_atomic({"model": first.method.export_state_dict()}, state_file)
    old_key = first.fingerprint
    with caplog.at_level("WARNING"):
        second = _trainer(
            make_cfg(training={"epochs": 1}, optimizer={"lr": 0.01}),
            ckpt,
            run_files=[state_file],
        )
        second.fit()
    aside = tmp_path / "seed0" / "superseded" / old_key
    assert str(aside) in caplog.text
    kept = load_checkpoint(aside / "last.pt")
    assert kept["fingerprint"] == old_key and kept["epoch"] == 1
    assert (aside / "model_state.pt").exists() and not state_file.exists()
    assert load_checkpoint(ckpt / "last.pt")["fingerprint"] == second.fingerprint


def test_threads_and_workers_are_not_part_of_the_identity(tmp_path):
    ckpt = tmp_path / "checkpoints"
    cfg = make_cfg(training={"epochs": 2})
    _trainer(cfg, ckpt).fit()
    other = make_cfg(training={"epochs": 2, "num_threads": 1, "num_workers": 0})
    assert run_identity(other.model_dump(mode="json")) == run_identity(
        cfg.model_dump(mode="json")
    )
    again = _trainer(other, ckpt)
    history = again.fit()
    assert again.resumed and history["epoch"].tolist() == [1, 2]
    assert not (tmp_path / "superseded").exists()


class PoisonLastStep(Callback):
    """Makes the weights non-finite on the last step of epoch ``at``."""

    def __init__(self, at):
        self.at, self.epoch = at, None

    def on_train_epoch_start(self, trainer, epoch):
        self.epoch = epoch

    def on_train_batch_end(self, trainer, outputs):
        last = outputs.step + 1 == len(trainer.loader)
        if self.epoch == self.at and last:
            with torch.no_grad():
                next(trainer.method.parameters()).fill_(float("nan"))


def test_a_non_finite_epoch_end_is_never_checkpointed_and_a_rerun_resumes(tmp_path):
    """Issue: a NaN on an epoch's last step saved last.pt with NaN weights."""
    cfg = make_cfg(training={"epochs": 3})
    with pytest.raises(FloatingPointError) as err:
        _trainer(cfg, tmp_path, callbacks=[PoisonLastStep(at=1)]).fit()
    msg = str(err.value)
    assert "after epoch 2" in msg and "(after epoch 1)" in msg and "\n" not in msg
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    assert all(
        v.isfinite().all() for v in state["model"].values() if v.is_floating_point()
    )
    reference = _trainer(cfg, None)
    reference.fit()
    rerun = _trainer(cfg, tmp_path)
    history = rerun.fit()
    assert rerun.resumed and history["epoch"].tolist() == [1, 2, 3]
    assert same_weights(weights(rerun.method), weights(reference.method))


def test_a_last_pt_that_is_not_a_checkpoint_is_one_line(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "last.pt")
    with pytest.raises(ValueError) as err:
        _trainer(make_cfg(), tmp_path).fit()
    assert "is not a training checkpoint" in str(err.value)
    assert str(tmp_path / "last.pt") in str(err.value)


def test_truncated_state_and_embeddings_files_are_one_line(tmp_path):
    path = tmp_path / "model_state.pt"
    save_atomic({"model": {"w": torch.ones(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    npz = tmp_path / "test_embeddings.npz"
    np.savez(npz, embeddings=np.ones((50, 4), np.float32), labels=np.arange(50))
    npz.write_bytes(npz.read_bytes()[:200])
    with pytest.raises(ValueError) as err:
        load_embeddings(npz)
    assert str(npz) in str(err.value) and "not a readable embeddings" in str(err.value)


BASE = {
    "method": "contrastive_c1",
    "loss": {"name": "contrastive_c1"},
    "backbone": {"name": "small_cnn"},
}


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"loss": {"name": "contrastive_c1", "args": {"margin": "abc"}}},
            "loss.args.margin: must be a finite number (got 'abc')",
        ),
        (
            {"optimizer": {"args": {"betaz": 1}}},
            "optimizer.args: unknown argument(s) ['betaz']",
        ),
        (
            {"loss": {"name": "contrastive_c1", "args": {"bogus": 1}}},
            "loss.args: unknown argument(s) ['bogus']",
        ),
        # a scheduler swapped in keeping the old scheduler's arguments
        (
            {"training": {"scheduler": {"name": "step", "args": {"min_factor": 0}}}},
            "training.scheduler.args: unknown argument(s) ['min_factor']",
        ),
        (
            {"training": {"scheduler": {"name": "step"}}},
            "training.scheduler.args: missing argument(s) ['step_size']",
        ),
        ({"optimizer": {"lr": float("inf")}}, "optimizer.lr: Input should be a finite"),
        ({"sampler": {"K": 1}}, "sampler.K: 1 gives no positive pairs"),
        (
            {"embedding_dim": 10**12},
            "embedding_dim: Input should be less than or equal",
        ),
    ],
)
def test_bad_component_arguments_fail_at_config_time_in_one_line(over, message):
    with pytest.raises(ValueError) as err:
        parse_method_config({**BASE, **over})
    assert message in str(err.value) and "\n" not in str(err.value)
