"""Progress bars (core/engine/progress.py): one bar per training epoch with the
running loss and images/s, one bar for the embedding pass; drawn on a terminal
only, never under ``CI``, ``DML_QUIET=1`` or on a rank other than 0, forced on by
``DML_PROGRESS=1``; and they never change a result."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dml_pipelines.core.engine import trainer as trainer_module
from dml_pipelines.core.engine.distributed import Dist
from dml_pipelines.core.engine.progress import Progress, progress_enabled
from dml_pipelines.core.methods.registry import build_method

from .conftest import (
    make_cfg,
    make_trainer,
    same_weights,
    weights,
)

ENV = ("DML_QUIET", "DML_PROGRESS", "CI")


class Tty(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_bars_are_drawn_on_a_terminal_only_and_the_switches_win(monkeypatch):
    assert progress_enabled(Tty())
    assert not progress_enabled(io.StringIO())  # a file or a pipe
    assert not progress_enabled(Tty(), main=False)  # rank != 0
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled(Tty())
    monkeypatch.setenv("CI", "false")
    assert progress_enabled(Tty())
    monkeypatch.setenv("DML_PROGRESS", "1")
    assert progress_enabled(io.StringIO())  # forced on
    monkeypatch.setenv("CI", "1")
    assert progress_enabled(io.StringIO())  # forced on beats CI
    assert not progress_enabled(io.StringIO(), main=False)  # never on rank != 0
    monkeypatch.setenv("DML_QUIET", "1")
    assert not progress_enabled(Tty())  # quiet beats everything


def test_a_bar_off_writes_nothing_and_a_bar_on_shows_loss_and_images_per_second():
    off = io.StringIO()
    with Progress(3, "epoch 1/1", "step", file=off) as bar:
        for _ in range(3):
            bar.update(images=8, loss=0.5)
    assert off.getvalue() == ""
    on = Tty()
    with Progress(3, "epoch 1/1", "step", file=on) as bar:
        for loss in (1.0, 2.0, 3.0):
            bar.update(images=8, loss=loss)
    text = on.getvalue()
    assert "epoch 1/1" in text and "3/3" in text
    assert "loss=2.0000" in text and "img/s=" in text  # running mean of the loss
    rank1 = Tty()
    with Progress(3, "epoch 1/1", "step", file=rank1, main=False) as bar:
        bar.update(images=8, loss=0.5)
    assert rank1.getvalue() == ""


def _fit(epochs=2):
    cfg = make_cfg(training={"epochs": epochs})
    trainer = make_trainer(cfg)
    trainer.fit()
    return trainer


def test_forced_bar_shows_each_epoch_with_images_per_second(monkeypatch, capsys):
    monkeypatch.setenv("DML_PROGRESS", "1")
    trainer = _fit()
    err = capsys.readouterr().err
    steps = len(trainer.loader)
    for epoch in (1, 2):
        assert f"epoch {epoch}/2" in err
    assert f"{steps}/{steps}" in err
    assert "img/s=" in err and "loss=" in err


def test_no_bar_by_default_when_stderr_is_not_a_terminal(capsys):
    _fit()
    assert "epoch 1/2" not in capsys.readouterr().err


def test_the_bar_changes_no_result(monkeypatch, capsys):
    quiet = _fit()
    monkeypatch.setenv("DML_PROGRESS", "1")
    shown = _fit()
    assert "img/s=" in capsys.readouterr().err
    assert same_weights(weights(quiet.method), weights(shown.method))
    assert [r["loss"] for r in quiet.history] == [r["loss"] for r in shown.history]


def test_only_rank_0_draws_the_training_bar(monkeypatch, capsys):
    monkeypatch.setenv("DML_PROGRESS", "1")
    # a rank-1 trainer, with the collectives made local (no process group here)
    monkeypatch.setattr(Dist, "average_gradients", lambda self, params: None)
    monkeypatch.setattr(Dist, "all_gather", lambda self, x: x)
    monkeypatch.setattr(trainer_module, "current", lambda: Dist(1, 2))
    trainer = _fit(epochs=1)
    assert trainer.dist == Dist(1, 2)
    assert "epoch 1/1" not in capsys.readouterr().err


def test_embedding_pass_has_one_bar_in_images(tmp_path, monkeypatch, capsys):
    from dml_pipelines.core.data.cache import build_cache
    from dml_pipelines.core.engine.embed import embed_rows

    rng = np.random.default_rng(0)
    paths = []
    for i in range(10):
        arr = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
        paths.append(f"{i}.png")
    table = pd.DataFrame({"path": paths, "label": np.arange(10) // 2, "split": "test"})
    cache = build_cache(table, tmp_path, tmp_path / "cache")
    cfg = make_cfg(training={"eval_batch_size": 4})
    method = build_method(cfg, 5)
    rows = table.index.to_numpy()
    quiet = embed_rows(method, cache, rows, cfg)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("DML_PROGRESS", "1")
    shown = embed_rows(method, cache, rows, cfg, desc="embed test")
    err = capsys.readouterr().err
    assert "embed test" in err and "10/10" in err and "img" in err
    np.testing.assert_array_equal(quiet, shown)
