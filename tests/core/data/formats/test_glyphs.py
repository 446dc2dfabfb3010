"""Tests of the ``glyphs`` reader (docs/datasets.md#glyphs)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from dml_pipelines.core.data import read_index
from dml_pipelines.core.data.formats import glyphs
from dml_pipelines.core.data.index import COLUMNS, validate_index_table

SMALL = {"images_per_class": 2}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("glyphs")


@pytest.fixture(scope="module")
def table(root):
    return read_index("glyphs", root, **SMALL)


@pytest.fixture(scope="module")
def manifest(root, table):
    return json.loads((root / "manifest.json").read_text())


def _bytes(root, table):
    return [(root / p).read_bytes() for p in table["path"]]


def test_table_and_class_disjoint_split(table):
    assert list(table.columns) == COLUMNS
    validate_index_table(table)
    labels = sorted(table["label"].unique())
    assert labels == list(range(120))
    train = set(table.loc[table["split"] == "train", "label"])
    test = set(table.loc[table["split"] == "test", "label"])
    assert train == set(range(60)) and test == set(range(60, 120))
    assert (table["split"] == "train").sum() == (table["split"] == "test").sum() == 120
    assert table["label"].value_counts().eq(2).all()


def test_enough_distinct_classes_without_lookalikes(manifest):
    chars = manifest["characters"]
    assert len(chars) == len(set(chars)) == 120
    assert [ord(c) for c in chars] == manifest["code_points"]
    accepted = glyphs.accept_classes(32, 0.9)
    assert len(accepted) >= 100 and set(chars) <= set(accepted)
    masks = [glyphs.reference_mask(c, 32) for c in accepted]
    worst = max(glyphs.iou(a, b) for a, b in itertools.combinations(masks, 2))
    assert worst <= 0.9
    # classic look-alikes: only the first of each group survives
    for group in ("AΑ", "OΟ", "lI", "pρ"):
        assert sum(c in accepted for c in group) == 1, group


def test_every_class_in_three_faces(manifest):
    cmaps = glyphs.face_cmaps()
    assert "DejaVuSansDisplay.ttf" not in cmaps and len(cmaps) == 12
    for cp in manifest["code_points"]:
        assert sum(cp in cm for cm in cmaps.values()) >= 3
    assert set(manifest["faces"]) == set(cmaps)
    assert all(len(h) == 64 for h in manifest["faces"].values())


def test_manifest_records_parameters(manifest):
    params = manifest["params"]
    for key in glyphs.DEFAULTS:
        assert key in params
    assert params["images_per_class"] == 2 and params["seed"] == 0
    assert manifest["seed"] == 0 and manifest["matplotlib_version"]
    assert manifest["calibration"] == glyphs.CALIBRATION


def test_images_are_greyscale_size_32(root, table):
    img = Image.open(root / table["path"].iloc[0])
    assert img.mode == "L" and img.size == (32, 32)


def test_same_seed_is_byte_identical(tmp_path, root, table):
    again = read_index("glyphs", tmp_path, **SMALL)
    assert again.equals(table)
    assert _bytes(tmp_path, again) == _bytes(root, table)


def test_different_seed_differs(tmp_path, root, table):
    other = read_index("glyphs", tmp_path, seed=1, **SMALL)
    a, b = _bytes(root, table), _bytes(tmp_path, other)
    assert sum(x != y for x, y in zip(a, b, strict=True)) > 0.9 * len(a)


def test_reuse_and_rerender_on_change(tmp_path):
    t = glyphs.read(tmp_path, num_classes=4, images_per_class=2)
    first = tmp_path / t["path"].iloc[0]
    mtime, data = first.stat().st_mtime_ns, first.read_bytes()
    glyphs.read(tmp_path, num_classes=4, images_per_class=2)
    assert first.stat().st_mtime_ns == mtime
    first.write_bytes(b"corrupt")
    glyphs.read(tmp_path, num_classes=4, images_per_class=2)
    assert first.read_bytes() == data
    t3 = glyphs.read(tmp_path, num_classes=4, images_per_class=3)
    assert len(t3) == 12 and len(list((tmp_path / "images").rglob("*.png"))) == 12


def test_ink_stays_inside_canvas(tmp_path):
    t = glyphs.read(
        tmp_path,
        num_classes=200,
        images_per_class=3,
        noise_std_range=(0.0, 0.0),
        stroke_px=0.0,
        scale_range=(1.15, 1.15),
        translate=0.1,
        expected_counts=None,
    )
    border = np.ones((32, 32), bool)
    border[1:-1, 1:-1] = False
    for p in t["path"]:
        img = np.asarray(Image.open(tmp_path / p))
        assert img.max() > 100, p
        assert img[border].max() == 0, p


def test_too_many_classes_names_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"glyphs\.num_classes.*10000.*only \d+"):
        glyphs.read(tmp_path, num_classes=10000, images_per_class=1)


def test_count_mismatch_and_unknown_option(tmp_path):
    with pytest.raises(
        ValueError, match=r"glyphs: image counts .* test expected 7, found 4"
    ):
        glyphs.read(
            tmp_path,
            num_classes=4,
            images_per_class=2,
            expected_counts={"train": 4, "test": 7},
        )
    with pytest.raises(ValueError, match="unknown option"):
        glyphs.read(tmp_path, noise=0.1)
