"""The official-code defaults of ``gsp`` through the real entry point
``train_model`` (docs/methods/gsp.md, "Official-code defaults"): a TF-style
recipe (``keras_adam``, the ZSR −log(p + 1e-16) with the alternate split, C1
with ε 1e-5, the Keras glorot head) trains and records those settings."""

from __future__ import annotations

import math

import pytest

from dml_pipelines.core.data.prepare import prepare_caches
from dml_pipelines.core.engine.run import train_model
from dml_pipelines.core.methods.configs import parse_method_config
from tests.conftest import colour_classes


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "raw"
    table = colour_classes(root, (12, 16), per_class=4)
    _, built, _ = prepare_caches(table, root, tmp_path / "primary", [None])
    return table, built[None]


@pytest.mark.slow
def test_train_model_runs_gsp_with_the_official_defaults(data):
    table, cache = data
    cfg = parse_method_config(
        {
            "method": "gsp",
            "backbone": {"name": "small_cnn", "args": {"channels": [4, 8]}},
            "embedding_dim": 4,
            "pooling": {"name": "gsp", "args": {"num_prototypes": 2, "init": "none"}},
            "xbm": {"memory_batches": 1, "start_step": 0},
            "optimizer": {"name": "keras_adam", "lr": 1e-3},
            "sampler": {"P": 4, "K": 2, "batches_per_epoch": 2},
            "transforms": {"preset": "small"},
            "training": {"epochs": 2, "device": "cpu", "amp": False, "seed": 0},
        }
    )
    state, history = train_model(table, cache, cfg, checkpoint_dir=None)
    c = state["config"]
    assert c["optimizer"]["name"] == "keras_adam"
    assert (c["zsr"]["epsilon"], c["zsr"]["split"]) == (1e-16, "alternate")
    assert c["loss"]["args"] == {"margin": 0.5, "eps": 1e-5}
    assert c["head_init"] == "glorot_uniform"
    losses = [v for k, v in history.iloc[-1].items() if "loss" in str(k)]
    assert losses and all(math.isfinite(float(v)) for v in losses)
