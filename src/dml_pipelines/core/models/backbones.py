"""Backbone registry. A backbone maps images (B, 3, H, W) to a feature map
(B, C, h, w) and exposes ``out_channels``.

``pretrained: true`` loads ImageNet weights: torchvision's for ResNet and
GoogLeNet, the published BN-Inception file for ``bninception``
(``core/models/bninception.py``). Each file is downloaded once into torch's hub
cache (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub``) and
checked against the SHA-256 prefix in its name (``<name>-<prefix>.pth``);
``backbone.args.weights_url`` points at another copy (a mirror, a ``file://``
URL). Offline, a missing file is one line naming the URL and the path to place
the file at. Tests use ``pretrained: false`` or ``file://`` URLs.
"""

from __future__ import annotations

import torch
from torch import nn

from dml_pipelines.core.models import bninception as bn
from dml_pipelines.core.models.weights import INPUT_CONVENTIONS, hub_file
from dml_pipelines.core.registry import Registry

BACKBONES: Registry = Registry("backbone")


class FeatureBackbone(nn.Module):
    """Wraps a feature extractor and records its output channel count and the
    input convention of its pretrained weights (a key of
    ``weights.INPUT_CONVENTIONS``; ``None``: trained from scratch only)."""

    def __init__(
        self,
        body: nn.Module,
        out_channels: int,
        child_names: list[str] | None = None,
        input_convention: str | None = None,
    ) -> None:
        super().__init__()
        if input_convention is not None and input_convention not in INPUT_CONVENTIONS:
            raise KeyError(f"unknown input convention {input_convention!r}")
        self.body = body
        self.out_channels = out_channels
        self.input_convention = input_convention
        #: names of the source model's children kept in ``body`` (in order), so a
        #: torchvision weights file can be mapped onto it (``training.init_from``)
        self.child_names = child_names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, C, h, w)."""
        return self.body(x)


def _conv_block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return layers


@BACKBONES.register("small_cnn")
def small_cnn(
    pretrained: bool = False, channels: tuple[int, ...] = (32, 64, 128, 256)
) -> FeatureBackbone:
    """Small CPU CNN: 4 × [conv3×3 → BN → ReLU], max-pool after the first three
    blocks. 32×32 input → (B, 256, 4, 4)."""
    if pretrained:
        raise ValueError("backbone.pretrained: small_cnn has no pretrained weights")
    layers: list[nn.Module] = []
    cin = 3
    for i, cout in enumerate(channels):
        layers += _conv_block(cin, cout, pool=i < len(channels) - 1)
        cin = cout
    return FeatureBackbone(nn.Sequential(*layers), cin)


def _torchvision(
    name: str, weights_enum: str, pretrained: bool, weights_url: str | None
) -> FeatureBackbone:
    import torchvision

    ctor = getattr(torchvision.models, name)
    if weights_url and not pretrained:
        raise ValueError(
            "backbone.args.weights_url: given but backbone.pretrained is false"
        )
    # the ImageNet files hold GoogLeNet's auxiliary classifiers (dropped below)
    extra = {"aux_logits": True, "init_weights": False} if name == "googlenet" else {}
    net = ctor(weights=None, **(extra if pretrained else {}))
    if pretrained:
        url = weights_url or getattr(torchvision.models, weights_enum).DEFAULT.url
        path = hub_file(url, f"the ImageNet weights of {name}")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    if name.startswith("resnet"):
        kept = list(net.named_children())[:-2]  # drop avgpool, fc
    elif name == "googlenet":
        net.aux_logits = False
        net.aux1 = net.aux2 = None
        kept = [(n, m) for n, m in net.named_children() if m is not None][:-3]
    else:
        raise KeyError(name)
    body = nn.Sequential(*[m for _, m in kept])
    names = [n for n, _ in kept]
    return FeatureBackbone(body, net.fc.in_features, names, "torchvision")


@BACKBONES.register("resnet18")
def resnet18(
    pretrained: bool = False, weights_url: str | None = None
) -> FeatureBackbone:
    """torchvision ResNet-18 without pooling/fc: (B, 512, H/32, W/32)."""
    return _torchvision("resnet18", "ResNet18_Weights", pretrained, weights_url)


@BACKBONES.register("resnet50")
def resnet50(
    pretrained: bool = False, weights_url: str | None = None
) -> FeatureBackbone:
    """torchvision ResNet-50 without pooling/fc: (B, 2048, H/32, W/32)."""
    return _torchvision("resnet50", "ResNet50_Weights", pretrained, weights_url)


@BACKBONES.register("googlenet")
def googlenet(
    pretrained: bool = False, weights_url: str | None = None
) -> FeatureBackbone:
    """torchvision GoogLeNet (Inception v1) without pooling/fc: (B, 1024, h, w)."""
    return _torchvision("googlenet", "GoogLeNet_Weights", pretrained, weights_url)


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode with non-trainable affine parameters.

    Call again after ``module.train()`` (the embedder does this itself)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)


@BACKBONES.register("bninception")
def bninception(
    pretrained: bool = False,
    weights: str | None = None,
    weights_url: str | None = None,
) -> FeatureBackbone:
    """BN-Inception (``core/models/bninception.py``) -> (B, 1024, H/32, W/32);
    ``pretrained`` loads ``weights`` (a file) or else the ImageNet weights at
    ``weights_url`` (default :data:`bninception.IMAGENET_URL`) through torch's
    hub cache."""
    net = bn.BNInception()
    if pretrained:
        if weights and weights_url:
            raise ValueError(
                "backbone.args: give weights (a file) or weights_url, not both"
            )
        url = weights_url or bn.IMAGENET_URL
        bn.load_weights(net, weights or bn.imagenet_weights(url))
    elif weights or weights_url:
        key = "weights" if weights else "weights_url"
        raise ValueError(f"backbone.args.{key}: given but backbone.pretrained is false")
    return FeatureBackbone(
        net, bn.BNInception.out_channels, input_convention=bn.INPUT_CONVENTION
    )
