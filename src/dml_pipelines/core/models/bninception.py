"""BN-Inception (Ioffe & Szegedy 2015, "Inception v2" of the BN paper) as the
widely used Caffe-converted ImageNet model (the backbone ``bninception``,
registered in ``backbones.py``): images (B, 3, H, W) -> (B, 1024, H/32, W/32)
(7×7 at 224).

Layer names equal the converted model's state-dict keys (``conv1_7x7_s2``,
``inception_3a_1x1_bn``, ...). ``pretrained: true`` loads ImageNet weights:

* by default the widely used ``bn_inception-52deb4733.pth`` of the
  pretrainedmodels project (:data:`IMAGENET_URL`), downloaded once into torch's
  hub cache and checked against the SHA-256 prefix in its name
  (``weights.hub_file``), then converted once to this module's layout
  (classifier dropped, BatchNorm vectors stored as (1, C) reshaped to (C,)) into
  ``bn_inception-52deb4733.dml.pt`` beside it; offline, place the file at the
  path the error names (``$TORCH_HOME/hub/checkpoints/``);
* ``backbone.args.weights_url``: the same file from another URL (``file://``);
* ``backbone.args.weights: <path>``: a state dict with these key names.

The model expects BGR input in 0–255 minus the per-channel mean: its input
convention ``caffe`` (:data:`INPUT_CONVENTION`, ``weights.INPUT_CONVENTIONS``),
which the ``mlrc`` transforms preset takes. ``backbone.freeze_bn`` keeps its BatchNorm
layers in eval mode and untrained.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from dml_pipelines.core.models.weights import BNINCEPTION_URL as IMAGENET_URL
from dml_pipelines.core.models.weights import hub_file

#: what the Caffe-converted weights expect of the input (``weights.INPUT_CONVENTIONS``)
INPUT_CONVENTION = "caffe"
#: suffix of the converted copy in the hub cache
CONVERTED = ".dml.pt"

# block: (in, #1x1, #3x3 reduce, #3x3, #double reduce, #double 3x3, pool, #proj,
# stride); stride 2 blocks have no 1×1 branch and pass the max-pooled input on
BLOCKS = (
    ("3a", 192, 64, 64, 64, 64, 96, "avg", 32, 1),
    ("3b", 256, 64, 64, 96, 64, 96, "avg", 64, 1),
    ("3c", 320, 0, 128, 160, 64, 96, "max", 0, 2),
    ("4a", 576, 224, 64, 96, 96, 128, "avg", 128, 1),
    ("4b", 576, 192, 96, 128, 96, 128, "avg", 128, 1),
    ("4c", 576, 160, 128, 160, 128, 160, "avg", 128, 1),
    ("4d", 608, 96, 128, 192, 160, 192, "avg", 128, 1),
    ("4e", 608, 0, 128, 192, 192, 256, "max", 0, 2),
    ("5a", 1056, 352, 192, 320, 160, 224, "avg", 128, 1),
    ("5b", 1024, 352, 192, 320, 192, 224, "max", 128, 1),
)


class BNInception(nn.Module):
    """The convolutional part of BN-Inception (no final pooling or classifier)."""

    out_channels = 1024

    def _unit(self, name: str, cin: int, cout: int, k: int, stride: int = 1) -> None:
        setattr(self, name, nn.Conv2d(cin, cout, k, stride, padding=k // 2))
        setattr(self, f"{name}_bn", nn.BatchNorm2d(cout, eps=1e-5))

    def __init__(self) -> None:
        super().__init__()
        self._unit("conv1_7x7_s2", 3, 64, 7, 2)
        self._unit("conv2_3x3_reduce", 64, 64, 1)
        self._unit("conv2_3x3", 64, 192, 3)
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for name, cin, c1, r3, c3, rd, cd, _, proj, stride in BLOCKS:
            p = f"inception_{name}"
            if c1:
                self._unit(f"{p}_1x1", cin, c1, 1)
            self._unit(f"{p}_3x3_reduce", cin, r3, 1)
            self._unit(f"{p}_3x3", r3, c3, 3, stride)
            self._unit(f"{p}_double_3x3_reduce", cin, rd, 1)
            self._unit(f"{p}_double_3x3_1", rd, cd, 3)
            self._unit(f"{p}_double_3x3_2", cd, cd, 3, stride)
            if proj:
                self._unit(f"{p}_pool_proj", cin, proj, 1)
        self.avg_pool = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.max_pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)

    def _run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        bn = getattr(self, f"{name}_bn")
        return torch.relu(bn(getattr(self, name)(x)))

    def _block(self, spec: tuple, x: torch.Tensor) -> torch.Tensor:
        name, _, c1, _, _, _, _, pool, proj, stride = spec
        p = f"inception_{name}"
        outs = [self._run(f"{p}_1x1", x)] if c1 else []
        outs.append(self._run(f"{p}_3x3", self._run(f"{p}_3x3_reduce", x)))
        d = self._run(f"{p}_double_3x3_reduce", x)
        d = self._run(f"{p}_double_3x3_2", self._run(f"{p}_double_3x3_1", d))
        outs.append(d)
        if stride == 2:
            outs.append(self.pool(x))
        else:
            pooled = (self.avg_pool if pool == "avg" else self.max_pool)(x)
            outs.append(self._run(f"{p}_pool_proj", pooled))
        return torch.cat(outs, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) BGR 0–255 minus mean -> (B, 1024, h, w)."""
        x = self.pool(self._run("conv1_7x7_s2", x))
        x = self._run("conv2_3x3", self._run("conv2_3x3_reduce", x))
        x = self.pool(x)
        for spec in BLOCKS:
            x = self._block(spec, x)
        return x


def convert_state(state: dict, net: BNInception, source: str) -> dict:
    """A BN-Inception state dict in ``net``'s layout: classifier keys
    (``last_linear``/``fc``) dropped, tensors of the right size reshaped (the
    converted Caffe files store BatchNorm vectors as (1, C)).

    Raises:
        ValueError: missing or unexpected keys, or a size mismatch (one line
            naming ``source``).
    """
    target = net.state_dict()
    state = {
        k: v for k, v in state.items() if not k.startswith(("last_linear.", "fc."))
    }
    missing = [
        k for k in target if k not in state and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in state if k not in target]
    if missing or unexpected:
        raise ValueError(
            f"backbone.args.weights: {source} does not fit BN-Inception: missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}"
        )
    out = {}
    for key, value in state.items():
        shape = target[key].shape
        if value.shape != shape:
            if value.numel() != target[key].numel():
                raise ValueError(
                    f"backbone.args.weights: {source}: {key} has shape "
                    f"{tuple(value.shape)}, BN-Inception needs {tuple(shape)}"
                )
            value = value.reshape(shape)
        out[key] = value
    return out


def load_weights(net: BNInception, path: str | Path) -> None:
    """Load a BN-Inception state dict (``weights_only``) into ``net``
    (:func:`convert_state`)."""
    if not Path(path).exists():
        raise ValueError(f"backbone.args.weights: {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(convert_state(state, net, str(path)), strict=False)


def imagenet_weights(url: str = IMAGENET_URL) -> Path:
    """The converted ImageNet weights in torch's hub cache: the file at ``url``
    is downloaded and checked once (``hub_file``), converted once to this
    module's layout, and the converted copy is what later runs load."""
    from torch.hub import get_dir

    name = Path(urlparse(url).path).name
    converted = Path(get_dir()) / "checkpoints" / f"{Path(name).stem}{CONVERTED}"
    if converted.is_file():
        return converted
    raw = hub_file(url, "the BN-Inception ImageNet weights")
    state = torch.load(raw, map_location="cpu", weights_only=True)
    state = convert_state(state, BNInception(), str(raw))
    part = converted.with_name(f"{converted.name}.{os.getpid()}.part")
    torch.save(state, part)
    os.replace(part, converted)
    return converted
