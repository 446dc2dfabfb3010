"""Embedding heads and the embedder's ``features`` dict."""

import pytest
import torch

from dml_pipelines.core.methods.configs import parse_method_config
from dml_pipelines.core.models.embedder import build_embedder
from tests.conftest import minimal_block


def cfg(head, dim=8):
    return parse_method_config(minimal_block(embedding_dim=dim, head=head))


def test_linear_head_with_and_without_bias():
    assert build_embedder(cfg({"name": "linear"})).head.bias is not None
    head = build_embedder(cfg({"name": "linear", "args": {"bias": False}})).head
    assert isinstance(head, torch.nn.Linear) and head.bias is None


def test_identity_head_needs_the_backbone_width():
    emb = build_embedder(cfg({"name": "identity"}, dim=16))
    x = torch.randn(2, 3, 16, 16)
    out = emb.eval().features(x)
    torch.testing.assert_close(out["embedding"], out["pooled"])
    with pytest.raises(ValueError, match="embedding_dim: 16"):
        build_embedder(cfg({"name": "identity"}, dim=8))


def test_mlp_head_shape_and_features_dict():
    emb = build_embedder(cfg({"name": "mlp", "args": {"hidden_dim": 12}}))
    layers = [m for m in emb.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in layers] == [(16, 12), (12, 8)]
    out = emb.eval().features(torch.randn(3, 3, 16, 16))
    assert out["feature_map"].shape[:2] == (3, 16)
    assert out["pooled"].shape == (3, 16) and out["embedding"].shape == (3, 8)
    torch.testing.assert_close(out["embedding"], emb.head(out["pooled"]))
    torch.testing.assert_close(
        emb(torch.zeros(1, 3, 16, 16)).norm(dim=1), torch.ones(1)
    )


def test_unknown_head_or_argument_names_the_key():
    with pytest.raises(ValueError, match="head.name"):
        cfg({"name": "mpl"})
    with pytest.raises(ValueError, match="head.args"):
        cfg({"name": "linear", "args": {"biass": False}})


def test_head_inits_reset_every_linear_and_zero_biases():
    from dml_pipelines.core.models.heads import init_head, mlp

    torch.manual_seed(0)
    head = mlp(16, 8, hidden_dim=12)
    before = [m.weight.clone() for m in head if isinstance(m, torch.nn.Linear)]
    init_head(head, "kaiming_fan_out")
    layers = [m for m in head if isinstance(m, torch.nn.Linear)]
    assert all(
        not torch.equal(m.weight, w) for m, w in zip(layers, before, strict=True)
    )
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in layers)
    bound = (6 / (16 + 12)) ** 0.5  # glorot-uniform bound of the first layer
    init_head(head, "glorot_uniform")
    assert layers[0].weight.abs().max() <= bound
    kept = layers[0].weight.clone()
    init_head(head, "default")
    assert torch.equal(layers[0].weight, kept)
    with pytest.raises(ValueError, match="head_init: glorot_uniform needs"):
        init_head(torch.nn.Identity(), "glorot_uniform")
    with pytest.raises(KeyError, match="head_init: unknown head init"):
        init_head(head, "orthogonal")
