import pytest
import torch

from dml_pipelines.core.config import BaselineConfig
from dml_pipelines.core.models.backbones import BACKBONES
from dml_pipelines.core.models.embedder import build_embedder, normalize_embeddings


def _cfg(**kw):
    base = {"method": "contrastive_c1", "loss": {"name": "contrastive_c1"}}
    return BaselineConfig.model_validate({**base, **kw})


def test_embedding_has_unit_norm_and_dim():
    torch.manual_seed(0)
    emb = build_embedder(_cfg(embedding_dim=16))
    out = emb(torch.randn(5, 3, 32, 32))
    assert out.shape == (5, 16)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(5))


def test_lipschitz_normalisation_clips_only_long_vectors():
    x = torch.tensor([[0.3, 0.4], [3.0, 4.0]])
    out = normalize_embeddings(x, "lipschitz")
    torch.testing.assert_close(out, torch.tensor([[0.3, 0.4], [0.6, 0.8]]))
    with pytest.raises(ValueError, match="normalization"):
        normalize_embeddings(x, "l1")


def test_freeze_bn_survives_train_mode_and_keeps_statistics():
    torch.manual_seed(0)
    emb = build_embedder(_cfg(backbone={"name": "small_cnn", "freeze_bn": True}))
    emb.train()
    bns = [m for m in emb.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    before = bns[0].running_mean.clone()
    emb(torch.randn(4, 3, 32, 32) * 5 + 3)
    torch.testing.assert_close(bns[0].running_mean, before)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_backbone_builds_without_weights_and_reports_channels(name):
    torch.manual_seed(0)
    bb = BACKBONES.get(name)(pretrained=False)
    x = torch.randn(2, 3, 64, 64)
    bb.eval()
    with torch.no_grad():
        fmap = bb(x)
    assert fmap.ndim == 4 and fmap.shape[1] == bb.out_channels


def test_small_cnn_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="backbone.pretrained"):
        BACKBONES.get("small_cnn")(pretrained=True)
