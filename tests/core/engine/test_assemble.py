"""The assembly seam (docs/architecture.md "The assembly seam"): ``build_run``
builds everything from the resolved config once, ``Trainer(run)`` reads no
configuration, and ``train_model`` still resumes an interrupted run and
supersedes one trained with another config."""

from __future__ import annotations

import ast
import dataclasses
import logging
from pathlib import Path

import pydantic
import pytest
import torch

from dml_pipelines.core.data.cache import build_cache
from dml_pipelines.core.engine import trainer as trainer_module
from dml_pipelines.core.engine.assemble import (
    CheckpointPolicy,
    Precision,
    Run,
    Selection,
    assemble_run,
)
from dml_pipelines.core.engine.callbacks import Callback, EarlyStopping
from dml_pipelines.core.engine.checkpoints import load_checkpoint
from dml_pipelines.core.engine.run import train_model
from dml_pipelines.core.engine.trainer import Trainer
from dml_pipelines.core.methods.registry import build_method
from tests.conftest import colour_classes

from .conftest import make_cfg, make_loader, normalize, same_weights, weights


def _config_objects(obj):
    """Every pydantic model reachable from ``obj``'s attributes (one level of
    dataclass fields, lists and dicts)."""
    values = (
        [getattr(obj, f.name) for f in dataclasses.fields(obj)]
        if dataclasses.is_dataclass(obj)
        else list(vars(obj).values())
    )
    out = []
    for v in values:
        items = v if isinstance(v, (list, tuple)) else [v]
        out += [x for x in items if isinstance(x, pydantic.BaseModel)]
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            out += _config_objects(v)
    return out


def test_trainer_fits_a_run_built_by_hand_without_any_config():
    """Every setting reaches the loop through ``Run``: a hand-made optimiser,
    epoch count, seed and selection, no ``MethodConfig`` anywhere."""
    torch.manual_seed(0)
    method = build_method(make_cfg(), 6)  # the network only; the run has no cfg
    optimizer = torch.optim.SGD(
        [{"params": list(method.parameters()), "lr": 0.05}], lr=0.05
    )
    scores = iter([0.2, 0.6])
    run = Run(
        method=method,
        loader=make_loader(0),
        normalize=normalize,
        device=torch.device("cpu"),
        optimizer=optimizer,
        scheduler=None,
        callbacks=[],
        precision=Precision(None, torch.amp.GradScaler("cpu", enabled=False)),
        selection=Selection("val/map@r", "max"),
        checkpoints=CheckpointPolicy(),
        validate=lambda m: {"map@r": next(scores)},
        epochs=2,
        seed=3,
    )
    assert not _config_objects(run)
    trainer = Trainer(run)
    before = weights(method)
    history = trainer.fit()
    assert list(history["epoch"]) == [1, 2] and trainer.best_epoch == 2
    assert list(history["lr"]) == [0.05, 0.05]  # the hand-made optimiser's lr
    assert trainer.global_step == 2 * len(run.loader)
    assert not same_weights(weights(method), before)
    assert not _config_objects(trainer)
    assert not hasattr(trainer, "cfg") and not hasattr(trainer, "tcfg")


def test_trainer_source_names_no_config():
    """``core/engine/trainer.py`` reads no configuration: no ``cfg``/``tcfg``
    name or attribute, no ``training``/``optimizer`` config block, no import
    of ``core.config``."""
    tree = ast.parse(Path(trainer_module.__file__).read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    names |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    assert not names & {"cfg", "tcfg", "training", "model_dump"}
    modules = {
        n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert "dml_pipelines.core.config" not in modules


def test_assemble_run_builds_the_config_driven_parts():
    cfg = make_cfg(
        optimizer={"name": "sgd", "lr": 0.02, "grad_clip_norm": 1.0},
        training={
            "epochs": 4,
            "warmup_epochs": 1,
            "seed": 5,
            "checkpoint_selection": "validation",
            "early_stopping": {"patience": 2},
            "scheduler": {"name": "step", "args": {"step_size": 2}},
        },
    )
    torch.manual_seed(0)
    extra = Callback()
    run = assemble_run(
        cfg,
        build_method(cfg, 6),
        make_loader(0),
        normalize,
        validate=lambda m: {"map@r": 0.5},
        callbacks=[extra],
        data_fingerprint="data",
    )
    assert isinstance(run.optimizer, torch.optim.SGD)
    assert run.optimizer.param_groups[0]["lr"] == 0.02
    assert isinstance(run.scheduler, torch.optim.lr_scheduler.StepLR)
    assert run.selection == Selection("val/map@r", "max")
    names = [type(c).__name__ for c in run.callbacks]
    assert names == ["GradTransforms", "EarlyStopping", "Callback"]
    stopper = run.callbacks[1]
    assert isinstance(stopper, EarlyStopping) and stopper.metric == "val/map@r"
    assert (run.epochs, run.warmup_epochs, run.seed) == (4, 1, 5)
    assert run.precision.amp_dtype is None and not run.precision.scaler.is_enabled()
    assert run.checkpoints.config == cfg.model_dump(mode="json")
    other = assemble_run(
        cfg, build_method(cfg, 6), [], normalize, validate=lambda m: {}
    )
    assert other.checkpoints.key != run.checkpoints.key  # the data fingerprint
    with pytest.raises(ValueError, match="checkpoint_selection.*validation split"):
        assemble_run(cfg, build_method(cfg, 6), [], normalize)


# -- through train_model -------------------------------------------------------


class Crash(Callback):
    """Interrupts the run before its epoch ``at`` (0-based): the checkpoint on
    disk then holds ``at`` epochs."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_epoch_start(self, trainer, epoch):
        if epoch == self.at:
            raise KeyboardInterrupt


def _data(tmp_path):
    root = tmp_path / "raw"
    table = colour_classes(root, (8, 8), per_class=4)
    return table, build_cache(table, root, tmp_path / "cache")


def _cfg(lr=0.01):
    return make_cfg(
        backbone={"args": {"channels": [4, 8]}},
        embedding_dim=4,
        optimizer={"lr": lr},
        sampler={"P": 2, "K": 2, "batches_per_epoch": 2},
        transforms={"preset": "small"},
        training={"epochs": 2, "amp": False},
    )


def test_train_model_resumes_an_interrupted_run_and_supersedes_a_changed_one(
    tmp_path, caplog
):
    table, cache = _data(tmp_path)
    full, full_history = train_model(
        table, cache, _cfg(), checkpoint_dir=tmp_path / "full"
    )

    ckpt = tmp_path / "run" / "checkpoints"
    model_state = tmp_path / "run" / "model_state.pt"
    with pytest.raises(KeyboardInterrupt):
        train_model(table, cache, _cfg(), checkpoint_dir=ckpt, callbacks=[Crash(1)])
    assert load_checkpoint(ckpt / "last.pt")["epoch"] == 1
    with caplog.at_level(logging.INFO, logger="dml_pipelines.core.engine.trainer"):
        resumed, history = train_model(
            table, cache, _cfg(), checkpoint_dir=ckpt, run_files=[model_state]
        )
    assert "resumed from" in caplog.text and "training from scratch" not in caplog.text
    assert resumed["epoch"] == 2 and resumed["fingerprint"] == full["fingerprint"]
    assert list(history["loss"]) == list(full_history["loss"])
    assert same_weights(resumed["model"], full["model"])

    # another learning rate: another resume key; the old run is moved aside
    model_state.write_bytes(b"the old run's model state")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dml_pipelines.core.engine.trainer"):
        changed, history = train_model(
            table, cache, _cfg(lr=0.02), checkpoint_dir=ckpt, run_files=[model_state]
        )
    assert "training from scratch" in caplog.text
    assert changed["fingerprint"] != full["fingerprint"]
    assert list(history["epoch"]) == [1, 2]
    aside = tmp_path / "run" / "superseded" / full["fingerprint"]
    assert load_checkpoint(aside / "last.pt")["fingerprint"] == full["fingerprint"]
    assert (aside / "model_state.pt").read_bytes() == b"the old run's model state"
    assert not model_state.exists()
    assert load_checkpoint(ckpt / "last.pt")["fingerprint"] == changed["fingerprint"]


def test_the_engine_modules_import_no_cycle():
    """``core/engine/*.py`` by their imports (function-local ones included):
    no module reaches itself again through the others."""
    from dml_pipelines.core.provenance import SRC, module_file, package_imports

    engine = sorted((SRC / "core" / "engine").glob("*.py"))
    graph = {
        f: {m for n in package_imports(f) if (m := module_file(n)) in engine}
        for f in engine
    }

    def reaches(start, target, seen):
        for nxt in graph[start] - seen:
            if nxt == target or reaches(nxt, target, seen | {nxt}):
                return True
        return False

    cyclic = [f.name for f in engine if reaches(f, f, set())]
    assert not cyclic, f"import cycles through {cyclic}"
