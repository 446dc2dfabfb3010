"""Contract test over every registered method/baseline (timm style)."""

import pytest
import torch

from dml_pipelines.core.methods.baselines_config import BASELINES
from dml_pipelines.core.methods.configs import method_configs, parse_method_config
from dml_pipelines.core.methods.registry import build_method, load_all
from tests.conftest import minimal_block


def small(name):
    return parse_method_config(minimal_block(name))


@pytest.mark.parametrize("name", sorted(method_configs()))
def test_every_method_trains_a_step_and_groups_cover_every_parameter(name):
    torch.manual_seed(0)
    cfg = small(name)
    method = build_method(cfg, num_classes=4)
    images = torch.randn(8, 3, 16, 16)
    labels = torch.arange(4).repeat_interleave(2)
    loss, logs = method.training_loss(images, labels)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(isinstance(v, float) for v in logs.values())
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


@pytest.mark.parametrize("name", sorted(method_configs()))
def test_every_method_exports_inference_weights_that_reload(name):
    torch.manual_seed(0)
    cfg = small(name)
    method = build_method(cfg, num_classes=4).eval()
    exported = method.export_state_dict()
    assert exported and all(not v.requires_grad for v in exported.values())
    torch.manual_seed(1)
    other = build_method(cfg, num_classes=4).eval()
    other.load_export_state_dict(exported)
    x = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(other.embed(x), method.embed(x))


def test_every_baseline_is_a_registered_loss_and_losses_are_discovered():
    from dml_pipelines.core.losses import load_all as losses

    assert set(BASELINES) <= set(losses().names())


def test_config_registry_is_torch_free():
    import subprocess
    import sys

    code = (
        "import sys; from dml_pipelines.core.methods.configs import method_configs;"
        "method_configs(); from dml_pipelines.pipeline_registry import "
        "register_pipelines; register_pipelines();"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
