"""Run-building helpers (``core/engine/training_data.py``, ``core/engine/assemble.py``):
label noise, warm starts, exported weights, loader workers."""

import numpy as np
import pytest
import torch

from dml_pipelines.core.engine.assemble import warm_start
from dml_pipelines.core.engine.trainer import save_atomic
from dml_pipelines.core.engine.training_data import noisy_labels
from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.methods.registry import build_method


def test_label_noise_moves_exactly_the_fraction_to_other_classes():
    labels = np.repeat(np.arange(10), 20)
    noisy = noisy_labels(labels, 10, 0.2, seed=3)
    changed = noisy != labels
    assert changed.sum() == 40  # every chosen label moved to another class
    assert noisy.min() >= 0 and noisy.max() <= 9
    assert np.array_equal(noisy, noisy_labels(labels, 10, 0.2, seed=3))
    assert not np.array_equal(noisy, noisy_labels(labels, 10, 0.2, seed=4))
    assert np.array_equal(noisy_labels(labels, 10, 0.0, seed=3), labels)


def _cfg(**over):
    return parse_method_config(
        {
            "method": "contrastive_c1",
            "loss": {"name": "contrastive_c1"},
            "backbone": {"name": "resnet18"},
            "embedding_dim": 8,
            **over,
        }
    )


def test_init_from_a_torchvision_weights_file_fills_the_backbone(tmp_path):
    import torchvision

    torch.manual_seed(5)
    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    method = build_method(_cfg(), 4)
    warm_start(method, str(path))
    body = method.embedder.backbone.body
    torch.testing.assert_close(body[0].weight, net.conv1.weight)
    torch.testing.assert_close(
        body[4][0].bn1.running_var, net.layer1[0].bn1.running_var
    )
    torch.testing.assert_close(body[7][1].conv2.weight, net.layer4[1].conv2.weight)


def test_init_from_a_project_checkpoint_and_bad_files(tmp_path):
    torch.manual_seed(1)
    source = build_method(_cfg(), 4)
    save_atomic({"model": source.export_state_dict()}, tmp_path / "model_state.pt")
    torch.manual_seed(2)
    target = build_method(_cfg(), 4)
    warm_start(target, str(tmp_path / "model_state.pt"))
    for k, v in source.export_state_dict().items():
        torch.testing.assert_close(target.state_dict()[k], v)
    with pytest.raises(ValueError, match="init_from.*does not exist"):
        warm_start(target, str(tmp_path / "missing.pt"))
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="lacks"):
        warm_start(target, str(tmp_path / "other.pth"))


def test_loader_workers_auto_is_zero_on_cpu_and_a_share_of_cores_on_gpu(monkeypatch):
    from types import SimpleNamespace

    from dml_pipelines.core.engine import training_data as data

    t = SimpleNamespace(num_workers="auto", device="cpu", devices=1)
    assert data.loader_workers(t) == 0
    assert data.loader_workers(SimpleNamespace(num_workers=3, device="cpu")) == 3
    monkeypatch.setattr(data, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(data.os, "cpu_count", lambda: 16)
    assert data.loader_workers(SimpleNamespace(**{**vars(t), "device": "cuda"})) == 8
    gpu4 = SimpleNamespace(num_workers="auto", device="cuda", devices=4)
    assert data.loader_workers(gpu4) == 3
    with pytest.raises(ValueError, match="num_workers"):
        _cfg(training={"num_workers": -1})
