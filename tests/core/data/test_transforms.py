"""Tests of the preprocessing presets (core/data/transforms.py)."""

from __future__ import annotations

import math

import pytest
import torch

from dml_pipelines.core.data.transforms import (
    IMAGENET_MEAN,
    PRESETS,
    build_transforms,
    random_erasing,
    resized_crop_params,
)

SIZES = {"mlrc": 227, "intra_batch": 227, "xbm": 224, "proxy_anchor": 224}
FILL = (0.4914, 0.4822, 0.4465)


def _image(h: int = 256, w: int = 341, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)


def test_registry_holds_exactly_the_spec_presets():
    assert PRESETS.names() == sorted(
        ["mlrc", "intra_batch", "xbm", "proxy_anchor", "small"]
    )


@pytest.mark.parametrize("preset", sorted(SIZES))
@pytest.mark.parametrize("shape", [(256, 341), (300, 256), (180, 200)])
def test_crop_presets_output_size_and_dtype(preset, shape):
    t = build_transforms(preset)
    s = SIZES[preset]
    img = _image(*shape)
    train, test = t.train_sample(img), t.test_sample(img)
    assert train.shape == test.shape == (3, s, s)
    assert train.dtype == test.dtype == torch.uint8
    for flag in (True, False):
        out = t.normalize(torch.stack([train, test]), train=flag)
        assert out.shape == (2, 3, s, s) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_test_sample_is_resize_then_centre_crop():
    t = build_transforms("proxy_anchor")
    img = _image(256, 341)  # cache already at 256: the resize is a no-op
    top, left = (256 - 224) // 2, (341 - 224) // 2
    torch.testing.assert_close(
        t.test_sample(img), img[:, top : top + 224, left : left + 224]
    )
    big = _image(512, 682)
    assert t.test_sample(big).shape == (3, 224, 224)


def test_mlrc_normalisation_is_bgr_0_255_mean_subtracted():
    t = build_transforms("mlrc")
    batch = torch.empty(1, 3, 4, 4, dtype=torch.uint8)
    batch[:, 0], batch[:, 1], batch[:, 2] = 10, 20, 30  # R, G, B
    out = t.normalize(batch, train=True)
    expected = [
        30 - 255 * IMAGENET_MEAN[2],
        20 - 255 * IMAGENET_MEAN[1],
        10 - 255 * IMAGENET_MEAN[0],
    ]
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(expected))
    assert (out == out[:, :, :1, :1]).all()  # no erasing
    pb = build_transforms("mlrc", mean=[104, 117, 128])  # powerful-benchmarker means
    torch.testing.assert_close(
        pb.normalize(batch, False)[0, :, 0, 0], torch.tensor([-74.0, -97.0, -118.0])
    )


def test_intra_batch_normalisation_keeps_the_std_typo_unless_overridden():
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    t = build_transforms("intra_batch")
    ref = (x.float() / 255 - mean) / torch.tensor([0.299, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(t.normalize(x, train=False), ref)
    fixed = build_transforms("intra_batch", normalize_std=[0.229, 0.224, 0.225])
    ref = (x.float() / 255 - mean) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(fixed.normalize(x, train=False), ref)


def test_random_erasing_only_in_intra_batch_train():
    x = torch.stack([_image(48, 48, s) for s in range(64)])
    t = build_transforms("intra_batch")
    torch.manual_seed(0)
    test = t.normalize(x, train=False)
    train = t.normalize(x, train=True)
    fill = torch.tensor(FILL).view(1, 3, 1, 1)
    erased = (train == fill).all(dim=1)  # (B, H, W) pixels holding the fill
    frac = erased.flatten(1).float().mean(1)
    hit = frac > 0
    assert 16 <= int(hit.sum()) <= 48  # p = 0.5
    assert ((frac[hit] > 0.015) & (frac[hit] < 0.41)).all()
    torch.testing.assert_close(
        train[~erased[:, None].expand_as(train)], test[~erased[:, None].expand_as(test)]
    )
    assert not (test == fill).all(dim=1).any()
    other = build_transforms("proxy_anchor")
    torch.testing.assert_close(other.normalize(x, True), other.normalize(x, False))


def test_random_erasing_rectangle_is_one_axis_aligned_box():
    x = torch.zeros(8, 3, 40, 50)
    out = random_erasing(
        x, 1.0, (0.02, 0.4), 0.3, (1.0, 2.0, 3.0), torch.Generator().manual_seed(1)
    )
    for img in out:
        mask = img[0] == 1.0
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        assert mask.sum() == len(rows) * len(cols)  # a full rectangle
        assert (img[1][mask] == 2.0).all() and (img[2][mask] == 3.0).all()
        assert len(rows) < 40 and len(cols) < 50


def test_small_preset_native_size_affine_and_identity_test():
    t = build_transforms("small")
    img = _image(32, 32)
    assert t.test_sample(img) is img
    torch.manual_seed(3)
    out = t.train_sample(img)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    assert not torch.equal(out, img)
    n = t.normalize(out[None], train=True)
    assert n.min() >= -1 and n.max() <= 1
    torch.testing.assert_close(n, out[None].float() / 255 * 2 - 1)
    up = build_transforms("small", image_size=48)
    assert up.train_sample(img).shape == up.test_sample(img).shape == (3, 48, 48)


@pytest.mark.parametrize("preset", sorted(PRESETS.names()))
def test_train_sample_is_reproducible_under_a_seed(preset):
    t = build_transforms(preset)
    img = _image(64, 80) if preset == "small" else _image()
    torch.manual_seed(7)
    a = [t.train_sample(img) for _ in range(3)]
    torch.manual_seed(7)
    b = [t.train_sample(img) for _ in range(3)]
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert not all(torch.equal(a[0], x) for x in a[1:])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(t.train_sample(img, g1), t.train_sample(img, g2))
    x = torch.stack(a)
    assert torch.equal(
        t.normalize(x, True, torch.Generator().manual_seed(1)),
        t.normalize(x, True, torch.Generator().manual_seed(1)),
    )


def test_resized_crop_params_respect_scale_and_ratio():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = resized_crop_params(256, 341, (0.16, 1.0), (0.75, 1.33), g)
        assert 0 <= top <= 256 - h and 0 <= left <= 341 - w
        if (h, w) != (256, 341):  # the fallback crop is the whole image here
            assert 0.16 * 0.98 <= h * w / (256 * 341) <= 1.0
            assert 0.75 * 0.97 <= w / h <= 1.33 * 1.03


def test_unknown_preset_and_option_errors_list_valid_names():
    with pytest.raises(
        KeyError,
        match="transforms.preset: unknown transforms preset 'imagenet'; "
        "valid: intra_batch, mlrc, proxy_anchor, small, xbm",
    ):
        build_transforms("imagenet")
    with pytest.raises(
        ValueError, match=r"unknown option\(s\) \['colour_jitter'\]; valid: image_size"
    ):
        build_transforms("xbm", colour_jitter=0.4)
    with pytest.raises(ValueError, match="uint8"):
        build_transforms("xbm").normalize(torch.zeros(1, 3, 4, 4), train=False)


def test_overrides_and_describe():
    t = build_transforms("xbm", image_size=64, resize_size=80, scale=[0.5, 1.0])
    assert t.scale == (0.5, 1.0)
    assert t.train_sample(_image(100, 120)).shape == (3, 64, 64)
    assert t.test_sample(_image(100, 120)).shape == (3, 64, 64)
    d = t.describe()
    assert d["preset"] == "xbm" and d["scale"] == [0.5, 1.0] and d["resize_before_crop"]
    assert math.isclose(build_transforms("intra_batch").describe()["std"][0], 0.299)


def test_backbones_declare_their_input_convention_and_mlrc_follows_bninception():
    """BN-Inception declares the Caffe convention (BGR, 0–255 minus the mean, no
    std), which is the batch part of ``mlrc`` (the values the recipes resolved
    before the convention moved to the backbone); torchvision's weights declare
    RGB [0, 1] mean/std, the ``Transforms`` defaults; ``small_cnn`` none."""
    from dml_pipelines.core.models.backbones import BACKBONES
    from dml_pipelines.core.models.weights import INPUT_CONVENTIONS

    declared = {
        name: BACKBONES.get(name)(pretrained=False).input_convention
        for name in BACKBONES.names()
    }
    assert declared == {
        "bninception": "caffe",
        "googlenet": "torchvision",
        "resnet18": "torchvision",
        "resnet50": "torchvision",
        "small_cnn": None,
    }
    mlrc = build_transforms("mlrc")
    batch = {k: getattr(mlrc, k) for k in ("max_value", "bgr", "mean", "std")}
    assert batch == INPUT_CONVENTIONS["caffe"]
    assert batch == {
        "max_value": 255.0,
        "bgr": True,
        "mean": (255.0 * 0.406, 255.0 * 0.456, 255.0 * 0.485),
        "std": (1.0,),
    }
    plain = build_transforms("proxy_anchor")
    assert {k: getattr(plain, k) for k in batch} == INPUT_CONVENTIONS["torchvision"]
