"""Tests of the ``glyphs_tune`` reader, the glyph set for choosing defaults
(docs/datasets.md#glyphs_tune)."""

from __future__ import annotations

import json

import pytest
import yaml

from dml_pipelines.core.data import read_index
from dml_pipelines.core.data.formats import glyphs
from tests.conftest import ROOT

SMALL = {"images_per_class": 2}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("glyphs_tune")


@pytest.fixture(scope="module")
def table(root):
    return read_index("glyphs_tune", root, **SMALL)


@pytest.fixture(scope="module")
def manifest(root, table):
    return json.loads((root / "manifest.json").read_text())


def test_classes_and_split(table, manifest):
    assert sorted(table["label"].unique()) == list(range(100))
    train = set(table.loc[table["split"] == "train", "label"])
    assert train == set(range(50)) and len(table) == 200
    chars = manifest["characters"]
    assert manifest["dataset"] == "glyphs_tune" and len(set(chars)) == 100


def test_no_font_or_seed_and_no_test_class_shared_with_glyphs(manifest):
    # other faces (no DejaVu), another seed, and none of the classes that the
    # reported checks score (the glyphs test split at its default options)
    assert set(manifest["faces"]) == set(glyphs.TUNE_FACES)
    assert not set(manifest["faces"]) & set(glyphs.FACES)
    assert manifest["seed"] != glyphs.DEFAULTS["seed"]
    test_chars = glyphs.glyphs_test_characters()
    assert len(test_chars) == 60
    assert not set(manifest["characters"]) & test_chars
    assert manifest["calibration"] == glyphs.TUNE_NOTE


def test_computer_modern_faces_only_draw_letters_and_digits(manifest):
    # the BaKoMa cm*10 cmaps list punctuation slots that hold other glyphs
    cmaps = glyphs.face_cmaps("glyphs_tune")
    for face, cmap in cmaps.items():
        if face.startswith("cm"):
            assert cmap == glyphs.ALNUM, face
    for cp in manifest["code_points"]:
        assert sum(cp in cm for cm in cmaps.values()) >= glyphs.MIN_FACES
    assert glyphs.face_cmaps() == glyphs.face_cmaps("glyphs")  # glyphs unchanged


def test_deterministic(tmp_path, root, table):
    again = read_index("glyphs_tune", tmp_path, **SMALL)
    assert again.equals(table)
    assert [(tmp_path / p).read_bytes() for p in again["path"]] == [
        (root / p).read_bytes() for p in table["path"]
    ]


def test_errors_name_the_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"glyphs_tune: unknown option\(s\) \['x'\]"):
        glyphs.read_tune(tmp_path, x=1)
    with pytest.raises(ValueError, match=r"glyphs_tune\.num_classes: 116 requested"):
        glyphs.read_tune(tmp_path, num_classes=116, images_per_class=1)


def test_never_in_the_reported_grid():
    # the run grid (`make run`, `dvc repro`) is where the reported checks come from
    grid = yaml.safe_load((ROOT / "conf/grid.yaml").read_text())
    assert "glyphs_tune" not in grid["datasets"]
    assert "glyphs_tune" not in (ROOT / "dvc.yaml").read_text()
