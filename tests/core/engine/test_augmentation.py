"""The ``augmentation`` description (core.engine.training_data): what the Kedro node
``build_augmentation`` writes and ``train_method`` trains with."""

import json

import pytest

from dml_pipelines.core.data.transforms import PRESETS, Transforms, build_transforms
from dml_pipelines.core.engine.run import train_model
from dml_pipelines.core.engine.training_data import (
    augmentation,
    augmentation_transforms,
)

from .conftest import make_cfg


@pytest.mark.parametrize("preset", sorted(PRESETS.names()))
def test_description_round_trips_through_json_for_every_preset(preset):
    t = build_transforms(preset, image_size=64 if preset != "small" else None)
    back = Transforms.from_description(json.loads(json.dumps(t.describe())))
    assert back == t


def test_description_is_the_resolved_config_and_rebuilds_its_transforms():
    cfg = make_cfg(transforms={"preset": "intra_batch", "image_size": 32})
    desc = json.loads(json.dumps(augmentation(cfg, {"resize_shorter": 40})))
    assert desc["preset"] == "intra_batch" and desc["seed"] == 0
    assert desc["cache_resize_shorter"] == 40
    assert desc["transforms"]["image_size"] == 32
    assert desc["transforms"]["erasing_p"] == 0.5  # the preset's, resolved
    t = augmentation_transforms(desc, cfg, {"resize_shorter": 40})
    assert t == build_transforms("intra_batch", image_size=32)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda d: d["transforms"].update(flip_p=0.0), "transforms.flip_p"),
        (lambda d: d.update(seed=3), "seed"),
        (lambda d: d.update(cache_resize_shorter=256), "cache_resize_shorter"),
        (lambda d: d["transforms"].pop("std"), "transforms.std"),
    ],
)
def test_a_description_of_another_run_is_refused_in_one_line(edit, key):
    cfg = make_cfg(transforms={"preset": "proxy_anchor", "image_size": 32})
    desc = json.loads(json.dumps(augmentation(cfg, {"resize_shorter": 40})))
    edit(desc)
    with pytest.raises(ValueError, match="augmentation: ") as info:
        augmentation_transforms(desc, cfg, {"resize_shorter": 40})
    message = str(info.value)
    assert key in message and "build_augmentation" in message
    assert "\n" not in message


def test_train_model_refuses_transforms_other_than_the_configs():
    cfg = make_cfg(transforms={"preset": "proxy_anchor", "image_size": 32})
    other = build_transforms("proxy_anchor", image_size=32, flip_p=0.0)
    with pytest.raises(ValueError, match="transforms differ"):
        train_model(None, _SizedCache(), cfg, checkpoint_dir=None, transforms=other)


class _SizedCache:
    """Enough of an ``ImageCache`` for the checks before training."""

    meta = {"resize_shorter": None}
    directory = "cache"
