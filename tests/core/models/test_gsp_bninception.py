"""The BN-Inception backbone used by GSP's recipes (random weights): block
widths of the BN paper, converted-model key names, loading a weights file,
frozen BatchNorm."""

import pytest
import torch

from dml_pipelines.core.config import BackboneConfig
from dml_pipelines.core.models.backbones import BACKBONES
from dml_pipelines.core.models.bninception import BNInception
from dml_pipelines.core.models.embedder import Embedder
from dml_pipelines.core.models.pooling import GlobalAvgPool

# BN-Inception (Ioffe & Szegedy 2015, Fig. 5): output width of each block
WIDTHS = [256, 320, 576, 576, 576, 608, 608, 1056, 1024, 1024]


def test_registered_and_block_widths_and_output_shape():
    torch.manual_seed(0)
    backbone = BACKBONES.get("bninception")()
    net = backbone.body
    widths = []
    orig = net._block

    def record(spec, x):
        out = orig(spec, x)
        widths.append(out.shape[1])
        return out

    net._block = record
    out = backbone(torch.randn(2, 3, 64, 64))
    assert widths == WIDTHS and backbone.out_channels == 1024
    assert out.shape == (2, 1024, 2, 2)


def test_224_input_gives_a_7x7_map_and_converted_key_names():
    net = BNInception().eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 224, 224)).shape == (1, 1024, 7, 7)
    keys = set(net.state_dict())
    for key in (
        "conv1_7x7_s2.weight",
        "conv2_3x3_reduce_bn.running_mean",
        "inception_3c_double_3x3_2.bias",
        "inception_5b_pool_proj_bn.weight",
    ):
        assert key in keys
    assert not any(
        k.startswith("inception_3c_1x1") or "4e_pool_proj" in k for k in keys
    )


def test_pretrained_loads_a_converted_weights_file(tmp_path):
    torch.manual_seed(1)
    source = BNInception().eval()
    state = {
        k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k
    }
    state["last_linear.weight"] = torch.zeros(1000, 1024)  # classifier: ignored
    state["last_linear.bias"] = torch.zeros(1000)
    path = tmp_path / "bn_inception.pth"
    torch.save(state, path)
    loaded = BACKBONES.get("bninception")(pretrained=True, weights=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), source(x))
    del state["conv1_7x7_s2.weight"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="backbone.args.weights: .*missing"):
        BACKBONES.get("bninception")(pretrained=True, weights=str(path))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"pretrained": True, "weights": "/no/such.pth"}, "does not exist"),
        ({"pretrained": False, "weights": "x.pth"}, "pretrained is false"),
    ],
)
def test_weights_argument_errors(args, message):
    with pytest.raises(ValueError, match=f"backbone.args.weights: .*{message}"):
        BACKBONES.get("bninception")(**args)


def test_freeze_bn_keeps_batchnorm_in_eval_mode_and_untrained():
    assert BackboneConfig(name="bninception", freeze_bn=True).freeze_bn
    backbone = BACKBONES.get("bninception")()
    emb = Embedder(backbone, GlobalAvgPool(), 8, freeze_bn=True).train()
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) > 60 and all(not m.training for m in bns)
    assert all(not p.requires_grad for m in bns for p in m.parameters())
    before = bns[0].running_mean.clone()
    emb(torch.randn(2, 3, 64, 64) * 50)
    assert torch.equal(bns[0].running_mean, before)
