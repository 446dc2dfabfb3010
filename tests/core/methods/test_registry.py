"""Contract test over every registered method/baseline (timm style)."""

import pytest
import torch

from dml_pipelines.core.config import parse_method_config
from dml_pipelines.core.methods.baselines_config import BASELINES
from dml_pipelines.core.methods.registry import build_method, load_all


def small(name):
    raw = {
        "method": name,
        "backbone": {"name": "small_cnn", "args": {"channels": [8, 16]}},
        "embedding_dim": 8,
        "training": {"device": "cpu"},
    }
    if name in BASELINES:
        raw["loss"] = {"name": name}
    return parse_method_config(raw)


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_trains_a_step_and_groups_cover_every_parameter(name):
    torch.manual_seed(0)
    cfg = small(name)
    method = build_method(cfg, num_classes=4)
    images = torch.randn(8, 3, 16, 16)
    labels = torch.arange(4).repeat_interleave(2)
    loss, _ = method.training_loss(images, labels)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert method.embedder.head.weight.grad.abs().sum() > 0
    groups = method.param_groups(cfg.optimizer)
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in method.parameters() if p.requires_grad]
    assert sorted(grouped) == sorted(trainable) and len(set(grouped)) == len(grouped)


def test_eval_embedding_is_the_embedders_output():
    torch.manual_seed(0)
    method = build_method(small("contrastive_c1"), 4).eval()
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(method.embed(x), method.embedder.embedding(x))


def test_every_registered_method_has_a_config_model():
    from dml_pipelines.core.methods.configs import method_configs

    METHOD_CONFIGS = method_configs()

    assert set(load_all().names()) == set(METHOD_CONFIGS)
