"""Augmentation on the training device (issue 19 point 1): the loader cuts the crop
box, the device resizes and flips the packed batch. On a CPU both paths run the same
ops on the same parameters, so the batches, and a whole training run, are
bit-identical; the only difference on CUDA is the interpolation kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dml_pipelines.core.data.loader import (
    DeviceAugmentLoader,
    make_loader,
    pack_regions,
)
from dml_pipelines.core.data.prepare import prepare_caches
from dml_pipelines.core.data.transforms import (
    TRAIN_PARAMS,
    Transforms,
    build_transforms,
)
from dml_pipelines.core.engine.run import train_model
from dml_pipelines.core.engine.training_data import augment_device
from tests.conftest import colour_classes, two_shape_cache
from tests.core.engine.conftest import make_cfg

N = 12
BATCHES = [[0, 1, 2, 3], [5, 5, 6, 7], [11, 8, 9, 10]]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """Twelve images of two shapes (30×40 and 44×33), cached at their own size."""
    return two_shape_cache(tmp_path_factory.mktemp("device_augment"), N, None)


PRESETS = {
    "proxy_anchor": {"image_size": 16, "resize_size": 20},
    "xbm": {"image_size": 16, "resize_size": 20},  # resizes before the crop
    "mlrc": {"image_size": 17},
    "intra_batch": {"image_size": 15},
    "small": {"image_size": 24},  # affine at a fixed size
}


def _epochs(cache, transforms, epochs=2, **kw):
    loader = make_loader(
        cache,
        np.arange(N),
        np.arange(N) * 10 + 1,
        transforms,
        batch_sampler=BATCHES,
        train=True,
        seed=7,
        **kw,
    )
    return [list(loader) for _ in range(epochs)], loader


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_device_path_gives_the_loader_path_batches_on_cpu(cache, preset):
    t = build_transforms(preset, **PRESETS[preset])
    if preset == "small":  # flips and a grey fill, to exercise every op
        t = build_transforms(preset, **PRESETS[preset], flip_p=0.5, fill=128.0)
    want, _ = _epochs(cache, t)
    for workers in (0, 1):
        got, loader = _epochs(cache, t, augment_on="cpu", num_workers=workers)
        assert isinstance(loader, DeviceAugmentLoader)
        assert loader.num_workers == workers and len(loader) == len(BATCHES)
        for epoch_want, epoch_got in zip(want, got, strict=True):
            for (xw, yw), (xg, yg) in zip(epoch_want, epoch_got, strict=True):
                assert xg.dtype == torch.uint8 and xg.shape == xw.shape
                assert torch.equal(xg, xw) and torch.equal(yg, yw)
    # the epochs differ (the seed stream advances), so equality is not vacuous
    assert not torch.equal(want[0][0][0], want[1][0][0])


def test_the_loader_sends_only_the_crop_box(cache):
    t = build_transforms("proxy_anchor", image_size=16, resize_size=20)
    (epoch,), _ = _epochs(cache, t, epochs=1)
    loader = make_loader(
        cache,
        np.arange(N),
        np.zeros(N, dtype=np.int64),
        t,
        batch_sampler=BATCHES,
        train=True,
        seed=7,
        augment_on="cpu",
    )
    (buffer, shapes, params), _ = next(iter(loader.loader))
    assert params.shape == (4, TRAIN_PARAMS) and params.dtype == torch.float64
    top, left, h, w = params[:, :4].long().unbind(1)
    assert shapes[:, 1].tolist() == h.tolist() and shapes[:, 2].tolist() == w.tolist()
    # the buffer holds exactly the four boxes, cut from the cached images
    assert buffer.numel() == int((3 * h * w).sum()) < 4 * 3 * 30 * 40
    for i in range(4):
        c, hh, ww, off = shapes[i].tolist()
        image = torch.from_numpy(np.array(cache.image(BATCHES[0][i]))).permute(2, 0, 1)
        box = image[:, top[i] : top[i] + hh, left[i] : left[i] + ww]
        stored = buffer[off : off + c * hh * ww].view(hh, ww, c)  # cache layout
        assert torch.equal(stored.permute(2, 0, 1), box)


def test_pack_regions_round_trips_regions_of_any_size_and_channels():
    g = torch.Generator().manual_seed(0)
    regions = [
        torch.randint(0, 256, (c, h, w), generator=g, dtype=torch.uint8)
        for c, h, w in [(3, 5, 7), (1, 9, 2), (3, 1, 1)]
    ]
    params = [(float(i),) * TRAIN_PARAMS for i in range(3)]
    samples = [
        (r, p, 10 + i) for i, (r, p) in enumerate(zip(regions, params, strict=True))
    ]
    (buffer, shapes, packed), labels = pack_regions(samples)
    assert labels.tolist() == [10, 11, 12]
    assert packed.dtype == torch.float64 and packed.tolist() == [
        list(p) for p in params
    ]
    assert shapes.tolist() == [[3, 5, 7, 0], [1, 9, 2, 105], [3, 1, 1, 123]]
    for r, (c, h, w, off) in zip(regions, shapes.tolist(), strict=True):
        assert torch.equal(
            buffer[off : off + c * h * w].view(h, w, c), r.permute(1, 2, 0)
        )


def test_augment_on_resolves_per_device_and_rejects_bad_values():
    def training(**kw):
        return _cfg("small", None, **kw).training

    assert augment_device(training()) is None  # auto on a CPU: the loader
    assert augment_device(training(augment_on="loader")) is None
    assert augment_device(training(augment_on="device")) == torch.device("cpu")
    with pytest.raises(ValueError) as err:
        training(augment_on="gpu")
    assert str(err.value).startswith("contrastive_c1.training.augment_on: ")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="training loaders only"):
        make_loader(None, [], [], None, batch_size=1, train=False, augment_on="cpu")


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    """A 4-class train / 2-class test set of 14×18 PNGs at their own size."""
    tmp = tmp_path_factory.mktemp("device_augment_train")
    root = tmp / "raw"
    table = colour_classes(root, (14, 18), per_class=4, seed=1)
    _, built, _ = prepare_caches(table, root, tmp / "primary", [None])
    return table, built[None]


def _cfg(preset, image_size, **training):
    return make_cfg(
        backbone={"args": {"channels": [4, 8]}},
        embedding_dim=4,
        sampler={"P": 2, "K": 2, "batches_per_epoch": 3},
        transforms={
            "preset": preset,
            "image_size": image_size,
            "source_size": "original",
        },
        training={"epochs": 2, "amp": False, **training},
    )


@pytest.mark.parametrize(("preset", "size"), [("proxy_anchor", 12), ("small", None)])
def test_train_model_trains_the_same_on_either_path(caches, preset, size, monkeypatch):
    """Through the real entry point: the device path changes where the work runs,
    not the run (same loss at every epoch, same weights)."""
    table, cache = caches
    calls = []
    batch = Transforms.train_batch

    def spy(self, buffer, shapes, params):
        calls.append(len(shapes))
        return batch(self, buffer, shapes, params)

    monkeypatch.setattr(Transforms, "train_batch", spy)
    runs = {}
    for where in ("loader", "device"):
        state, history = train_model(
            table, cache, _cfg(preset, size, augment_on=where), checkpoint_dir=None
        )
        runs[where] = (state["model"], history["loss"].tolist())
        # 2 epochs × 3 batches of 4 went through the device half, only there
        assert calls == ([4] * 6 if where == "device" else [])
    (w_loader, loss_loader), (w_device, loss_device) = runs["loader"], runs["device"]
    assert len(loss_loader) == 2 and all(np.isfinite(loss_loader))
    assert loss_device == loss_loader
    assert all(torch.equal(w_loader[k], w_device[k]) for k in w_loader)


@pytest.mark.slow
def test_two_processes_train_the_same_on_either_path(caches):
    """``training.devices: 2`` (gloo): each rank finishes its shard of the batch on
    its device; the run equals the loader path's."""
    table, cache = caches
    runs = {}
    for where in ("loader", "device"):
        cfg = _cfg("proxy_anchor", 12, augment_on=where, devices=2)
        state, history = train_model(table, cache, cfg, checkpoint_dir=None)
        runs[where] = (state["model"], history["loss"].tolist())
    assert runs["device"][1] == runs["loader"][1]
    assert all(
        torch.equal(runs["loader"][0][k], runs["device"][0][k])
        for k in runs["loader"][0]
    )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_device_path_differs_only_by_the_interpolation_kernel(cache):
    """Same seed, same parameters; on CUDA the resize runs in float32 and rounds,
    the CPU path uses uint8 fixed-point weights: pixel values within a few levels."""
    t = build_transforms("proxy_anchor", image_size=16, resize_size=20)
    want, _ = _epochs(cache, t, epochs=1)
    got, _ = _epochs(cache, t, epochs=1, augment_on="cuda")
    for (xw, yw), (xg, yg) in zip(want[0], got[0], strict=True):
        assert xg.device.type == "cuda" and torch.equal(yg, yw)
        diff = (xg.cpu().int() - xw.int()).abs()
        assert diff.max() <= 8 and diff.float().mean() < 1.0
