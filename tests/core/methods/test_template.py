"""The proof that a method is its own files: a test-only method registered from
the test package trains through the real Trainer and the Kedro pipeline factory,
with no edit to core/engine, core/config.py or the pipelines."""

import pytest
import torch

from dml_pipelines.core.engine.callbacks import EarlyStopping
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.registry import build_method
from tests.conftest import minimal_block

from ..engine.conftest import make_loader, make_trainer
from . import toy_method


@pytest.fixture(autouse=True)
def _toy():
    toy_method.register()
    yield
    toy_method.unregister()


RAW = minimal_block(
    toy_method.NAME,
    loss={"name": "contrastive_c1"},
    sampler={"P": 4, "K": 2},
    memory_size=16,
    start_step=3,
    optimizer={"grad_transforms": [{"name": "clip_norm", "args": {"max_norm": 5}}]},
    training={
        "epochs": 6,
        "device": "cpu",
        "checkpoint_selection": "validation",
        "early_stopping": {"patience": 2},
    },
)


def test_toy_method_trains_through_the_real_trainer():
    cfg = parse_method_config(RAW)
    assert type(cfg).__name__ == "ToyConfig"
    torch.manual_seed(0)
    method = build_method(cfg, 6)
    scores = iter([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    trainer = make_trainer(
        cfg,
        method=method,
        loader=make_loader(0),
        validate=lambda m: {"map@r": next(scores)},
    )
    history = trainer.fit()
    steps = len(trainer.loader)
    assert len(history) == 4  # early stopping after 2 epochs without gain
    assert method.before_step_calls == 4 * steps
    assert method.memory_steps[0] == 3  # the step context gates the memory
    assert int(method.filled) == 16 and set(method.mem_labels.tolist()) <= set(range(6))
    assert any(isinstance(c, EarlyStopping) for c in trainer.callbacks)
    exported = method.export_state_dict()
    assert exported and not any(k.startswith("mem") for k in exported)
    assert all(k.startswith("embedder.") for k in exported)


def test_toy_method_gets_a_kedro_pipeline_from_the_factory():
    from dml_pipelines.pipeline_registry import register_pipelines

    pipes = register_pipelines()
    names = {n.name for n in pipes[toy_method.NAME].nodes}
    assert f"{toy_method.NAME}.train_method" in names
    assert f"{toy_method.NAME}.report_metrics" in names
    assert f"{toy_method.NAME}_mlrc" in pipes
