"""``backbone.pretrained: true`` for every backbone a recipe names, without
network: weights are served from ``file://`` URLs (``backbone.args.weights_url``)
into a scratch torch hub cache, checked against the hash in the file name, and
BN-Inception's published file is converted once (``core/models/backbones.py``,
``core/models/bninception.py``)."""

import hashlib

import pytest
import torch
import torchvision
import yaml

from dml_pipelines.core.methods.configs import config_for, parse_method_config
from dml_pipelines.core.methods.registry import build_method
from dml_pipelines.core.models.bninception import IMAGENET_URL, BNInception
from tests.test_end_to_end import ROOT


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A scratch ``$TORCH_HOME``; yields its ``hub/checkpoints`` folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def _publish(state, folder, stem, digits, wrong=False):
    """Save ``state`` as ``<stem>-<sha256 prefix>.pth`` (a wrong prefix with
    ``wrong``), as the published files are named."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "state.tmp"
    torch.save(state, tmp)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    prefix = ("f" if sha[0] != "f" else "e") * digits if wrong else sha[:digits]
    path = folder / f"{stem}-{prefix}.pth"
    tmp.rename(path)
    return path


def _method(backbone):
    cfg = parse_method_config(
        {
            "method": "contrastive_c1",
            "loss": {"name": "contrastive_c1"},
            "backbone": backbone,
            "embedding_dim": 8,
        }
    )
    return build_method(cfg, 4)


def _caffe_bninception(seed):
    """A BN-Inception state dict as the published file stores it: BatchNorm
    vectors as (1, C), the ImageNet classifier ``last_linear`` included."""
    torch.manual_seed(seed)
    net = BNInception().eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    state = {}
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        state[k] = v.reshape(1, -1) if "_bn." in k else v
    state["last_linear.weight"] = torch.zeros(1000, 1024)
    state["last_linear.bias"] = torch.zeros(1000)
    return net, state


def test_bninception_downloads_checks_and_converts_once(hub, tmp_path):
    source, state = _caffe_bninception(3)
    published = _publish(state, tmp_path / "mirror", "bn_inception", 9)
    backbone = {
        "name": "bninception",
        "pretrained": True,
        "args": {"weights_url": published.as_uri()},
    }
    body = _method(backbone).embedder.backbone.body.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(body(x), source(x))
    raw = hub / published.name
    converted = hub / f"{published.stem}.dml.pt"
    assert raw.is_file() and converted.is_file()
    layout = torch.load(converted, weights_only=True)
    assert layout["conv1_7x7_s2_bn.weight"].shape == (64,)
    assert not any(k.startswith("last_linear") for k in layout)
    # converted once: later runs read the converted copy (no source, no raw file)
    published.unlink()
    raw.unlink()
    again = _method(backbone).embedder.backbone.body.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(x), source(x))


def test_offline_is_one_line_naming_the_url_and_where_to_place_the_file(hub, tmp_path):
    assert IMAGENET_URL.endswith("/pretrainedmodels/bn_inception-52deb4733.pth")
    url = (tmp_path / "offline" / "bn_inception-52deb4733.pth").as_uri()
    backbone = {"name": "bninception", "pretrained": True, "args": {"weights_url": url}}
    with pytest.raises(ValueError) as info:
        _method(backbone)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"backbone.pretrained: cannot download the BN-Inception ImageNet weights "
        f"from {url} ("
    )
    assert message.endswith(f"place it at {hub / 'bn_inception-52deb4733.pth'}")


def test_a_file_whose_hash_differs_from_its_name_is_refused(hub, tmp_path):
    _, state = _caffe_bninception(4)
    bad = _publish(state, tmp_path / "mirror", "bn_inception", 9, wrong=True)
    backbone = {
        "name": "bninception",
        "pretrained": True,
        "args": {"weights_url": bad.as_uri()},
    }
    with pytest.raises(ValueError, match="SHA-256 .* does not start with f{9}|e{9}"):
        _method(backbone)
    assert not hub.exists() or not any(hub.iterdir())  # nothing cached
    # a file placed by hand is checked as well
    hub.mkdir(parents=True, exist_ok=True)
    (hub / bad.name).write_bytes(bad.read_bytes())
    with pytest.raises(ValueError, match=f"{hub / bad.name}: SHA-256 .*replace it"):
        _method(backbone)


@pytest.mark.parametrize(
    ("name", "digits"), [("resnet18", 8), ("resnet50", 8), ("googlenet", 8)]
)
def test_torchvision_backbones_load_their_weights_through_the_cache(
    hub, tmp_path, name, digits
):
    torch.manual_seed(5)
    extra = {"aux_logits": True, "init_weights": True} if name == "googlenet" else {}
    source = getattr(torchvision.models, name)(weights=None, **extra)
    published = _publish(source.state_dict(), tmp_path / "mirror", name, digits)
    backbone = {
        "name": name,
        "pretrained": True,
        "args": {"weights_url": published.as_uri()},
    }
    backbone_module = _method(backbone).embedder.backbone
    names = backbone_module.child_names  # body child i = source child names[i]
    src = dict(source.named_parameters()) | dict(source.named_buffers())
    kept = dict(backbone_module.body.named_parameters())
    kept |= dict(backbone_module.body.named_buffers())
    assert len(kept) > 50
    for key, value in kept.items():
        index, rest = key.split(".", 1)
        torch.testing.assert_close(value, src[f"{names[int(index)]}.{rest}"])
    # offline afterwards: the cached file serves the next run
    published.unlink()
    assert (hub / published.name).is_file()
    _method(backbone)


@pytest.mark.parametrize(
    ("method", "recipe"),
    [("gsp", "cub200"), ("gsp", "conventional_small"), ("ccp", "cub200")],
)
def test_bninception_recipes_are_pretrained_from_the_published_file(
    hub, method, recipe
):
    """The recipes name no weights file: ``pretrained: true`` resolves to the
    published file's converted copy in the hub cache."""
    source, state = _caffe_bninception(6)
    hub.mkdir(parents=True)
    del state["last_linear.weight"], state["last_linear.bias"]
    converted = {k: v.reshape(source.state_dict()[k].shape) for k, v in state.items()}
    torch.save(converted, hub / "bn_inception-52deb4733.dml.pt")
    raw = yaml.safe_load((ROOT / f"conf/base/parameters_{method}.yml").read_text())
    cfg = config_for(method).model_validate({**raw[method], "recipe": recipe})
    assert cfg.backbone.name == "bninception" and cfg.backbone.pretrained
    assert cfg.backbone.args == {}
    body = build_method(cfg, 4).embedder.backbone.body.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(body(x), source(x))
